"""Genre above style (issue 22): the bundled mapping, overrides, genre scores against style
scores, a headline that holds while the tagger moves between electronic styles, checkpoints
whose labels are genres, and JSON records that only grew.

Real recordings: Debian packages asc-music (electronic) and wesnoth-1.16-music (orchestral),
GPL-2+, installed by `scripts/setup.sh --dev`; cut and spliced at test time."""
import dataclasses
import json

import numpy as np
import pytest

from support.music import MINSTRELS, MUSIC_DIR, needs_both_packages
from support.models import GTZAN_LABELS, BandModel, tone
from stream import EngineConfig, Result, SessionSummary, StreamEngine, load_model
from stream.engine import EngineStats
from stream.genres import genre_mapping, read_genre_table
from stream.models.musicnn.model import GENRE_TAGS, GENRES_PATH
from test_change import excerpt, run
from ui import report

real = needs_both_packages


def check_consistent(results, engine):
    """Every readout: the style lies in the genre, both lead their lists, and each genre's score
    lies between its best style's score and the sum of its styles' (max and sum pooling both:
    an EMA of the max is at least the max of the EMAs)."""
    level = engine.genre_level
    members = {g: [engine.model.labels[i] for i in m] for g, m in zip(level.genres, level.members)}
    loud = [r for r in results if not r.silent]
    assert loud
    for r in loud:
        assert level.genre_of[r.label] == r.genre, (r.time_s, r.label, r.genre)
        assert next(iter(r.genre_scores)) == r.genre and next(iter(r.scores)) == r.label
        assert set(r.genre_scores) == set(level.genres)
        for g, v in r.genre_scores.items():
            styles = [r.scores[label] for label in members[g]]
            assert max(styles) - 1e-9 <= v <= sum(styles) + 1e-9, (r.time_s, g, v, styles)
    return loud


# ---- the mapping -------------------------------------------------------------------------------
def test_bundled_mapping_places_every_genre_tag_once_and_nothing_else(musicnn):
    data = json.loads(GENRES_PATH.read_text())
    assert set(data["styles"]) == GENRE_TAGS  # every genre tag, and only genre tags
    genres = data["genres"]
    assert len(genres) == len(set(genres)) and 8 <= len(genres) <= 15
    placed = {label: entry[0] for label, entry in data["styles"].items()}
    assert set(placed.values()) == set(genres)  # no genre without a style, no misspelt one
    for label, entry in data["styles"].items():  # [genre] or [genre, why]: a reason is one line
        assert len(entry) in (1, 2) and all(isinstance(x, str) and x.strip() and "\n" not in x for x in entry)
    # the loaded model: every label of its genre view has a genre, in the file's genre order
    assert set(musicnn.genres) == set(musicnn.default_labels)
    engine = StreamEngine(musicnn, background=False)
    assert engine.genres == genres and engine.genre_level.has_styles
    # a single checkpoint keeps only its own tags (MTT has no "hip-hop")
    mtt = load_model("musicnn-mtt")
    assert set(mtt.genres) == set(mtt.default_labels) and "hip-hop" not in mtt.genres


def test_override_by_mapping_or_file_and_clear_errors(tmp_path):
    model = BandModel()  # labels low, mid, high
    engine = StreamEngine(model, EngineConfig(genres={"LOW": "Bass", "mid": "Treble", "high": "Treble"}),
                          background=False)
    assert engine.genres == ["Bass", "Treble"] and engine.genre_level.genre_of == {
        "low": "Bass", "mid": "Treble", "high": "Treble"}
    f = tmp_path / "genres.json"
    f.write_text(json.dumps({"genres": ["Treble", "Bass"],
                             "styles": {"low": ["Bass", "why"], "mid": "Treble", "high": ["Treble"]}}))
    assert StreamEngine(model, EngineConfig(genres=str(f)), background=False).genres == ["Treble", "Bass"]
    assert StreamEngine(model, EngineConfig(genres=f), background=False).genres == ["Treble", "Bass"]
    # a label left out is shown but never leads
    part = StreamEngine(model, EngineConfig(genres={"low": "Bass", "mid": "Mid"}, top_k=0), background=False)
    got = []
    part.on_result = got.append
    part.feed(tone(6000, 3.0, 16000), 16000)  # all "high"
    assert got and got[-1].label in ("low", "mid") and "high" in got[-1].scores
    with pytest.raises(ValueError, match=r"does not have: \['bass'\]"):
        StreamEngine(model, EngineConfig(genres={"bass": "Low"}), background=False)
    with pytest.raises(ValueError, match="cannot be read"):
        StreamEngine(model, EngineConfig(genres=str(tmp_path / "missing.json")), background=False)
    f.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        genre_mapping(f)
    with pytest.raises(ValueError, match="not in its 'genres' list"):
        read_genre_table({"genres": ["Bass"], "styles": {"low": "Bass", "mid": "Trebel"}})
    with pytest.raises(ValueError, match="needs a genre name"):
        read_genre_table({"low": ""})
    with pytest.raises(ValueError, match="placed twice"):
        read_genre_table({"low": "A", "LOW": "B"})


