"""Faster CPU inference for the torch audio classifiers (issue 6).

    from stream.models.accel import accelerate
    fwd = accelerate(torch_model, feature_extractor, mode="auto")
    logits = fwd(**inputs)            # float32 logits, inference mode inside
    fwd.mode, fwd.reason              # what runs, and why

Modes
-----
"off"   the model exactly as loaded, float32 (the previous behaviour, bit for bit).
"fp32"  float32 with exact graph clean-ups only: weight-norm parametrizations (the
        positional conv of wav2vec2/HuBERT recomputes its weight from `g` and `v` on every
        forward) are folded into plain weights once. Same numbers up to float rounding.
"bf16"  "fp32" plus bfloat16 autocast: convolutions and matmuls run in bf16 with float32
        accumulation, norms/softmax stay float32 where torch's autocast policy says so.
        Only used when the CPU has native bf16 dot products (avx512_bf16 or AMX-bf16);
        elsewhere oneDNN would emulate bf16 and be *slower* than float32.
"auto"  "bf16" where supported, else "fp32". The environment variable STREAM_ACCEL
        (off|fp32|bf16|auto) overrides "auto" without touching code.

Measured on the 2-core AMD EPYC (Zen 4: avx512_bf16 + avx512_vnni, no AMX) with the
DistilHuBERT-shaped model on a 10 s window: bf16 is about 2x faster than float32, with a
max abs probability difference of a few 1e-3 (see bench/forward.py, bench/README.md).

Safety: after choosing bf16, `accelerate` (check=True) runs one short forward both ways
and falls back to "fp32" if the outputs are not finite or differ by more than
`tolerance` in probability, or if the bf16 forward raises. A bf16 failure at run time
also falls back to fp32 for good (logged once), so a worker never dies of it.
"""
from __future__ import annotations

import contextlib
import logging
import os
from functools import lru_cache

import torch
from torch.nn.utils import parametrize

log = logging.getLogger(__name__)

