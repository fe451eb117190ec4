"""Music presence: "no music" for a voice, a genre for music, the fields in every record, and a
confidence that is calibrated where the raw score is not."""
import glob
import json
import shutil
import subprocess

import numpy as np
import pytest

from stream import EngineConfig, Result, StreamEngine, load_model
from stream.calibration import Calibrator, fit, load as load_calibration, reliability, words
from stream.presence import PresenceTracker, shared_detector
from support.music import MINSTRELS, music, needs_both_packages, resample

RATE = 16000
ASC = sorted(glob.glob("/usr/share/games/asc/music/*.mp3"))  # Debian asc-music (scripts/setup.sh --dev)


@pytest.fixture(scope="module")
def musicnn():
    return load_model("musicnn")


def _music(seconds: float, offset: float = 40.0) -> np.ndarray:
    from stream.files import read_segment
    from stream.resample import StreamingResampler
    if not ASC:
        pytest.skip("asc-music is not installed (apt-get install asc-music; scripts/setup.sh --dev does)")
    y, r = read_segment(ASC[0], offset, offset + seconds)
    y = y.mean(axis=1) if y.ndim == 2 else y
    rs = StreamingResampler(r, RATE)
    return np.concatenate([rs.process(np.ascontiguousarray(y, np.float32)), rs.flush()])


