import shutil
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from conftest import BandModel, tone

from stream import AudioDecodeError, EngineConfig, analyze_file


def low_then_high(rate, seconds=10):
    return np.concatenate([tone(200, seconds, rate), tone(5000, seconds, rate)])


@pytest.mark.parametrize("ext,fmt,subtype", [
    ("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"),
    ("opus", "OGG", "OPUS"), ("mp3", "MP3", "MPEG_LAYER_III")])
def test_formats_decoded_without_ffmpeg(tmp_path, monkeypatch, ext, fmt, subtype):
    rate = 48000
    path = tmp_path / f"x.{ext}"
    x = low_then_high(rate)
    sf.write(path, np.stack([x, x], 1) * 0.5, rate, format=fmt, subtype=subtype)
    monkeypatch.setenv("PATH", str(tmp_path))  # prove libsndfile alone decodes these
    fa = analyze_file(path, BandModel(), window_s=2.0, hop_s=1.0)
    assert fa.top_label in ("low", "high") and set(fa.scores) == {"low", "mid", "high"}
    assert fa.duration_s == pytest.approx(20.0, abs=0.1)
    lows = fa.timeline[fa.ends_s <= 9.5, 0]
    highs = fa.timeline[fa.starts_s >= 10.5, 2]
    assert (lows > 0.9).all() and (highs > 0.9).all()
    # the characteristic segment of the top label lies in its half of the file
    start, end = fa.segment
    assert end - start == pytest.approx(2.0) and ((end <= 10.5) if fa.top_label == "low" else (start >= 9.5))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_other_formats_via_ffmpeg(tmp_path):
    import subprocess

    wav = tmp_path / "x.wav"
    sf.write(wav, tone(5000, 6, 44100) * 0.5, 44100)
    m4a = tmp_path / "x.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), str(m4a)], check=True)
    fa = analyze_file(m4a, BandModel(), window_s=2.0, hop_s=1.0)
    assert fa.top_label == "high" and fa.duration_s == pytest.approx(6.0, abs=0.1)


def test_unknown_format_without_ffmpeg_names_format(tmp_path, monkeypatch):
    path = tmp_path / "song.xyz"
    path.write_bytes(b"\x00\x01garbage" * 1000)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AudioDecodeError, match=r"'xyz'.*ffmpeg"):
        analyze_file(path, BandModel())


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (b"this is a text file, not audio\n" * 50, "not a readable audio file|cannot decode"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(200), "not a readable audio file|cannot decode|corrupt|no audio"),
])
def test_bad_files_give_clear_errors(tmp_path, content, match):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError, match=match):
        analyze_file(path, BandModel())


def test_missing_file(tmp_path):
    with pytest.raises(AudioDecodeError, match="does not exist"):
        analyze_file(tmp_path / "nope.wav", BandModel())


def test_short_file_classified_once(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, tone(5000, 1.2, 22050), 22050)
    fa = analyze_file(path, BandModel(), window_s=5.0)
    assert fa.n_windows == 1 and fa.top_label == "high"


def test_silent_file(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16000 * 5, np.int16), 16000)
    fa = analyze_file(path, BandModel(), window_s=2.0, hop_s=1.0)
    assert fa.silent.all() and fa.top_label is None and fa.scores == {}


def test_too_long(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(8000 * 30, np.int16), 8000)
    with pytest.raises(AudioDecodeError, match="limit"):
        analyze_file(path, BandModel(), max_duration_s=10)


def test_array_input_and_progress():
    seen = []
    fa = analyze_file(low_then_high(16000, 5), BandModel(), sample_rate=16000, window_s=2, hop_s=1,
                      progress=lambda f, t: seen.append(f), config=EngineConfig(deny=["mid"]))
    assert fa.labels == ["low", "high"] and seen[-1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sample_rate"):
        analyze_file(np.zeros(100), BandModel())


def test_long_file_memory_is_bounded(tmp_path):
    rate = 8000
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        for _ in range(20):  # 20 minutes
            f.write(tone(200, 60, rate) * 0.5)
    tracemalloc.start()
    fa = analyze_file(path, BandModel(), window_s=10, hop_s=2)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert fa.duration_s == pytest.approx(1200) and fa.top_label == "low"
    assert peak < 12e6, f"peak {peak / 1e6:.1f} MB for a {path.stat().st_size / 1e6:.0f} MB file"
