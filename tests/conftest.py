"""Shared fixtures: a tiny real transformers checkpoint, simple real models, test audio."""
from __future__ import annotations

import os
import re
import subprocess
import threading
import time

import numpy as np

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

from stream.models.base import AudioModel

GTZAN_LABELS = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]


def make_tiny_checkpoint(path, labels=GTZAN_LABELS, multi_label=False, seed=0):
    """Save a tiny HuBERT-for-classification + feature extractor (random weights) to `path`."""
    import torch
    from transformers import HubertConfig, HubertForSequenceClassification, Wav2Vec2FeatureExtractor

    torch.manual_seed(seed)
    cfg = HubertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32, 32, 32, 32, 32), conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, classifier_proj_size=16,
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
    )
    HubertForSequenceClassification(cfg).eval().save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(path)
    return path


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


class BandModel(AudioModel):
    """A real, deterministic classifier for engine tests: which third of the spectrum
    (low < 1 kHz, mid 1-3 kHz, high > 3 kHz) holds most energy. Optional delay emulates a
    slow model."""

    name = "band"
    sample_rate = 16000
    labels = ["low", "mid", "high"]
    default_window_s = 2.0
    default_hop_s = 0.5
    min_samples = 400

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.calls = 0
        self.batch_sizes = []
        self.lock = threading.Lock()

    def predict(self, windows):
        with self.lock:
            self.calls += 1
            self.batch_sizes.append(len(windows))
        if self.delay_s:
            time.sleep(self.delay_s)
        spec = np.abs(np.fft.rfft(windows, axis=1)) ** 2
        f = np.fft.rfftfreq(windows.shape[1], 1 / self.sample_rate)
        e = np.stack([spec[:, f < 1000].sum(1), spec[:, (f >= 1000) & (f < 3000)].sum(1), spec[:, f >= 3000].sum(1)], 1)
        return (e / e.sum(1, keepdims=True)).astype(np.float32)


@pytest.fixture
def band_model():
    return BandModel()


def tone(freq, seconds, rate, amp=0.5, phase=0.0):
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def wait_for(pred, timeout: float = 20.0, step: float = 0.01) -> bool:
    """Poll `pred` until it is true (True) or `timeout` seconds pass (False). Timeouts are
    generous: they only end a test whose behaviour is wrong, never measure speed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def stop_process(proc, timeout: float = 5.0, kill: bool = False) -> None:
    """End a child process: SIGTERM (or SIGKILL with kill=True), SIGKILL if it has not gone
    after `timeout` seconds; always reaped."""
    if proc is None or proc.poll() is not None:
        return
    proc.kill() if kill else proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
