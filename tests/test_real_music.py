"""The bundled model through the whole engine on real recordings (Debian `asc-music`, GPL-2+,
installed by .ci/run): tags must be plausible for electronic game music."""

import numpy as np
import pytest

from support.music import MUSIC_DIR, needs_music
from stream import EngineConfig, StreamEngine, analyze_file, decode_blocks

ELECTRONIC = {"electronic", "techno", "electronica", "electro", "dance", "house", "ambient", "chillout", "experimental"}
pytestmark = [needs_music, pytest.mark.slow]


def test_live_engine_on_real_music(musicnn):
    """Feed 40 s of an MP3 as a sound card would (44.1 kHz -> 48 kHz int16 stereo blocks)."""
    results = []
    cfg = EngineConfig(hop_s=1.0, smoothing_s=4.0)
    fed = 0.0
    with StreamEngine(musicnn, cfg, background=False, on_result=results.append) as e:
        for block, rate in decode_blocks(f"{MUSIC_DIR}/machine_wars.mp3", block_s=1):
            if fed < 20:  # skip the intro
                fed += len(block) / rate
                continue
            pcm = (np.clip(block, -1, 1) * 32767).astype(np.int16)
            for i in range(0, len(pcm), rate // 50):  # 20 ms chunks
                e.feed(pcm[i:i + rate // 50], rate)
            fed += len(block) / rate
            if fed >= 60:
                break
        final = e.latest
        summary = e.summary()
    assert len(results) >= 35 and not any(r.silent for r in results)
    assert set(final.scores) <= set(musicnn.default_labels)  # genre view only: no "00s", "beautiful"
    assert ELECTRONIC & set(list(final.scores)[:5]), final.scores
    assert final.label in ELECTRONIC
    assert summary.dominant in ELECTRONIC and summary.shares[summary.dominant] > 0.5


def test_file_analysis_on_real_music(musicnn):
    fa = analyze_file(f"{MUSIC_DIR}/time_to_strike.mp3", musicnn, hop_s=9.0)
    assert fa.duration_s == pytest.approx(324.6, abs=1)
    assert fa.top_label in ELECTRONIC and ELECTRONIC & set(list(fa.scores)[:3])
    start, end = fa.segment
    assert 0 <= start < end <= fa.duration_s and end - start == pytest.approx(9.0)
    assert np.isfinite(fa.timeline).all()


def test_full_tag_set_reachable(musicnn):
    """allow=["*"] shows every tag of both taggers, e.g. moods and instruments."""
    with StreamEngine(musicnn, EngineConfig(allow=["*"], top_k=0), background=False) as e:
        for block, rate in decode_blocks(f"{MUSIC_DIR}/frontiers.mp3", block_s=12):
            e.feed(block, rate)
            break
        labels = set(e.latest.scores)
    assert len(labels) == len(musicnn.labels) and {"00s", "female vocalists", "guitar"} <= labels
