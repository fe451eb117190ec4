import numpy as np
import pytest

from stream.audio import rms_dbfs, to_float_mono, validate_rate, validate_samples


@pytest.mark.parametrize("dtype,value,expected", [
    (np.int16, 16384, 0.5), (np.int16, -32768, -1.0), (np.int32, 2**30, 0.5),
    (np.uint8, 192, 0.5), (np.uint8, 128, 0.0), (np.float32, 0.25, 0.25), (np.float64, -0.75, -0.75),
])
def test_dtype_scaling(dtype, value, expected):
    x, bad = to_float_mono(validate_samples(np.full(10, value, dtype=dtype)))
    assert x.dtype == np.float32 and bad == 0
    assert np.allclose(x, expected)


def test_downmix_channels():
    stereo = np.stack([np.full(5, 0.2), np.full(5, 0.6)], axis=1)
    x, _ = to_float_mono(validate_samples(stereo))
    assert x.shape == (5,) and np.allclose(x, 0.4)
    eight = np.tile(np.arange(8, dtype=np.float32)[None] / 10, (4, 1))
    x, _ = to_float_mono(validate_samples(eight))
    assert np.allclose(x, 0.35)


def test_nan_and_inf_replaced_and_counted():
    x, bad = to_float_mono(validate_samples(np.array([0.1, np.nan, np.inf, -np.inf, 0.2], np.float32)))
    assert bad == 3
    assert np.array_equal(x, np.array([0.1, 0, 0, 0, 0.2], np.float32))


@pytest.mark.parametrize("bad,match", [
    (np.zeros((2, 3, 4)), "3 dimensions"),
    (np.array(["a", "b"]), "dtype"),
    (np.zeros(4, dtype=np.complex64), "dtype"),
    (np.zeros((10, 9)), "at most 8 channels"),
    (np.zeros((2, 1000)), "channels-first"),
])
def test_bad_samples_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        validate_samples(bad)


@pytest.mark.parametrize("rate", [0, -16000, 44100.5, "48000", None, 3999, 192001, True])
def test_bad_rates_rejected(rate):
    with pytest.raises(ValueError, match="sample_rate"):
        validate_rate(rate)


def test_good_rates():
    assert validate_rate(np.int64(44100)) == 44100
    assert validate_rate(48000.0) == 48000
    assert validate_rate(4000) == 4000 and validate_rate(192000) == 192000


def test_rms_dbfs():
    t = np.arange(16000) / 16000
    assert abs(rms_dbfs(np.sin(2 * np.pi * 100 * t).astype(np.float32)) - (-3.01)) < 0.05
    assert rms_dbfs(np.zeros(10, np.float32)) == float("-inf")
