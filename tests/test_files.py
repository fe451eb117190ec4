import shutil
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from support.music import MACHINE_WARS
from support.models import BandModel, tone

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


@pytest.mark.slow
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




def _text_named_mp3(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("this is a text file, not audio\n" * 50)
    return path


@pytest.mark.parametrize("with_ffmpeg", [True, False])
def test_text_file_named_mp3_one_clean_message(tmp_path, monkeypatch, capfd, caplog, with_ffmpeg):
    import logging

    import soundfile

    path = _text_named_mp3(tmp_path)
    if not with_ffmpeg:
        monkeypatch.setenv("PATH", str(tmp_path))
    elif shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    # what the C library itself prints when libsndfile opens it (libmpg123 notes on fd 2)
    with pytest.raises(soundfile.LibsndfileError):
        soundfile.SoundFile(str(path))
    raw_chatter = capfd.readouterr().err
    caplog.set_level(logging.DEBUG, logger="stream.files")
    with pytest.raises(AudioDecodeError) as info:
        analyze_file(path, BandModel())
    msg = str(info.value)
    assert "'notes.mp3' is not a readable audio file: it contains text, not audio" in msg
    assert "possibly a pipe" not in msg and "does not exist" not in msg  # libsndfile's misleading text
    assert "export or download it again" in msg and "install ffmpeg" not in msg  # mp3 needs no ffmpeg
    assert capfd.readouterr().err == ""  # nothing reached the terminal
    for line in raw_chatter.splitlines():  # ... it went to the log instead
        assert any(line.strip() in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG), line


def test_decoder_stderr_capture_keeps_good_files_threads_and_other_output(capfd):
    import os
    import threading

    from stream.files import decode_blocks, probe_file

    fd2_before = os.fstat(2)
    single = [b.copy() for b, _ in decode_blocks(MACHINE_WARS, block_s=30)][:3]
    results, errors = {}, []

    def decode(key):
        try:
            blocks = []
            for b, rate in decode_blocks(MACHINE_WARS, block_s=30):
                blocks.append(b.copy())
                if len(blocks) == 3:
                    break
            results[key] = blocks
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def chatty():  # another part of the program writing to stderr meanwhile
        for i in range(200):
            os.write(2, f"other thread line {i}\n".encode())

    threads = [threading.Thread(target=decode, args=(k,)) for k in range(3)] + [threading.Thread(target=chatty)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 3
    for blocks in results.values():  # the same samples as a decode on one thread
        assert len(blocks) == 3 and all(np.array_equal(a, b) for a, b in zip(blocks, single))
    err = capfd.readouterr().err
    assert all(f"other thread line {i}\n" in err for i in range(200))  # written back, not swallowed
    st = os.fstat(2)
    assert (st.st_dev, st.st_ino) == (fd2_before.st_dev, fd2_before.st_ino)  # fd 2 restored
    info = probe_file(MACHINE_WARS)
    assert info.duration_s == pytest.approx(290.8, abs=0.1) and info.sample_rate == 22050


def test_probe_file(tmp_path):
    from stream.files import probe_file

    path = tmp_path / "short.wav"
    sf.write(path, tone(440, 0.1, 16000), 16000)
    assert probe_file(path).duration_s == pytest.approx(0.1)
    for bad, match in [(_text_named_mp3(tmp_path), "not a readable audio file"), (tmp_path / "nope.wav", "does not exist")]:
        with pytest.raises(AudioDecodeError, match=match):
            probe_file(bad)
    if shutil.which("ffmpeg"):
        import subprocess

        m4a = tmp_path / "x.m4a"
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), str(m4a)], check=True)
        assert probe_file(m4a).duration_s == pytest.approx(0.1, abs=0.05)


def test_too_short_file_names_the_minimum(tmp_path):
    path = tmp_path / "blip.wav"
    sf.write(path, tone(440, 0.01, 16000), 16000)  # 160 samples; BandModel needs 400
    with pytest.raises(AudioDecodeError, match=r"too short.*0\.01 s.*band needs at least 0\.03 s"):
        analyze_file(path, BandModel())


def test_default_hop_for_files_is_a_third_of_the_window():
    x = low_then_high(16000, 15)  # 30 s
    fa = analyze_file(x, BandModel(), sample_rate=16000, window_s=6.0)
    assert np.diff(fa.ends_s) == pytest.approx(np.full(fa.n_windows - 1, 2.0))  # 6 s / 3
    assert fa.ends_s[0] == pytest.approx(6.0) and fa.ends_s[-1] == pytest.approx(30.0)
    # the caller's hop wins, as an argument or in the config
    fine = analyze_file(x, BandModel(), sample_rate=16000, window_s=6.0, hop_s=1.0)
    assert np.diff(fine.ends_s) == pytest.approx(np.ones(fine.n_windows - 1)) and fine.n_windows == 25
    cfg = analyze_file(x, BandModel(), sample_rate=16000, window_s=6.0, config=EngineConfig(hop_s=1.5))
    assert np.diff(cfg.ends_s) == pytest.approx(np.full(cfg.n_windows - 1, 1.5))
    # the coarse timeline tells the same story: low first, high last, the same top label
    assert fa.top_label == fine.top_label
    assert fa.timeline[0, 0] > 0.9 and fa.timeline[-1, 2] > 0.9


def test_decoder_lines_are_told_apart_from_other_stderr_output(capfd, caplog):
    """What libmpg123 prints while decoding slightly damaged frames of a good mp3 goes to the
    log; anything else caught during a decode is written back to stderr."""
    import logging

    from stream.files import _route_caught

    caplog.set_level(logging.DEBUG, logger="stream.files")
    _route_caught(b"[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: part2_3_length (2048) too large\n"
                  b"Note: Trying to resync...\n"
                  b"note: a line of the program itself\nWARNING:app:port busy\n")
    assert capfd.readouterr().err == "note: a line of the program itself\nWARNING:app:port busy\n"
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("part2_3_length" in m for m in logged) and any("Trying to resync" in m for m in logged)
