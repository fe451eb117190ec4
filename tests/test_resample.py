import numpy as np
import pytest

from stream.resample import StreamingResampler


def stream_in_random_chunks(x, rate, rng):
    r = StreamingResampler(rate, 16000)
    out, i = [], 0
    while i < len(x):
        # mix of tiny (1..64 samples) and large (up to 2 s) chunks
        n = int(rng.integers(1, 65)) if rng.random() < 0.5 else int(rng.integers(1, 2 * rate))
        out.append(r.process(x[i:i + n]))
        i += n
    out.append(r.flush())
    return np.concatenate(out)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 32000, 44100, 48000, 96000])
def test_chunking_does_not_change_output(rate):
    rng = np.random.default_rng(rate)
    x = (rng.standard_normal(int(rate * 2.5)) * 0.3).astype(np.float32)
    one = StreamingResampler(rate, 16000)
    whole = np.concatenate([one.process(x), one.flush()])
    chunked = stream_in_random_chunks(x, rate, rng)
    assert len(chunked) == len(whole)
    assert abs(len(whole) - len(x) * 16000 / rate) <= 1
    assert np.max(np.abs(chunked - whole)) <= 1e-5


def level_db(y):
    y = y[len(y) // 4: -len(y) // 4]  # skip filter edges
    return 10 * np.log10(np.mean(y.astype(np.float64) ** 2))


def test_passband_and_stopband():
    rate = 48000
    t = np.arange(rate * 2) / rate
    ref = level_db(np.sin(2 * np.pi * 7000 * t) * 0.5)
    r = StreamingResampler(rate, 16000)
    passed = np.concatenate([r.process(np.sin(2 * np.pi * 7000 * t).astype(np.float32) * 0.5), r.flush()])
    assert abs(level_db(passed) - ref) <= 0.1
    r = StreamingResampler(rate, 16000)
    alias = np.concatenate([r.process(np.sin(2 * np.pi * 10000 * t).astype(np.float32) * 0.5), r.flush()])
    assert level_db(alias) - ref <= -60


def test_same_rate_passthrough():
    x = np.arange(100, dtype=np.float32)
    r = StreamingResampler(16000, 16000)
    assert np.array_equal(r.process(x), x) and len(r.flush()) == 0
