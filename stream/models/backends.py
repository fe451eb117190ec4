"""Faster kernels for the torch networks: ONNX Runtime float32 (the same function, only
faster) and, for models that accept it, OpenVINO bfloat16 where the CPU computes bf16.

    from stream.models.backends import select_backend
    fwd = select_backend(net, example, mode="auto", lower_precision=True)   # fwd(x) -> float32 logits
    fwd.backend, fwd.precision, fwd.reason

Backends
--------
"torch"        the module as loaded (float32).
"onnxruntime"  the module exported to ONNX (float32) and run by ONNX Runtime's CPU provider.
"openvino"     the same ONNX graph run by OpenVINO: bfloat16 where the CPU has AMX or
               AVX512-BF16 and the model accepts lower precision, else float32.
"auto"         lower_precision and a CPU with bf16 (`preferred_backend`): "openvino" bf16;
               otherwise (or when OpenVINO is missing or fails its check) "onnxruntime"; then
               "torch". The environment variable STREAM_BACKEND (auto|torch|onnxruntime|openvino)
               overrides "auto"; STREAM_BACKEND=torch is the off switch.

Why, measured on the 2-core AMD EPYC (Zen 4: AVX512-BF16, no AMX; bench/backends.py):
ONNX Runtime float32 runs a musicnn patch 1.3-3x faster than torch, within 1e-7 in
probability; OpenVINO float32 is no faster than ONNX Runtime; OpenVINO bf16 costs 0.55-0.6x
the CPU time of ONNX Runtime float32 per patch (and 0.27x on an Intel Xeon with AMX), moving
probabilities by ~0.005 (bench/README.md "Lower precision"). ONNX Runtime has no x86 bf16
convolution, and its int8 was no faster and disagreed more. Hugging Face models stay float32
(ONNX Runtime only where bf16 autocast does not run: stream/models/accel.py).

The exported graph is cached on disk (`cache_dir()`), so only the first load pays the
export (seconds). Safety: after the export, `select_backend` compares the kernel with torch on
`example` (plus noise of the same shape) and falls back if the outputs are not finite or differ
by more than `tolerance` in probability (`BF16_TOLERANCE` and the same leading output for bf16);
a failure at run time switches back to torch for good.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

import stream.models.accel as accel  # its cpu_flags through the module: one reader of /proc/cpuinfo, injectable in tests

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
ENV_VAR = "STREAM_BACKEND"
BF16_TOLERANCE = 0.02  # probability; bf16 moves the bundled networks' by ~0.005 on real music


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


def openvino_available() -> tuple[bool, str]:
    try:  # inside: OpenVINO is optional (a default dependency, but float32 runs without it)
        import onnx  # noqa: F401  (the exporter needs it)
        import openvino
    except ImportError as exc:
        return False, f"{exc.name} is not installed (pip install openvino onnx)"
    version = getattr(openvino, "__version__", None) or openvino.get_version()
    return True, "openvino " + str(version).split("-")[0]


def preferred_backend(flags: frozenset | None = None) -> tuple[str, str]:
    """(backend, why): what "auto" tries first for a model that accepts lower precision
    (`select_backend(..., lower_precision=True)`), from the CPU's feature flags (injectable
    for tests). Where the CPU computes bf16 natively, OpenVINO bf16: 3.7x ONNX Runtime float32
    per patch with AMX (Intel Xeon), 1.6-1.7x with AVX512-BF16 alone (AMD Zen 4; bench/README.md
    "Lower precision"). Elsewhere ONNX Runtime float32 (OpenVINO float32 is no faster)."""
    flags = accel.cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "openvino", "the CPU has AMX-bf16"
    if "avx512_bf16" in flags:
        return "openvino", "the CPU has AVX512-BF16"
    return "onnxruntime", "the CPU has no bf16 instructions"


def openvino_precision(flags: frozenset | None = None) -> str:
    """bf16 where the CPU computes it natively (AMX or AVX512-BF16), else f32 (emulated bf16
    would be slower than float32)."""
    flags = accel.cpu_flags() if flags is None else flags
    return "bf16" if any(f in flags for f in accel.BF16_FLAGS) else "f32"


class _OpenVINOSession:
    """An OpenVINO compiled model behind ONNX Runtime's ``run(None, {"x": a}) -> [y]``, so
    `Forward` runs both alike. One infer request, behind a lock: engines fed inline on
    several threads may call at once."""

    def __init__(self, compiled, precision: str):
        self.compiled = compiled
        self.precision = precision
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def run(self, _outputs, feed: dict):
        with self._lock:
            res = self._request.infer({0: feed["x"]})
            return [np.array(res[0], np.float32, copy=True)]  # the request's buffer is reused


def _openvino_session(module, example, threads: int, precision: str, dynamic_len: bool = False):
    import openvino as ov  # inside: optional (only called once openvino_available() said yes)

    core = ov.Core()
    model = core.read_model(io.BytesIO(_export(module, example, dynamic_len)))
    compiled = core.compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False})  # pinning fights a shared machine
    return _OpenVINOSession(compiled, precision)


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
        self.precision = "fp32"  # "bf16": OpenVINO bfloat16 (select_backend sets it)

    def _torch(self, x):
        with torch.inference_mode():
            return self.module(x)

    def _ort(self, x):  # ONNX Runtime, or OpenVINO behind the same run()
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
        if self.backend == "torch":
            return self._torch(x)
        try:
            return self._ort(x)
        except Exception as exc:  # never let a kernel library take the stream down
            lib = "OpenVINO" if self.backend == "openvino" else "ONNX Runtime"
            self.backend, self.reason = "torch", f"torch: {lib} failed ({type(exc).__name__}: {exc})"
            self.session = None
            log.warning("%s inference failed, using torch from now on: %s", lib, exc)
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
                   multi_label: bool = True, dynamic_len: bool = False, lower_precision: bool = False,
                   flags: frozenset | None = None) -> Forward:
    """Pick the backend for `module` (a torch module in eval mode taking one float32 tensor
    whose first axis is the batch). example: an input of the right shape (batch 1 is fine);
    dynamic_len: its second axis may vary (the self-check then also runs a shorter input).
    lower_precision: the model accepts bf16 (OpenVINO) where the CPU computes it natively;
    "auto" then tries `preferred_backend(flags)` first, and a bf16 kernel is checked against
    `BF16_TOLERANCE` (and the same leading output on the check input) instead of `tolerance`.
    Raises ValueError for an unknown mode; a missing package or a failed check falls back
    (OpenVINO -> ONNX Runtime -> torch, with the reason), except for a backend asked for explicitly."""
    backend, source = resolve_backend(mode)
    if backend == "torch":
        return Forward(module, "torch", f"torch ({source})")
    if backend == "auto":
        first, why_first = preferred_backend(flags) if lower_precision else ("onnxruntime", "")
        tries = [(first, why_first)] + ([("onnxruntime", "")] if first != "onnxruntime" else [])
    else:
        tries = [(backend, "")]
    skipped = []
    for name, why_cpu in tries:
        fwd, problem = _try_backend(module, example, name, source, why_cpu, tolerance, multi_label, dynamic_len,
                                    lower_precision, flags)
        if fwd is not None:
            if skipped:
                fwd.reason += f"; {'; '.join(skipped)}"
            log.info("inference: %s", fwd.reason)
            return fwd
        if source != "auto":
            raise ValueError(problem)
        skipped.append(problem)
    return Forward(module, "torch", "torch: " + "; ".join(skipped))


def _try_backend(module, example, name, source, why_cpu, tolerance, multi_label, dynamic_len, lower_precision,
                 flags) -> tuple[Forward | None, str]:
    """(a checked Forward, "") or (None, why not)."""
    lib = "OpenVINO" if name == "openvino" else "ONNX Runtime"
    ok, why = openvino_available() if name == "openvino" else onnxruntime_available()
    if not ok:
        return None, (f"backend {name} asked for ({source}) but {why}" if source != "auto" else why)
    precision = openvino_precision(flags) if name == "openvino" and lower_precision else "f32"
    label = f"{lib} {'bfloat16' if precision == 'bf16' else 'float32'}"
    try:
        threads = torch.get_num_threads()
        if name == "openvino":
            session = _openvino_session(module, example, threads, precision, dynamic_len)
        else:
            session = _ort_session(module, example, threads, dynamic_len)
        fwd = Forward(module, name, f"{label} ({why}, {source}{': ' + why_cpu if why_cpu else ''})", session,
                      chunk=None if dynamic_len else ORT_CHUNK)
        fwd.precision = "bf16" if precision == "bf16" else "fp32"
        g = torch.Generator().manual_seed(0)
        x = torch.cat([example, torch.randn(example.shape, generator=g) * example.std().clamp(min=1.0)])
        checks = [x] + ([x[:, : x.shape[1] * 2 // 3]] if dynamic_len else [])
        with torch.inference_mode():
            ref = torch.cat([module(c) for c in checks])
        got = torch.cat([fwd._ort(c) for c in checks])
    except Exception as exc:
        return None, f"{lib} could not run this model ({type(exc).__name__}: {exc})"
    prob = torch.sigmoid if multi_label else (lambda t: torch.softmax(t, dim=-1))
    tol = BF16_TOLERANCE if precision == "bf16" else tolerance
    if not torch.isfinite(got).all():
        diff = float("inf")
    else:
        diff = float((prob(got) - prob(ref)).abs().max())
    if diff > tol or (precision == "bf16" and not bool((got.argmax(-1) == ref.argmax(-1)).all())):
        problem = f"{label} differed by {diff:.1e} in probability in the self-check (tolerance {tol:g})"
        log.warning(problem)
        return None, problem
    fwd.check_diff = diff
    _warm(fwd, example)
    return fwd, ""


def _warm(fwd: Forward, example) -> None:
    """Run each batch size `fwd` will see (1, 2, 4), once: the arena reaches its working size at
    load, not mid-stream."""
    for i in range((fwd.chunk or 0).bit_length()):
        fwd(example[:1].expand(1 << i, *example.shape[1:]))


def same_backend(fwd: Forward, module, example) -> Forward:
    """`module` on the backend and precision that `fwd` runs (a part of `fwd`'s network, e.g. the
    streaming front end's pieces), without a self-check of its own: the caller checks the parts
    together against `fwd`. Falls back to torch, with the reason, where the library fails."""
    if fwd.backend == "torch":
        return Forward(module, "torch", fwd.reason)
    threads = torch.get_num_threads()
    try:
        if fwd.backend == "openvino":
            session = _openvino_session(module, example, threads, "bf16" if fwd.precision == "bf16" else "f32")
        else:
            session = _ort_session(module, example, threads)
    except Exception as exc:
        return Forward(module, "torch", f"torch: {fwd.backend} could not run this part ({type(exc).__name__}: {exc})")
    part = Forward(module, fwd.backend, fwd.reason, session, chunk=ORT_CHUNK)
    part.precision = fwd.precision
    _warm(part, example)
    return part
