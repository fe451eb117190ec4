"""Shared fixtures (a tiny real transformers checkpoint, simple real models, a tiny disk), the
markers every test gets from what it uses, and CI's no-skip rule. Helpers live in tests/support."""
from __future__ import annotations

import os
import re
import subprocess

# A Ray API call after ray.shutdown() would quietly start a new local cluster inside the test
# process, whose driver then exits (code 1, no report) a minute after that cluster goes: tests
# start Ray explicitly.
os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
# Ray starts its workers (Serve's replicas among them) at nice 15: beside two busy processes of
# normal priority a replica got ~2 % of a core, and the Ray cases timed out on a loaded CI machine
# (model load > 120 s). The tests check what Ray computes, not its priority: equal priority.
os.environ.setdefault("RAY_worker_niceness", "0")
# the toy models hear tones, which are no music: tests of presence turn the detector on themselves
os.environ.setdefault("STREAM_MUSIC_DETECTOR", "off")
import pytest

from harness.checkpoint import make_tiny_checkpoint
from support.models import BandModel

# Tiers (registered in pytest.ini). A test is marked by what it uses: the fixtures below start a
# real part; modules that start servers or Ray inline say so with `pytestmark`. Whatever needs a
# browser, a server or Ray is also `slow`, and so is what a module or test marks slow by hand
# (real-time streams of real music, model builds): `pytest -m "not slow"` is the quick tier.
FIXTURE_MARKS = {"pw": ("browser",), "server": ("server",), "roomy_server": ("server",), "pulse": ("slow",),
                 "ray_app": ("ray",), "wheel": ("slow",),
                 "musicnn": ("slow",)}  # the bundled model: seconds to load, real music through it
SLOW_PARTS = ("browser", "server", "ray")
# Modules whose tests share a costly module-scoped fixture (a server, a browser's page server, float32
# references of real music, the bundled model's four networks): under xdist each worker that runs one of
# their tests builds it again (measured: test_precision's references twice, minutes each; test_musicnn's
# networks four times), so one worker runs each of these modules whole.
SHARED_SETUP = ("test_precision.py", "test_musicnn.py", "test_presence_faces.py", "test_kiosk_screens.py",
                "test_page_details.py")


@pytest.hookimpl(tryfirst=True)  # before xdist's worker hook, which reads the xdist_group marks added here
def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, marks in FIXTURE_MARKS.items():
            if fixture in item.fixturenames:
                for mark in marks:
                    item.add_marker(mark)
        if any(item.get_closest_marker(m) for m in SLOW_PARTS) and not item.get_closest_marker("slow"):
            item.add_marker("slow")
        # pytest-xdist (-n): one worker runs every Ray test, one after another. Each starts a local
        # Ray, and two would not stay apart: ray.init() without an address joins the cluster that a
        # `ray start` recorded in /tmp/ray (tests/test_serve_cli.py starts one).
        if item.get_closest_marker("ray"):
            item.add_marker(pytest.mark.xdist_group("ray"))
        elif item.path.name in SHARED_SETUP:
            item.add_marker(pytest.mark.xdist_group(item.path.name))
        group = item.get_closest_marker("xdist_group")
        if group and config.getoption("loadgroup", False) and not hasattr(item, "_nodeid"):
            # pytest >= 9.2 keeps the id in `_id`: xdist 3.8 sets `_nodeid`, which no longer names the
            # test, so the controller saw no group and spread them over the workers. Its suffix, here.
            item._id = type(item._id).parse(f"{item.nodeid}@{group.args[0]}")
    if hasattr(config, "workerinput"):
        # Under xdist the workers take tests in this order as they free up: the long ones first
        # (a browser, a server, then other slow ones; each tier in file order), so that no long
        # test starts last while the other workers sit idle. Every worker sorts alike.
        items.sort(key=lambda item: next((i for i, m in enumerate(("browser", "server", "slow"))
                                          if item.get_closest_marker(m)), 3))


def pytest_configure(config):
    # `-n N` alone means --dist load, which ignores xdist_group: the groups above hold under a
    # plain `pytest -n N` too. A worker parses the command line again (it would read "load" and
    # leave its tests' ids without the group that the controller schedules by): the controller
    # tells it (pytest_configure_node).
    if getattr(config.option, "dist", "no") == "load" and not hasattr(config, "workerinput"):
        config.option.dist = "loadgroup"
    if getattr(config, "workerinput", {}).get("live_genre_dist") == "loadgroup":
        config.option.loadgroup = True


@pytest.hookimpl(optionalhook=True)  # (a pytest-xdist hook: absent without it)
def pytest_configure_node(node):
    node.workerinput["live_genre_dist"] = node.config.option.dist


# CI (.ci/run sets CI_NO_SKIP=1) installs everything the tests use, so a skip there means a test
# that did not run while the log still turns green: it is reported as a failure instead. The one
# exception is a skip for a CPU feature this machine lacks (tests/test_accel.py's bf16 fixture,
# whose reason carries stream.models.accel.bf16_support()'s words): no setup step can add it.
# The pattern is deliberately narrow: a torch build without oneDNN bf16, or unknown CPU
# features, still fail.
NO_SKIP_ENV = "CI_NO_SKIP"
ALLOWED_SKIP = re.compile(r"\bthe CPU lacks avx512_bf16/amx_bf16\b")


def _skip_reason(report) -> str:
    lr = report.longrepr
    return lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or os.environ.get(NO_SKIP_ENV, "") in ("", "0") or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if ALLOWED_SKIP.search(reason):
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped under {NO_SKIP_ENV}=1 (CI installs everything the tests need, so a skip "
                       f"hides a test that did not run): {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module-level skip (pytest.importorskip, pytest.skip(allow_module_level=True)) is
    reported at collection; under CI_NO_SKIP it is a collection error the same way."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get(NO_SKIP_ENV, "") not in ("", "0"):
        reason = _skip_reason(report)
        if not ALLOWED_SKIP.search(reason):
            report.outcome = "failed"
            report.longrepr = f"module skipped under {NO_SKIP_ENV}=1: {reason}"


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (mounted for the test: root only): a disk a test can fill (tests/test_history*.py)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    return str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_hubert")))


@pytest.fixture(scope="session")
def tiny_model(tiny_ckpt):
    from stream import load_model

    return load_model(tiny_ckpt)


@pytest.fixture(scope="session")
def musicnn():
    """The bundled model as `load_model("musicnn")` gives it, loaded once: a load takes seconds
    (several under load). Tests read it and never change it."""
    from stream import load_model

    return load_model("musicnn")


@pytest.fixture
def band_model():
    return BandModel()


@pytest.fixture(scope="module")
def pw():
    """Playwright's driver (tests/support/browser.py launches Debian's Chromium with it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p
