"""Shared helpers of the performance benchmarks (issue 6): models, real music, timing.

Timing on a shared 2-core machine is noisy, so every comparison here is *interleaved*
(candidate A, B, C, A, B, C, ...) within one process and reported as medians and as
ratios to a baseline measured in the same run.
"""
from __future__ import annotations

import glob
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from harness.checkpoint import make_tiny_checkpoint

ROOT = Path(__file__).resolve().parent.parent

GTZAN = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
MUSIC_GLOB = "/usr/share/games/asc/music/*.mp3"  # Debian asc-music: real recordings, offline
RATE = 16000


# ---- models -----------------------------------------------------------------------------

def make_distilhubert_checkpoint(path, seed: int = 0, head_gain: float = 1.0) -> str:
    """Save a DistilHuBERT-shaped classifier (2 layers, hidden 768, the default conv front end,
    GTZAN labels) with random weights + its feature extractor; same compute as the course
    model. head_gain > 1 multiplies the classifier weights so that random-weight outputs are
    peaked (a leading label with a clear margin), which makes probability differences between
    fp32 and an accelerated path visible instead of hiding them in near-uniform softmaxes."""
    import torch
    from transformers import HubertConfig, HubertForSequenceClassification, Wav2Vec2FeatureExtractor

    torch.manual_seed(seed)
    cfg = HubertConfig(num_hidden_layers=2, hidden_size=768, num_attention_heads=12, intermediate_size=3072,
                       num_labels=len(GTZAN), id2label=dict(enumerate(GTZAN)),
                       label2id={l: i for i, l in enumerate(GTZAN)})
    model = HubertForSequenceClassification(cfg).eval()
    if head_gain != 1.0:
        with torch.no_grad():
            model.classifier.weight.mul_(head_gain)
    model.save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(path)
    return str(path)


_tmpdirs: list = []


def temp_checkpoint(kind: str = "distilhubert", **kw) -> str:
    """A checkpoint directory that lives as long as the process."""
    d = tempfile.TemporaryDirectory(prefix=f"bench_{kind}_")
    _tmpdirs.append(d)
    if kind == "distilhubert":
        return make_distilhubert_checkpoint(d.name, **kw)
    if kind == "tiny":  # the tests' tiny HuBERT classifier, for accuracy checks
        return str(make_tiny_checkpoint(d.name))
    raise ValueError(kind)


# ---- audio ------------------------------------------------------------------------------

def music_files() -> list[str]:
    return sorted(glob.glob(MUSIC_GLOB))


def real_music(seconds: float | None = None, rate: int = RATE) -> list[tuple[str, np.ndarray]]:
    """[(name, mono float32 at `rate`)] for each real recording found (may be empty);
    `seconds` keeps only the first that many seconds of each."""
    from stream.files import decode_blocks
    from stream.resample import StreamingResampler

    out = []
    for path in music_files():
        parts, res = [], None
        got = 0.0
        for block, r in decode_blocks(path):
            if res is None:
                res = StreamingResampler(r, rate)
            mono = block.mean(axis=1) if block.ndim == 2 else block
            parts.append(res.process(np.ascontiguousarray(mono, np.float32)))
            got += len(block) / r
            if seconds is not None and got >= seconds + 1:
                break
        if res is not None and seconds is None:
            parts.append(res.flush())
        y = np.concatenate(parts).astype(np.float32)
        if seconds is not None:
            y = y[: int(seconds * rate)]
        out.append((Path(path).stem, y))
    return out


def music_windows(window_s: float = 10.0, per_file: int = 4, rate: int = RATE) -> list[tuple[str, np.ndarray]]:
    """Up to `per_file` evenly spaced windows from each real recording; falls back to a
    synthetic chord+noise signal (clearly named) when no recording is installed."""
    n = int(window_s * rate)
    out = []
    for name, y in real_music(None, rate):
        if len(y) < n:
            continue
        for i, start in enumerate(np.linspace(0, len(y) - n, per_file).astype(int)):
            out.append((f"{name}@{start / rate:.0f}s", y[start:start + n]))
    if not out:
        rng = np.random.default_rng(0)
        t = np.arange(n) / rate
        for i in range(per_file):
            f = 110 * 2 ** (i / 3)
            y = 0.3 * (np.sin(2 * np.pi * f * t) + np.sin(2 * np.pi * 1.5 * f * t)) + 0.05 * rng.standard_normal(n)
            out.append((f"synthetic{i}", y.astype(np.float32)))
    return out