# ---- genre scores --------------------------------------------------------------------------------
@pytest.mark.parametrize("pool", ["max", "sum"])
def test_genre_scores_are_consistent_with_style_scores_in_every_result(pool):
    """Tones that move between the bands (changes of music re-anchor both levels) and a pause."""
    rate = 16000
    hush = (1e-5 * np.random.default_rng(0).standard_normal(6 * rate)).astype(np.float32)  # -100 dBFS
    audio = np.concatenate([tone(300, 6, rate), tone(2000, 5, rate), tone(6000, 5, rate), hush,
                            tone(2000, 4, rate) + tone(6000, 4, rate), tone(300, 5, rate)])
    got = []
    config = EngineConfig(window_s=4.0, hop_s=0.5, min_window_s=1.0, top_k=0, change_s=0.5,
                          genres={"low": "Bass", "mid": "Treble", "high": "Treble"})
    engine = StreamEngine(BandModel(), config, background=False, on_result=got.append)
    engine.genre_level = dataclasses.replace(engine.genre_level, pool=pool)  # (how bench/quality.py compares)
    for i in range(0, len(audio), 1600):
        engine.feed(audio[i:i + 1600], rate)
    loud = check_consistent(got, engine)
    assert any(r.silent and r.genre is None and r.genre_scores == {} for r in got)
    assert {r.genre for r in loud} == {"Bass", "Treble"} and {r.label for r in loud} == {"low", "mid", "high"}
    if pool == "sum":  # an EMA of sums is the sum of the EMAs, re-anchoring included
        for r in loud:
            assert r.genre_scores["Treble"] == pytest.approx(r.scores["mid"] + r.scores["high"], abs=1e-9)
    summary = engine.summary()
    assert set(summary.genre_shares) == {"Bass", "Treble"} and summary.dominant_genre in ("Bass", "Treble")
    assert sum(summary.styles["Treble"].values()) == pytest.approx(summary.genre_shares["Treble"])
    assert sum(summary.genre_shares.values()) == pytest.approx(1.0) == sum(summary.shares.values())


@real
def test_spliced_electronic_music_keeps_one_headline_while_the_styles_move(musicnn):
    """Three electronic excerpts the tagger hears as techno, electronic and ambient: the label
    (and a headline made of labels, as before genres) moves, the genre holds."""
    audio = np.concatenate([excerpt(MUSIC_DIR / "time_to_strike.mp3", 45.0, 18.0),
                            excerpt(MUSIC_DIR / "frontiers.mp3", 20.0, 18.0),
                            excerpt(MUSIC_DIR / "time_to_strike.mp3", 145.0, 18.0)])
    got = run(musicnn, audio)
    engine = StreamEngine(musicnn, EngineConfig(top_k=0), background=False)
    check_consistent(got, engine)
    labels = [r.label for r in got]
    assert len(set(labels)) >= 2 and all(musicnn.genres[l] == "Electronic" for l in labels), labels
    assert {r.genre for r in got} == {"Electronic"}, [(r.time_s, r.genre, r.label) for r in got]
    # the same stream with each tag its own genre: the headline is the tag, and it changes
    tags = run(musicnn, audio, config=EngineConfig(top_k=0, genres={l: l for l in musicnn.default_labels}))
    heads = [r.genre for r in tags]
    assert sum(a != b for a, b in zip(heads, heads[1:])) >= 2, heads


@real
def test_a_change_of_music_moves_genre_and_style_together(musicnn):
    audio = np.concatenate([excerpt(f"{MUSIC_DIR}/machine_wars.mp3", 60.0, 18.0), excerpt(MINSTRELS, 60.0, 14.0)])
    got = run(musicnn, audio)
    check_consistent(got, StreamEngine(musicnn, EngineConfig(top_k=0), background=False))
    assert got[12].genre == "Electronic"
    after = [r for r in got if r.time_s > 18.0 + 4.0]
    assert after and all(r.genre != "Electronic" for r in after), [(r.time_s, r.genre, r.label) for r in after]


