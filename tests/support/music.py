"""Real recordings for the tests (harness.music), and the marks for tests that need them."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.music import (FAKE_RATE, MACHINE_WARS, MINSTRELS, MUSIC_DIR, TRACKS, WESNOTH_DIR, at_level,  # noqa: F401
                           loopable, music, music_excerpt, resample, rms_dbfs, write_wav)

needs_music = pytest.mark.skipif(not MACHINE_WARS.is_file(), reason=f"{MUSIC_DIR} missing: apt-get install asc-music")
# electronic and acoustic recordings both (genre changes, evaluation folders)
needs_both_packages = pytest.mark.skipif(not (MACHINE_WARS.is_file() and MINSTRELS.is_file()),
                                         reason="apt-get install asc-music wesnoth-1.16-music")


def music_wav_file(folder: Path, seconds: float) -> Path:
    """A 16-bit WAV of `seconds` of the first track from 18 s on (for the command-line clients)."""
    import soundfile as sf

    audio, sr = music(TRACKS[0], 18, seconds)
    path = folder / f"{Path(TRACKS[0]).stem}_{seconds:g}s.wav"
    sf.write(str(path), audio, sr, subtype="PCM_16")
    return path
