import numpy as np
import pytest

from stream.buffer import RingBuffer


def test_newest_is_contiguous_and_correct_across_wraps():
    rng = np.random.default_rng(0)
    ring = RingBuffer(100)
    history = np.zeros(0, np.float32)
    for _ in range(200):
        x = rng.standard_normal(int(rng.integers(0, 250))).astype(np.float32)
        ring.write(x)
        history = np.concatenate([history, x])[-1000:]
        n = min(len(ring), int(rng.integers(1, 101)))
        if n:
            view = ring.newest(n)
            assert view.flags.c_contiguous
            assert np.array_equal(view, history[-n:])
    assert len(ring) == 100


def test_no_growth_and_counts():
    ring = RingBuffer(10)
    data_id = id(ring._data)
    ring.write(np.ones(1000, np.float32))
    ring.write(np.arange(3, dtype=np.float32))
    assert id(ring._data) == data_id and ring._data.size == 20
    assert ring.total == 1003 and len(ring) == 10
    assert np.array_equal(ring.newest(3), [0, 1, 2])


def test_errors():
    with pytest.raises(ValueError):
        RingBuffer(0)
    ring = RingBuffer(5)
    ring.write(np.ones(2, np.float32))
    with pytest.raises(ValueError, match="holds 2"):
        ring.newest(3)
    ring.clear()
    assert len(ring) == 0