MODES = ("auto", "off", "fp32", "bf16")
ENV_VAR = "STREAM_ACCEL"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) that leave out AVX-512, bf16 compute, AMX
_NO_AVX512 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2"})
_NO_BF16 = _NO_AVX512 | {"AVX512_CORE", "AVX512_CORE_VNNI"}
_NO_AMX = _NO_BF16 | {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512"}


def capped(flags: frozenset, isa: str | None) -> frozenset:
    """The flags a oneDNN capped at `isa` can use. torch and OpenVINO both honour the cap, and
    OpenVINO asked for bf16 past it crashes the process (seen with AVX2 on Zen 4), so a capped
    process must not be told it has bf16."""
    isa = (isa or "").strip().upper()
    drop = set()
    if isa in _NO_AVX512:
        drop |= {f for f in flags if f.startswith("avx512")}
    if isa in _NO_BF16:
        drop.add("avx512_bf16")
    if isa in _NO_AMX:
        drop |= {f for f in flags if f.startswith("amx")}
    return frozenset(flags - drop)


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none, e.g. macOS), less
    those an ONEDNN_MAX_CPU_ISA cap takes away."""
    flags = frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = frozenset(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return capped(flags, os.environ.get("ONEDNN_MAX_CPU_ISA"))


def bf16_support() -> tuple[bool, str]:
    """(supported, why): native bf16 compute on this CPU *and* in this torch build."""
    # the CPU first: oneDNN's own query also answers no on a CPU without AVX-512, which would
    # blame the build for what the machine lacks
    flags = cpu_flags()
    have = [f for f in BF16_FLAGS if f in flags]
    if flags and not have:
        return False, "the CPU lacks avx512_bf16/amx_bf16 (bf16 would be emulated, slower than float32)"
    try:
        onednn_ok = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # older/odd builds: no oneDNN bf16 query
        onednn_ok = False
    if not onednn_ok:
        return False, "this torch build has no oneDNN bf16 support"
    if not have:
        return False, "CPU features unknown (no /proc/cpuinfo); not risking emulated bf16"
    return True, f"the CPU has {'+'.join(have)}"


def resolve_mode(mode: str | None = "auto", device: str = "cpu") -> tuple[str, str]:
    """Turn a requested mode into the one that will run ("off", "fp32" or "bf16") + why."""
    requested = (mode or "auto").strip().lower()
    if requested not in MODES:
        raise ValueError(f"unknown acceleration mode {mode!r}; use one of {', '.join(MODES)}")
    source = "requested"
    if requested == "auto":
        env = os.environ.get(ENV_VAR, "").strip().lower()
        if env:
            if env not in MODES:
                raise ValueError(f"{ENV_VAR}={env!r} is not one of {', '.join(MODES)}")
            requested, source = env, f"{ENV_VAR}={env}"
    if requested == "off":
        return "off", f"acceleration off ({source})"
    if str(device).split(":")[0] != "cpu":
        return "fp32", f"bf16 autocast is only used on CPU (device {device})"
    if requested == "fp32":
        return "fp32", f"float32 ({source})"
    ok, why = bf16_support()
    if ok:
        return "bf16", f"bf16 autocast: {why}"
    return "fp32", f"float32: bf16 {'requested' if requested == 'bf16' else 'not used'} but {why}"


def fold_weight_norm(model) -> int:
    """Replace weight-norm parametrizations (and legacy weight_norm hooks) by the plain
    weight they compute. Exact; returns how many were folded. Inference only: training
    would no longer see `g`/`v`."""
    n = 0
    for module in list(model.modules()):
        if parametrize.is_parametrized(module, "weight"):
            plist = module.parametrizations["weight"]
            if all(type(p).__name__ == "_WeightNorm" for p in plist):
                with torch.no_grad():
                    parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
                n += 1
        for hook in list(getattr(module, "_forward_pre_hooks", {}).values()):
            if type(hook).__name__ == "WeightNorm":
                torch.nn.utils.remove_weight_norm(module, hook.name)
                n += 1
    return n


class Accelerated:
    """Callable forward: ``fwd(**inputs) -> float32 logits`` under `torch.inference_mode`.

    model: a `transformers` classification model (called as ``model(**inputs).logits``) or
    any module whose output is a tensor of logits.
    """

    def __init__(self, model, mode: str, reason: str, requested: str = "auto"):
        self.model = model
        self.mode = mode
        self.reason = reason
        self.requested = requested
        self.folded = 0

    def _context(self, mode: str):
        if mode == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _run(self, mode: str, args, kwargs):
        with torch.inference_mode(), self._context(mode):
            out = self.model(*args, **kwargs)
        logits = getattr(out, "logits", out)
        return logits.float()

    def __call__(self, *args, **kwargs):
        if self.mode != "bf16":
            return self._run(self.mode, args, kwargs)
        try:
            return self._run("bf16", args, kwargs)
        except RuntimeError as exc:  # e.g. an op without a bf16 kernel in this torch build
            self.mode = "fp32"
            self.reason = f"float32: the bf16 forward failed ({type(exc).__name__}: {exc})"
            log.warning("bf16 inference failed, using float32 from now on: %s", exc)
            return self._run("fp32", args, kwargs)

    def __repr__(self) -> str:
        return f"<Accelerated {self.mode}: {self.reason}>"


def _probs(logits, multi_label: bool):
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)


def accelerate(model, feature_extractor=None, mode: str | None = "auto", *, device: str = "cpu",
               check: bool = True, check_inputs: dict | None = None, tolerance: float = 0.02) -> Accelerated:
    """Prepare `model` (a torch module, in eval mode; changed in place except for mode "off")
    for fast inference and return the forward to call instead of ``model(**inputs)``.

    feature_extractor: its `sampling_rate` sizes the self-check input (2 s of noise); if
        None, 32000 samples are used. check_inputs replaces that input (kwargs of the model).
    check: compare one bf16 forward with float32 and fall back to "fp32" when the largest
        probability difference exceeds `tolerance`, the leading label differs, or the bf16
        output is not finite.
    Raises ValueError for an unknown mode (never for a missing CPU feature: that falls back).
    """
    requested = (mode or "auto").strip().lower()
    resolved, reason = resolve_mode(requested, device)
    acc = Accelerated(model, resolved, reason, requested)
    if resolved == "off":
        return acc
    acc.folded = fold_weight_norm(model)
    if resolved == "bf16" and check:
        _self_check(acc, model, feature_extractor, check_inputs, tolerance)
    log.info("inference: %s", acc.reason)
    return acc


def _self_check(acc: Accelerated, model, feature_extractor, check_inputs, tolerance) -> None:
    if check_inputs is None:
        rate = int(getattr(feature_extractor, "sampling_rate", 16000) or 16000)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 2 * rate, generator=g)
        check_inputs = {"input_values": (x - x.mean()) / x.std()}
    multi = getattr(getattr(model, "config", None), "problem_type", None) == "multi_label_classification"
    try:
        ref = _probs(acc._run("fp32", (), check_inputs), multi)
        got = _probs(acc._run("bf16", (), check_inputs), multi)
    except Exception as exc:
        acc.mode, acc.reason = "fp32", f"float32: the bf16 self-check failed ({type(exc).__name__}: {exc})"
        log.warning(acc.reason)
        return
    if not torch.isfinite(got).all():
        acc.mode, acc.reason = "fp32", "float32: bf16 gave non-finite outputs in the self-check"
    else:
        diff = float((got - ref).abs().max())
        same = bool((got.argmax(-1) == ref.argmax(-1)).all()) or multi
        if diff > tolerance or not same:
            acc.mode, acc.reason = "fp32", (f"float32: bf16 differed from float32 by {diff:.3f} "
                                            f"in probability in the self-check (tolerance {tolerance})")
        else:
            acc.check_diff = diff
            return
    log.warning(acc.reason)
