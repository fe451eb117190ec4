"""`load_model("auto")`: the course model when reachable, else the bundled model, in bounded time."""
import logging
import re
import time

from stream import load_model
from stream.models import COURSE_MODEL


def test_auto_falls_back_to_bundled_when_hub_unreachable(monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="stream")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # empty cache
    t0 = time.monotonic()
    m = load_model("auto")
    assert time.monotonic() - t0 < 60  # bounded: no 30 s Hub retries
    assert m.name.startswith("musicnn")
    assert "bundled" in m.notice and "unreachable" in m.notice
    # plain words on screen (the page's model line, the listener's first line); the error in the log
    assert not re.search(r"Error|Errno|refused|\[|:\s*\[", m.notice), m.notice
    assert any("ConnectError" in r.getMessage() or "refused" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]


def test_auto_offline_flag_skips_hub(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://192.0.2.1:81")  # would hang if it were contacted
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    caplog.set_level(logging.INFO, logger="stream")
    t0 = time.monotonic()
    m = load_model("auto")
    assert time.monotonic() - t0 < 60
    assert m.name.startswith("musicnn") and "HF_HUB_OFFLINE" in m.notice
    # the offline fallback is the normal case without a network: said once, at INFO, not as a warning
    said = [r for r in caplog.records if r.name.startswith("stream") and r.getMessage() == m.notice]
    assert [r.levelno for r in said] == [logging.INFO]
    assert not [r for r in caplog.records if r.name.startswith("stream") and r.levelno >= logging.WARNING]


def cache_course_model(monkeypatch, tmp_path, keep=None):
    """Lay out an offline Hub cache entry (refs/main -> snapshot) for the course id holding a
    tiny checkpoint; `keep` limits the snapshot to those file names (an interrupted download)."""
    import shutil

    from support.models import make_tiny_checkpoint
    from huggingface_hub import constants

    hf_home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = hf_home / "hub" / ("models--" + COURSE_MODEL.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = make_tiny_checkpoint(repo / "snapshots" / commit)
    for f in snap.iterdir():
        if keep is not None and f.name not in keep:
            f.unlink() if f.is_file() else shutil.rmtree(f)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))


def test_auto_uses_cached_course_model(monkeypatch, tmp_path):
    """A course model in the local cache wins, without the network."""
    cache_course_model(monkeypatch, tmp_path)
    m = load_model("auto")
    assert m.name == COURSE_MODEL and "cache" in m.notice
    assert len(m.labels) == 10


def test_auto_with_incomplete_cached_course_model_falls_back(monkeypatch, tmp_path):
    """An interrupted download (config.json cached, no weights) must not break start-up."""
    cache_course_model(monkeypatch, tmp_path, keep={"config.json"})
    m = load_model("auto")
    assert m.name.startswith("musicnn") and "incomplete" in m.notice