# ---- checkpoints whose labels are genres -------------------------------------------------------------
def test_gtzan_style_checkpoint_has_no_style_level(tiny_model):
    assert tiny_model.labels == GTZAN_LABELS and tiny_model.genres is None
    got = []
    engine = StreamEngine(tiny_model, EngineConfig(window_s=2.0, hop_s=0.5, min_window_s=1.0, top_k=0), background=False,
                          on_result=got.append)
    rng = np.random.default_rng(0)
    for _ in range(8):
        engine.feed((0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    assert engine.genres == GTZAN_LABELS and not engine.genre_level.has_styles
    assert len(got) >= 5
    for r in got:
        assert r.genre == r.label and r.genre_scores == r.scores
    s = engine.summary()
    assert s.genre_shares == s.shares and s.dominant_genre == s.dominant and s.styles == {}
    assert "(" not in report.summary_text(s)  # one name per genre, no style list
    assert report.headline(got[-1].genre, got[-1].label) == got[-1].label


# ---- JSON records --------------------------------------------------------------------------------------
# The fields of `cli_listen.py --json` and WebSocket records before genres existed, in order.
OLD_RESULT = ["event", "time_s", "label", "scores", "silent", "level_dbfs", "window_s", "inference_ms", "latency_ms"]
OLD_SUMMARY = ["event", "reason", "duration_s", "silent_s", "dominant", "shares", "windows_classified",
               "windows_silent", "windows_skipped", "errors", "inference_ms_mean", "inference_ms_p95",
               "real_time_factor", "seconds_received"]


def test_json_records_keep_every_old_field_and_add_the_genre():
    res = Result({"techno": 0.3, "electronic": 0.35, "pop": 0.1}, {}, "techno", 12.0, False, -20.0, 9.0, 30.0, 40.0,
                 "Electronic", {"Electronic": 0.4, "Pop": 0.1})
    rec = json.loads(report.dumps(res.to_json(overflows=0)))
    assert list(rec)[:len(OLD_RESULT)] == OLD_RESULT
    assert rec["label"] == "techno" and rec["scores"] == {"techno": 0.3, "electronic": 0.35, "pop": 0.1}
    assert rec["genre"] == "Electronic" and rec["genre_scores"] == {"Electronic": 0.4, "Pop": 0.1}
    assert rec["overflows"] == 0
    quiet = json.loads(report.dumps(Result({}, {}, None, 13.0, True, -70.0, 9.0, 0.0, 0.0).to_json()))
    assert list(quiet)[:len(OLD_RESULT)] == OLD_RESULT and quiet["genre"] is None and quiet["genre_scores"] == {}
    summary = SessionSummary(60.0, 0.0, {"techno": 0.6, "pop": 0.4}, "techno", {"Electronic": 0.6, "Pop": 0.4},
                             "Electronic", {"Electronic": {"techno": 0.6}, "Pop": {"pop": 0.4}})
    stats = EngineStats(60, 0, 0, 0, None, 30.0, 40.0, 0.03, 0, 60.0, 0, 0.0)
    srec = json.loads(report.dumps(summary.to_json(stats, "end of stream", dropped_results=0)))
    assert list(srec)[:len(OLD_SUMMARY)] == OLD_SUMMARY
    assert srec["dominant"] == "techno" and srec["shares"] == {"techno": 0.6, "pop": 0.4}
    assert srec["dominant_genre"] == "Electronic" and srec["genre_shares"] == {"Electronic": 0.6, "Pop": 0.4}
    assert srec["styles"] == {"Electronic": {"techno": 0.6}, "Pop": {"pop": 0.4}} and srec["dropped_results"] == 0
    text = report.summary_text(summary)
    assert "Dominant genre: Electronic." in text and "Electronic 60 % (techno 60 %), Pop 40 % (pop 40 %)" in text


def test_engine_records_round_trip_through_the_engine(musicnn):
    """A real engine's records carry genre and style, and the old fields mean what they meant."""
    rate = 16000
    got = []
    engine = StreamEngine(musicnn, EngineConfig(top_k=3), background=False, on_result=got.append)
    engine.feed(np.tile(tone(220, 0.5, rate) + tone(330, 0.5, rate), 10), rate)
    assert got
    for r in got:
        rec = json.loads(report.dumps(r.to_json()))
        assert rec["label"] == r.label and next(iter(rec["scores"])) == r.label and len(rec["scores"]) == 3
        assert rec["genre"] == r.genre == musicnn.genres[r.label] and next(iter(rec["genre_scores"])) == r.genre
