"""One settings table (stream.config.SETTINGS) and one list of models (stream.registry): every face
derives its flags, help, sliders, query and checks from them, so none can drift from another.
(That every face accepts the same ranges: tests/test_ui.py.)"""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.datastructures import QueryParams

from stream import registry
from stream.config import FACE_SETTINGS, QUERY_SETTINGS, SETTINGS, EngineConfig, configure
from ui import options

ROOT = Path(__file__).resolve().parents[1]
# every command line that takes a model: (name, argv after the interpreter, has the engine flags)
FACES = [("genre-listen", ["cli_listen.py"], True), ("genre-app", ["app.py"], True),
         ("genre-serve", ["-m", "ui.net"], True), ("genre-serve-ray", ["-m", "ui.net.ray_cli"], False),
         ("genre-evaluate", ["-m", "ui.evaluate"], False)]


def squeezed(text: str) -> str:
    """Without whitespace: argparse wraps help lines anywhere, also after a hyphen."""
    return "".join(text.split())


@pytest.fixture(scope="module")
def helps() -> dict:
    """Each face's --help, run as a user runs it (all at once: each imports for a second or two)."""
    procs = {name: subprocess.Popen([sys.executable, *argv, "--help"], cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=dict(os.environ, COLUMNS="100"))
             for name, argv, _ in FACES}
    out = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, (name, stderr)
        out[name] = stdout
    return out


@pytest.mark.parametrize("face", [f[0] for f in FACES])
def test_every_face_lists_the_models_and_which_to_pick(face, helps):
    text = squeezed(helps[face])
    for name in ("musicnn", "musicnn-original", "musicnn-room", "auto", "a Hub id", "a directory"):
        assert squeezed(name) in text, (face, name)
    assert squeezed(registry.model_help()) in text, face  # the registry's own words, advice included
    assert squeezed(registry.ADVICE) in text


@pytest.mark.parametrize("face", [f[0] for f in FACES if f[2]])
def test_every_face_takes_its_engine_help_from_the_table(face, helps):
    text = squeezed(helps[face])
    for s in FACE_SETTINGS:
        assert squeezed(", ".join(s.flags)) in text or squeezed(s.flags[-1]) in text, (face, s.key)
        assert squeezed(options.flag_help(s.key)) in text, (face, s.key)


def test_the_models_listed_are_the_ones_that_load():
    from stream.models.musicnn.model import SPECS, TRAINED

    assert list(SPECS) == list(registry.BUNDLED)
    assert TRAINED == {"musicnn": "track", "musicnn-room": "robust"}
    assert [n for n, _ in registry.listed()][:3] == ["musicnn", "musicnn-original", "musicnn-room"]


def test_the_page_builds_its_sliders_and_model_list_from_the_tables():
    from ui.web import page
    from ui.web.session import PAGE_SETTINGS, LiveSettings

    assert [s.key for s in PAGE_SETTINGS] == ["window", "hop", "smoothing", "top_k"]
    for s in PAGE_SETTINGS:
        slider = page._slider(s, s.span[0])
        assert (slider.minimum, slider.maximum) == s.span
        assert slider.info == s.help and slider.label == s.control.label and slider.elem_id == s.control.elem_id
    wide = page._slider(PAGE_SETTINGS[0], 60.0)  # a model default outside the span widens it
    assert (wide.minimum, wide.maximum) == (3.0, 60.0)
    text = page.models_text()
    for name, line in registry.listed():
        assert f"{name}: {line}" in text
    assert registry.ADVICE in text
    d = LiveSettings(9.0, 1.0, 4.0, 5, -55.0)
    assert d.with_controls(4, 0.5, 2, 3) == LiveSettings(4.0, 0.5, 2.0, 3, -55.0)


