"""One engine protocol (stream.protocol.Engine): the engine in this process and the network API's
client both are one, so the terminal listener drives either without asking which it holds."""
import ast
import re
from pathlib import Path

from support.models import BandModel

from stream import EngineConfig, StreamEngine
from stream.client import RemoteEngine
from stream.protocol import Engine

ROOT = Path(__file__).resolve().parents[1]


def test_both_engines_are_one():
    local = StreamEngine(BandModel(), EngineConfig(window_s=2.0, hop_s=0.5, min_window_s=1.0), background=False)
    remote = RemoteEngine("ws://127.0.0.1:1")  # (not connected: the protocol is its surface, not a connection)
    for engine in (local, remote):
        assert isinstance(engine, Engine), type(engine).__name__
        assert engine.failed() is None and not engine.closed
    assert local.min_audio_s == BandModel.min_samples / BandModel.sample_rate and remote.min_audio_s == 0.0
    assert local.genres and remote.genres == []  # a server's genres come with its results
    assert local.visible_labels and local.genre_level is not None
    assert remote.visible_labels == [] and remote.genre_level is None
    assert (local.disconnects, local.lost_s) == (remote.disconnects, remote.lost_s) == (0, 0.0)
    local.close()
    remote.close()
    assert local.closed and remote.closed


def test_the_entry_point_only_parses_flags():
    """cli_listen.py holds no check of which engine it has: the listener's run (ui/terminal) does
    the work through the protocol."""
    tree = ast.parse((ROOT / "cli_listen.py").read_text(encoding="utf-8"))
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not names & {"engine", "StreamEngine", "RemoteEngine", "load_model", "connect", "failed"}, names
    funcs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert funcs == ["int_or_str", "parse_args", "main"], funcs
    for face in ("listener.py", "view.py"):
        text = (ROOT / "ui/terminal" / face).read_text(encoding="utf-8")
        assert not re.search(r"(getattr|hasattr|isinstance)\((self\.)?engine\b", text), face