def synthetic_music(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    y = 0.2 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(len(t))
    return y.astype(np.float32)


# ---- timing -----------------------------------------------------------------------------

def interleaved(cands: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                budget_s: float | None = None) -> dict[str, list[float]]:
    """Wall-clock ms of each candidate, run round-robin `repeats` times after `warmup` rounds,
    so background load hits every candidate alike. Stops early (>= 3 rounds) past budget_s."""
    for _ in range(warmup):
        for fn in cands.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in cands}
    t_start = time.perf_counter()
    for r in range(repeats):
        for k, fn in cands.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) * 1000.0)
        if budget_s is not None and r >= 2 and time.perf_counter() - t_start > budget_s:
            break
    return times


def med(xs) -> float:
    return float(statistics.median(xs)) if len(xs) else float("nan")


def load_note() -> str:
    try:
        la = os.getloadavg()
        return f"load average {la[0]:.2f} on {os.cpu_count()} CPUs at start"
    except OSError:
        return f"{os.cpu_count()} CPUs"


def cpu_note() -> str:
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    have = [f for f in ("avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile") if f in flags]
    return f"{name or 'CPU'}; {', '.join(have) or 'no AVX-512/AMX'}"


def table(rows: list[list], header: list[str]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r))
    return "\n".join([line(cells[0]), "  ".join("-" * x for x in w)] + [line(r) for r in cells[1:]])


# ---- engine models ------------------------------------------------------------------------

def load_engine_model(ckpt: str, accel_mode: str = "auto"):
    """`stream.load_model(ckpt)` whose `predict` runs through `accelerate(mode=accel_mode)`,
    whether or not `HFAudioModel` has been wired to `stream.models.accel` yet (the instance's
    predict is replaced by the same fe -> forward -> softmax steps)."""
    import torch

    from stream import load_model
    from stream.models.accel import accelerate

    m = load_model(ckpt)
    fwd = accelerate(m.model, m.fe, mode=accel_mode)

    def predict(windows):
        m.busy += 1
        try:
            w = np.asarray(windows, np.float32)
            inputs = m.fe(list(w), sampling_rate=m.sample_rate, return_tensors="pt")
            logits = fwd(**inputs)
            probs = torch.sigmoid(logits) if m.multi_label else torch.softmax(logits, dim=-1)
            return probs.numpy().astype(np.float32)
        finally:
            m.busy -= 1

    m.busy = 0

    m.predict = predict
    m.accel = fwd
    return m


def paced(seconds: float, chunk_s: float, step: Callable[[int], object]) -> tuple[float, float]:
    """Call `step(tick)` every `chunk_s` of wall clock for `seconds`, as a sound card delivers
    blocks (a late tick runs at once, the schedule does not drift). Returns (start, elapsed)."""
    t0 = time.perf_counter()
    tick = 0
    while True:
        target = t0 + tick * chunk_s
        now = time.perf_counter()
        if target > now:
            time.sleep(target - now)
        if time.perf_counter() - t0 >= seconds:
            break
        step(tick)
        tick += 1
    return t0, time.perf_counter() - t0


def counted(model):
    """`model` with its forwards counted in `model.busy` (for `wait_idle`)."""
    inner = model.predict

    def predict(windows):
        model.busy += 1
        try:
            return inner(windows)
        finally:
            model.busy -= 1

    model.busy = 0
    model.predict = predict
    return model


def wait_idle(model, timeout_s: float = 300.0) -> None:
    """Wait until no forward of `model` (from load_engine_model) is running: a daemon worker
    thread still inside torch when the interpreter exits aborts the process."""
    t0 = time.perf_counter()
    while getattr(model, "busy", 0) and time.perf_counter() - t0 < timeout_s:
        time.sleep(0.05)