def test_every_face_turns_the_same_values_into_the_same_config():
    """A window shorter than the first readout's min_window_s also shortens that: on the command
    lines, on the page (a model whose default window is short widens its slider) and in the
    network API alike (they had drifted)."""
    from ui.net.settings import parse_stream_params
    from ui.web.session import LiveSettings

    p = argparse.ArgumentParser()
    options.add_engine_flags(p, {})  # (without the spans: 2.5 s is below the faces' 3 s)
    flags = options.engine_config(p.parse_args(["-w", "2.5", "--hop", "0.5", "-s", "2", "-k", "3"]))
    page = LiveSettings(2.5, 0.5, 2.0, 3, -55.0).engine_config()
    assert flags.min_window_s == page.min_window_s == 2.5
    assert flags == configure(window=2.5, hop=0.5, smoothing=2, top_k=3)
    assert page == configure(window=2.5, hop=0.5, smoothing=2, top_k=0)  # the page keeps every genre's score
    # a server whose streams start later (min_window_s 5): a stream's 4 s window starts at 4 s
    base = EngineConfig(min_window_s=5.0)
    _, _, _, query = parse_stream_params(QueryParams("sample_rate=48000&window=4&hop=0.5&smoothing=2&top_k=3"), base)
    assert query == configure(base, window=4, hop=0.5, smoothing=2, top_k=3) and query.min_window_s == 4.0


def test_the_query_and_the_listener_forward_what_the_table_says():
    import cli_listen
    from ui.net.settings import QUERY_PARAMS

    keys = [s.key for s in QUERY_SETTINGS]
    assert keys == ["window", "hop", "smoothing", "top_k"] and set(keys) <= set(QUERY_PARAMS)
    assert cli_listen.SERVER_OPTIONS == tuple(keys)
    assert "silence_dbfs" not in QUERY_PARAMS  # a server's own setting: the listener refuses it with --server


def test_the_engine_checks_its_limits_from_the_table():
    from stream import StreamEngine

    class Model:
        sample_rate, min_samples, default_window_s, default_hop_s = 16000, 1, 9.0, 1.0

    with pytest.raises(ValueError) as exc:
        StreamEngine.resolve(EngineConfig(window_s=200, change_s=-1, silence_dbfs=3), Model())
    text = str(exc.value)
    assert "window_s=200.0 (expected 0.1..120 s)" in text and "change_s=-1" in text and "silence_dbfs=3" in text
    # each setting the engine checks is in the table once, and every field the table names exists
    fields = [s.field for s in SETTINGS]
    assert len(fields) == len(set(fields)) and set(fields) <= set(EngineConfig.__dataclass_fields__)


@pytest.mark.parametrize("value, on", [(None, True), ("", True), ("on", True), (" Yes", True), ("1", True),
                                       ("off", False), ("0", False), ("FALSE", False), ("no", False)])
def test_the_music_detector_switch_is_read_from_the_environment(monkeypatch, value, on):
    """EngineConfig(music_detector=None) takes STREAM_MUSIC_DETECTOR; an explicit value wins."""
    from stream import StreamEngine

    class Model:
        sample_rate, min_samples, default_window_s, default_hop_s = 16000, 1, 9.0, 1.0

    if value is None:
        monkeypatch.delenv("STREAM_MUSIC_DETECTOR", raising=False)
    else:
        monkeypatch.setenv("STREAM_MUSIC_DETECTOR", value)
    assert StreamEngine.resolve(EngineConfig(), Model()).music_detector is on
    assert StreamEngine.resolve(EngineConfig(music_detector=not on), Model()).music_detector is (not on)


def test_a_misspelt_music_detector_switch_is_refused(monkeypatch):
    from stream import StreamEngine

    monkeypatch.setenv("STREAM_MUSIC_DETECTOR", "of")
    with pytest.raises(ValueError, match=r"STREAM_MUSIC_DETECTOR='of' is neither on nor off"):
        StreamEngine.resolve(EngineConfig(), type("M", (), {"default_window_s": 9.0, "default_hop_s": 1.0})())
