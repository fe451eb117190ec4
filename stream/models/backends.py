"""Exact faster kernels: run a torch network under ONNX Runtime where that is the same
function, only faster (issue 10).

    from stream.models.backends import select_backend
    fwd = select_backend(net, example, mode="auto")   # fwd(x) -> float32 logits tensor
    fwd.backend, fwd.reason

Backends
--------
"torch"        the module as loaded (float32).
"onnxruntime"  the module exported to ONNX (float32) and run by ONNX Runtime's CPU provider.
"auto"         "onnxruntime" when `onnxruntime` and `onnx` are installed and a self-check
               passes, else "torch". The environment variable STREAM_BACKEND
               (auto|torch|onnxruntime) overrides "auto"; STREAM_BACKEND=torch is the off switch.

Why only these: measured on the 2-core AMD EPYC (Zen 4) in bench/backends.py, float32 both:
ONNX Runtime runs a musicnn patch 1.3-1.4x faster than torch at 1 patch per call and
1.7-3x at 4-16 (torch's per-patch cost grows with the batch, ORT's does not), with
probabilities within 1e-7; a DistilHuBERT-shaped 10 s window 1.8x faster (within 2e-7).
Hugging Face models use it only where bf16 autocast does not run (CPUs without bf16, or
accel="fp32"): bf16 autocast is faster still where the CPU has it (stream/models/accel.py). OpenVINO is as fast as ORT on musicnn, but a ~100 MB wheel more for
no gain. Float32 throughout: int8 or bf16 would move probabilities by 1e-3..0.2 (issue 6).

The exported graph is cached on disk (`cache_dir()`), so only the first load pays the
export (seconds). Safety: after the export, `select_backend` compares ORT with torch on `example` (plus noise
of the same shape) and keeps torch if the outputs are not finite or differ by more than
`tolerance` in probability; an ORT failure at run time switches back to torch for good.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime")
ENV_VAR = "STREAM_BACKEND"


def resolve_backend(mode: str | None = "auto") -> tuple[str, str]:
    """(requested backend after the environment override, where it came from)."""
    requested = (mode or "auto").strip().lower()
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {mode!r}; use one of {', '.join(BACKENDS)}")
    if requested == "auto":
        env = os.environ.get(ENV_VAR, "").strip().lower()
        if env:
            if env not in BACKENDS:
                raise ValueError(f"{ENV_VAR}={env!r} is not one of {', '.join(BACKENDS)}")
            return env, f"{ENV_VAR}={env}"
    return requested, "requested" if requested != "auto" else "auto"


def onnxruntime_available() -> tuple[bool, str]:
    try:  # inside: ONNX Runtime is optional (torch is the fallback), so its absence is an answer, not an error
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime
    except ImportError as exc:
        return False, f"{exc.name} is not installed (pip install onnxruntime onnx)"
    return True, "onnxruntime " + onnxruntime.__version__


ORT_CHUNK = 4  # rows per ONNX Runtime call for fixed-shape graphs (see Forward)


class Forward:
    """``fwd(x: tensor) -> float32 logits tensor``; `backend` and `reason` say what runs.

    chunk (ONNX Runtime, fixed-shape graphs): the batch is run `chunk` rows at a time, the
    last piece zero-padded up to a power of two, so the session only ever sees batch sizes
    1, 2, 4, ... chunk. With so few shapes ONNX Runtime's memory arena can stay on: it reaches
    its working size in the first calls (select_backend runs each size once) and then stays
    there (a mix of any batch size kept growing it), and each patch costs 10-30 % less than
    with buffers allocated afresh (bench/README.md "Soak"). Padding costs at most one call of
    zeros per batch; the rows do not interact (a network in eval mode), so each row's result
    is the one it gets alone."""

    def __init__(self, module, backend: str, reason: str, session=None, chunk: int | None = None):
        self.module = module
        self.backend = backend
        self.reason = reason
        self.session = session
        self.chunk = chunk

    def _torch(self, x):
        with torch.inference_mode():
            return self.module(x)

    def _ort(self, x):
        a = np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)
        if self.chunk is None or len(a) == 0:
            return torch.from_numpy(self.session.run(None, {"x": a})[0])
        outs = []
        for i in range(0, len(a), self.chunk):
            piece = a[i:i + self.chunk]
            n = len(piece)
            size = 1 << (n - 1).bit_length()  # the next power of two: one of few shapes
            if size > n:
                piece = np.concatenate([piece, np.zeros((size - n, *piece.shape[1:]), np.float32)])
            outs.append(self.session.run(None, {"x": piece})[0][:n])
        return torch.from_numpy(np.concatenate(outs))

    def __call__(self, x):
        if self.backend != "onnxruntime":
            return self._torch(x)
        try:
            return self._ort(x)
        except Exception as exc:  # never let a kernel library take the stream down
            self.backend, self.reason = "torch", f"torch: ONNX Runtime failed ({type(exc).__name__}: {exc})"
            self.session = None
            log.warning("ONNX Runtime inference failed, using torch from now on: %s", exc)
            return self._torch(x)

    def __repr__(self) -> str:
        return f"<Forward {self.backend}: {self.reason}>"


def cache_dir() -> Path:
    """Where exported ONNX graphs are kept (STREAM_CACHE, else ~/.cache/live-genre-stream)."""
    root = os.environ.get("STREAM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "live-genre-stream")
    return Path(root) / "onnx"


def _export(module, example, dynamic_len: bool = False) -> bytes:
    """The module as an ONNX graph. Exporting takes seconds, so the graph is cached on disk
    under a hash of the weights, the input shape and the torch version. dynamic_len: the
    second axis (samples) may vary too (a Hugging Face model's growing first windows)."""
    shape = ("n",) if dynamic_len else tuple(example.shape[1:])
    h = hashlib.sha256(f"{type(module).__qualname__} {shape} {torch.__version__}".encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    path = cache_dir() / f"{type(module).__name__}-{h.hexdigest()[:24]}.onnx"
    try:
        return path.read_bytes()
    except OSError:
        pass
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buf, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch", 1: "n"} if dynamic_len else {0: "batch"}, "y": {0: "batch"}},
                          dynamo=False, opset_version=17)
    data = buf.getvalue()
    try:  # best effort: a read-only home only costs the export next time
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        log.info("could not cache the ONNX graph in %s: %s", path.parent, exc)
    return data


def _ort_session(module, example, threads: int, dynamic_len: bool = False):
    import onnxruntime as ort  # inside: optional (only called once onnxruntime_available() said yes)

    data = _export(module, example, dynamic_len)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # no busy-waiting between calls: on a small shared machine it steals the feeding threads' CPU
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The memory arena keeps the largest buffers each input shape needed: with any batch size
    # (and, dynamic_len, any length) it grew with the mix (300 forwards of 1-16 patches: RSS
    # +860 MB with it, +90 MB without). Fixed-shape graphs are run in a few batch sizes
    # (Forward.chunk), where it settles (+330 MB for both bundled networks, flat over 300
    # forwards of 1-16 patches) and costs 10-30 % less time per patch (bench/README.md "Soak").
    so.enable_cpu_mem_arena = not dynamic_len
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def select_backend(module, example, mode: str | None = "auto", *, tolerance: float = 1e-4,
                   multi_label: bool = True, dynamic_len: bool = False) -> Forward:
    """Pick the backend for `module` (a torch module in eval mode taking one float32 tensor
    whose first axis is the batch). example: an input of the right shape (batch 1 is fine);
    dynamic_len: its second axis may vary (the self-check then also runs a shorter input).
    Raises ValueError for an unknown mode; a missing package or a failed check falls back
    to torch (with the reason), except when "onnxruntime" was asked for explicitly."""
    backend, source = resolve_backend(mode)
    if backend == "torch":
        return Forward(module, "torch", f"torch ({source})")
    ok, why = onnxruntime_available()
    if not ok:
        if source != "auto":
            raise ValueError(f"backend onnxruntime asked for ({source}) but {why}")
        return Forward(module, "torch", f"torch: {why}")
    try:
        session = _ort_session(module, example, torch.get_num_threads(), dynamic_len)
        fwd = Forward(module, "onnxruntime", f"ONNX Runtime float32 ({why}, {source})", session,
                      chunk=None if dynamic_len else ORT_CHUNK)
        g = torch.Generator().manual_seed(0)
        x = torch.cat([example, torch.randn(example.shape, generator=g) * example.std().clamp(min=1.0)])
        checks = [x] + ([x[:, : x.shape[1] * 2 // 3]] if dynamic_len else [])
        with torch.inference_mode():
            ref = torch.cat([module(c) for c in checks])
        got = torch.cat([fwd._ort(c) for c in checks])
    except Exception as exc:
        if source != "auto":
            raise ValueError(f"ONNX Runtime could not run this model ({type(exc).__name__}: {exc})") from exc
        return Forward(module, "torch", f"torch: ONNX Runtime could not run the model ({type(exc).__name__}: {exc})")
    prob = torch.sigmoid if multi_label else (lambda t: torch.softmax(t, dim=-1))
    if not torch.isfinite(got).all():
        diff = float("inf")
    else:
        diff = float((prob(got) - prob(ref)).abs().max())
    if diff > tolerance:
        reason = f"torch: ONNX Runtime differed by {diff:.1e} in probability in the self-check (tolerance {tolerance:g})"
        if source != "auto":
            raise ValueError(reason)
        log.warning(reason)
        return Forward(module, "torch", reason)
    fwd.check_diff = diff
    for i in range((fwd.chunk or 0).bit_length()):  # each batch size it will see (1, 2, 4), once: the arena
        fwd(example[:1].expand(1 << i, *example.shape[1:]))  # reaches its working size at load, not mid-stream
    log.info("inference: %s", fwd.reason)
    return fwd