def _talk(seconds: float) -> np.ndarray:
    """A synthetic voice (espeak-ng), looped to `seconds`, at about -20 dBFS."""
    import soundfile as sf
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed (scripts/setup.sh --dev installs it)")
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/talk.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", path,
                        "Good afternoon and welcome. The east wing is closed today for repairs, but the sculpture "
                        "garden is open until six. Guided tours leave from the front desk every half hour."],
                       check=True, capture_output=True)
        y, r = sf.read(path, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    from stream.resample import StreamingResampler
    rs = StreamingResampler(r, RATE)
    y = np.concatenate([rs.process(np.ascontiguousarray(y, np.float32)), rs.flush()])
    y = np.resize(y, int(seconds * RATE))
    return (y * (0.1 / np.sqrt(np.mean(y ** 2)))).astype(np.float32)


def _readouts(model, y: np.ndarray) -> list[Result]:
    out = []
    with StreamEngine(model, EngineConfig(music_detector=True), background=False, on_result=out.append) as e:
        for i in range(0, len(y), RATE // 10):
            e.feed(y[i:i + RATE // 10], RATE)
    return out


# ---- the hysteresis on its own ---------------------------------------------------------------

def test_tracker_turns_no_music_after_off_s_and_back_after_on_s():
    tr = PresenceTracker(off_s=2.0, on_s=1.0)
    states = [tr.update(0.9, 0.0, t, 1.0).no_music for t in range(1, 6)]
    assert states == [False] * 5  # music all along
    states = [tr.update(0.05, 0.9, t, 1.0).no_music for t in range(6, 10)]  # talk; music last heard at t=5
    assert states == [False, True, True, True]  # 2 s later
    assert tr.talk
    crowd = tr.update(0.9, 0.9, 10, 1.0)  # one loud second of a crowd: speech in it counts half
    assert crowd.no_music
    assert tr.update(0.02, 0.9, 11, 1.0).no_music  # and gone again
    assert not tr.update(0.9, 0.0, 12, 1.0).no_music  # 1 s of clear music: a genre again
    assert tr.music_since == 11


def test_tracker_brings_a_genre_back_after_on_s_of_clear_music():
    tr = PresenceTracker(off_s=2.0, on_s=1.0)
    assert [tr.update(0.02, 0.9, t, 1.0).no_music for t in (1, 2, 3)] == [False, True, True]
    assert not tr.update(0.95, 0.0, 4, 1.0).no_music  # 1 s of clear music
    assert tr.music_since == 3


def _frames(music: list[float], speech: float = 0.0) -> np.ndarray:
    """A hop's detector frames: 10 frames per entry of `music`."""
    m = np.repeat(np.asarray(music, np.float32), 10)
    return np.stack([np.full_like(m, speech), np.zeros_like(m), m], axis=1)


def test_tracker_places_the_change_inside_the_hop_from_the_frames():
    # the same hop means, with and without frames: music for the first half of hop 5 only
    hops = [[0.9] * 10] * 4 + [[0.9] * 5 + [0.0] * 5] + [[0.0] * 10] * 3
    with_frames, means_only = PresenceTracker(off_s=1.5), PresenceTracker(off_s=1.5)
    a = [with_frames.update_frames(_frames(h, 0.9 * (i >= 4)), i + 1.0, 1.0).no_music for i, h in enumerate(hops)]
    b = [means_only.update(float(np.mean(h)), 0.9 * (i >= 4), i + 1.0, 1.0).no_music for i, h in enumerate(hops)]
    assert a.index(True) == 5 and b.index(True) == 6  # 1.5 s after the music's last frame, not its hop's end
    tr = PresenceTracker(off_s=2.0, on_s=1.0)
    assert [tr.update(0.02, 0.9, t, 1.0).no_music for t in (1, 2)] == [False, True]
    assert tr.update_frames(_frames([0.0] * 4 + [0.9] * 6), 3.0, 1.0).no_music  # music from 2.4 s: 0.6 s
    assert tr.music_since == pytest.approx(2.4)
    assert not tr.update_frames(_frames([0.9] * 10), 4.0, 1.0).no_music  # 1.6 s of it


def test_tracker_keeps_a_genre_through_a_pause_but_not_through_talk():
    def run(speech):
        tr = PresenceTracker(off_s=2.0, on_s=1.0, pause_weight=0.34)
        [tr.update(0.9, 0.0, t, 1.0) for t in range(1, 6)]
        return [tr.update(0.05, speech, t, 1.0).no_music for t in range(6, 12)]
    assert run(0.0) == [False] * 5 + [True]  # a quiet passage: up to 2 / 0.34 s
    assert run(0.9) == [False, True, True, True, True, True]  # someone talks, no music: 2 s
    tr = PresenceTracker(off_s=2.0, pause_weight=0.34)  # from the start no music was established:
    assert [tr.update(0.0, 0.0, t, 1.0).no_music for t in (1, 2)] == [False, True]  # noise reads "no music" at 2 s


def test_tracker_keeps_a_genre_on_weaker_music_but_needs_clear_music_to_name_one():
    tr = PresenceTracker(off_s=2.0, on_s=1.0, threshold=0.5, keep_threshold=0.4)
    assert not any(tr.update(0.45, 0.9, t, 1.0).no_music for t in range(1, 8))  # music under talk
    assert [tr.update(0.05, 0.9, t, 1.0).no_music for t in (8, 9, 10)] == [False, True, True]
    assert all(tr.update(0.45, 0.9, t, 1.0).no_music for t in range(11, 16))  # not clear enough to come back


def test_tracker_counts_from_the_stream_start_and_rejects_bad_settings():
    tr = PresenceTracker(off_s=3.0)
    assert [tr.update(0.0, 0.8, t, 1.0).no_music for t in (1, 2, 3)] == [False, False, True]
    late = PresenceTracker(off_s=2.0)  # an engine's first readout comes after its first window
    assert late.update(0.0, 0.8, 3.0, 1.0).no_music
    for bad in (dict(threshold=1.5), dict(threshold=0.5, keep_threshold=0.6), dict(off_s=0), dict(pause_weight=0)):
        with pytest.raises(ValueError, match="keep_threshold <= threshold"):
            PresenceTracker(**bad)


# ---- real audio through the engine ------------------------------------------------------------

def test_real_music_keeps_a_genre(musicnn):
    rs = _readouts(musicnn, _music(20.0))
    assert rs and all(not r.no_music and r.genre is not None for r in rs)
    assert min(r.music for r in rs) > 0.5


def test_talk_turns_no_music_within_the_hysteresis_and_music_brings_a_genre_back(musicnn):
    talk, music = _talk(12.0), _music(12.0)
    rs = _readouts(musicnn, np.concatenate([talk, music, talk]))
    first_off = next(r.time_s for r in rs if r.no_music)
    assert first_off <= 3.0 + 1.0 + 1e-6  # 3 s, at the next 1 s hop
    during_talk = [r for r in rs if first_off <= r.time_s <= 12.0]
    assert all(r.no_music and r.genre is None and r.label is None and r.talk for r in during_talk)
    assert all(r.genre_scores for r in during_talk)  # the scores are still computed and kept
    back = next(r.time_s for r in rs if r.time_s > 12.0 and not r.no_music)
    assert back - 12.0 <= 3.0
    assert all(r.genre is not None for r in rs if back <= r.time_s <= 24.0)
    off_again = next(r.time_s for r in rs if r.time_s > 24.0 and r.no_music)
    assert off_again - 24.0 <= 3.0 + 1.0 + 1e-6


def test_no_music_time_is_counted_apart_in_the_summary(musicnn):
    with StreamEngine(musicnn, EngineConfig(music_detector=True), background=False) as e:
        e.feed(_talk(10.0), RATE)
        s = e.summary()
    assert s.no_music_s >= 10.0 - 4.0
    assert s.no_music_s + sum(s.genre_shares.values()) * (s.duration_s - s.silent_s - s.no_music_s) == \
        pytest.approx(s.duration_s - s.silent_s, rel=0.01)
    rec = s.to_json(e.stats, "end")
    assert rec["no_music_s"] == pytest.approx(s.no_music_s, abs=0.01)


def test_detector_reads_music_as_music_and_talk_as_talk():
    det = shared_detector()
    m_music, s_music = det.hop(_music(3.0), RATE, 2.0)
    m_talk, s_talk = det.hop(_talk(3.0), RATE, 2.0)
    assert m_music > 0.5 > m_talk
    assert s_talk > 0.5 > s_music


# ---- records ---------------------------------------------------------------------------------

def test_json_record_carries_the_presence_and_confidence_fields():
    r = Result({"techno": 0.3}, {}, "techno", 4.0, False, -20.0, 4.0, 5.0, 6.0, "Electronic", {"Electronic": 0.3},
               at=0.0, music=0.91, no_music=False, talk=True, confidence=0.83, alternative="Rock")
    rec = r.to_json()
    assert rec["music"] == 0.91 and rec["no_music"] is False and rec["talk"] is True
    assert rec["confidence"] == 0.83 and rec["certainty"] == "sure" and rec["alternative"] == "Rock"
    back = Result.from_json(json.loads(json.dumps(rec)))
    assert (back.music, back.no_music, back.talk, back.confidence, back.alternative) == (0.91, False, True, 0.83, "Rock")
    old = Result.from_json({"event": "result", "time_s": 1.0, "label": "techno"})  # a record from before
    assert old.music is None and old.no_music is False and old.confidence is None


# ---- calibration -------------------------------------------------------------------------------

def _tagger_like(n: int, seed: int):
    """Scores shaped like a tagger's: the leader ~0.15-0.45, yet right far more often than that;
    and readouts' ages (s): a young readout (little music heard) is right less often."""
    rng = np.random.default_rng(seed)
    g = 7
    truth = rng.integers(0, g, n)
    margin = rng.uniform(0, 1, n)
    age = rng.uniform(0, 30, n)
    scores = rng.uniform(0.02, 0.12, (n, g))
    # a clearer lead, an older readout: right more often
    right = rng.uniform(0, 1, n) < 1 / (1 + np.exp(-3 * (margin - 0.4) - 1.2 * (np.log1p(age) - 2)))
    lead = np.where(right, truth, (truth + rng.integers(1, g, n)) % g)
    scores[np.arange(n), lead] = 0.15 + 0.3 * margin
    return scores, lead, truth, age


def test_calibration_fitted_on_one_split_holds_on_another_where_the_raw_score_does_not():
    *split, age = _tagger_like(3000, 0)
    *check, check_age = _tagger_like(3000, 1)
    for method in ("isotonic", "temperature", "margin", "logistic"):
        assert reliability(fit(*split, method, age_s=age), *check, age_s=check_age)["ece"] <= 0.05, method
    assert reliability(None, *check)["ece"] > 0.2  # the raw score reads as "30 % sure" of a 60 % right headline
    for method in ("isotonic", "margin", "temperature", "logistic"):
        cal = fit(*split, method, age_s=age)
        back = Calibrator.from_json(json.loads(json.dumps(cal.to_json())))
        assert back.score == cal.score and back.confidences(check[0][:50], check[1][:50], check_age[:50]) == \
            pytest.approx(cal.confidences(check[0][:50], check[1][:50], check_age[:50]), abs=1e-3)


def test_a_confidence_that_reads_the_age_holds_for_young_and_old_readouts_alike():
    """Young readouts are right less often at the same scores: the logistic calibration that
    reads the age holds for both groups on another split; the temperature alone cannot."""
    scores, lead, truth, age = _tagger_like(3000, 0)
    cal = fit(scores, lead, truth, "logistic", age_s=age, names=("logit", "age"))
    temp = fit(scores, lead, truth, "temperature")
    *check, check_age = _tagger_like(3000, 1)
    right = check[1] == check[2]
    conf, plain = cal.confidences(*check[:2], check_age), temp.confidences(*check[:2])
    for group in (check_age < 5, check_age > 15):
        off, plain_off = (abs(c[group].mean() - right[group].mean()) for c in (conf, plain))
        assert plain_off > 0.1 and off < plain_off / 3
    # older than the fit ever saw: read as the oldest it saw, not extrapolated
    assert cal.confidence(check[0][0], check[1][0], 3600.0) == pytest.approx(
        cal.confidence(check[0][0], check[1][0], float(age.max())))
    with pytest.raises(ValueError, match="age"):
        cal.confidences(*check[:2])  # the engine always passes it; a caller that forgets hears why


def test_an_older_calibration_file_still_loads_and_a_newer_one_says_why_not(tmp_path, caplog):
    genres = ["Electronic", "Rock"]
    v1 = {"temperature": 0.5, "score": "prob", "knots": [0.0, 1.0], "values": [0.0, 1.0], "genres": genres}
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"m": v1}))
    cal = load_calibration("m", genres, path)
    assert cal is not None and cal.score == "prob"
    # a version-1 temperature: the headline's tempered probability, the age (passed by the engine) unread
    assert cal.confidence(np.array([0.4, 0.2]), 0, 12.0) == pytest.approx(0.8, abs=1e-6)  # 0.16 / (0.16 + 0.04)
    path.write_text(json.dumps({"m": {**v1, "version": 99}}))
    with caplog.at_level("WARNING"):
        assert load_calibration("m", genres, path) is None  # no confidence rather than a wrong one
    assert "newer" in caplog.text and "tools.calibrate_confidence" in caplog.text


@needs_both_packages
def test_the_fitted_age_is_the_age_the_engine_reads(musicnn):
    """tools/calibrate_confidence reconstructs each readout's age from the readouts alone; on
    real music with a silence and a change of music it equals the age the engine passes."""
    from tools.calibrate_confidence import ages
    def excerpt(track, start_s, seconds):
        x, rate = music(track, start_s, seconds)
        return resample(x.mean(axis=1), rate, RATE)
    y = np.concatenate([excerpt("machine_wars.mp3", 30, 20), excerpt(str(MINSTRELS), 30, 20),
                        np.zeros(3 * RATE, np.float32), excerpt("machine_wars.mp3", 50, 10)])
    got = []
    eng = StreamEngine(musicnn, EngineConfig(top_k=0, music_detector=False), background=False)
    gs = eng._genre_smoother  # the state the engine's confidence reads (stream/engine.py)
    eng.on_result = lambda r: got.append((r, None if r.silent else r.time_s - gs.started_at))
    for i in range(0, len(y), RATE // 10):
        eng.feed(y[i:i + RATE // 10], RATE)
    eng.close()
    rows = [(r, a) for r, a in got if not r.silent and r.genre is not None]
    smooth = np.array([[r.genre_scores.get(g, 0.0) for g in eng.genres] for r, _ in rows], np.float32)
    engine_age = np.array([a for _, a in rows])
    assert (engine_age[1:] < engine_age[:-1]).sum() >= 2  # restarted at the new music and after the silence
    assert ages(np.array([r.time_s for r, _ in rows], np.float32), smooth) == pytest.approx(engine_age, abs=1e-3)


def test_shipped_calibration_was_checked_on_held_out_tracks(musicnn):
    eng = StreamEngine(musicnn, EngineConfig(music_detector=False), background=False)
    cal = load_calibration(musicnn.name, eng.genres)
    assert cal is not None
    table = json.loads(open("stream/models/musicnn/calibration.json").read())[musicnn.name]
    # split by package: no package both fits and checks; the validation packages check
    assert table["check_packages"] and not set(table["fit_packages"]) & set(table["check_packages"])
    assert {"asc-music", "wesnoth-1.16-music"} <= set(table["check_packages"])
    # on held-out packages the confidence errs by well under half what the raw score does
    assert table["ece_check"] < table["ece_raw_score"] / 2
    assert table["ece_every_package_held_out"] < table["ece_raw_score"] / 2
    assert cal.score == table["score"] and table["method"] in table["lopo_ece_fit_packages"]
    # the method was chosen on the fit packages alone (the check packages only judge)
    assert table["lopo_ece_fit_packages"][table["method"]] == min(table["lopo_ece_fit_packages"].values())
    eng.feed(_music(12.0), RATE)
    r = eng.latest
    assert r.genre is not None and 0.0 <= r.confidence <= 1.0
    assert r.to_json()["certainty"] == words(r.confidence)
    eng.close()


def test_every_shipped_calibration_and_head_was_fitted_on_the_weights_that_ship_under_its_name():
    """New weights under an old name (the default became a trained student) need a new fit: a
    calibration records the digest of the weights it was fitted on."""
    from stream.models.musicnn.model import SPECS, weights_digest
    table = json.loads(open("stream/models/musicnn/calibration.json").read())
    assert "musicnn" in table
    for name, entry in table.items():
        assert name in SPECS and entry.get("weights_sha256") == weights_digest(name), name
    assert weights_digest("musicnn") != weights_digest("musicnn-original")
    # the device page's presence head reads the default's logits (stream/presence_head.py)
    head = json.loads(open("stream/models/musicnn/presence_head.json").read())
    assert head["weights_sha256"] == weights_digest("musicnn")


def test_words():
    assert [words(c) for c in (0.9, 0.8, 0.6, 0.2, None)] == ["sure", "sure", "likely", "unsure", None]
