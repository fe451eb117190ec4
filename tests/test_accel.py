"""stream.models.accel: the accelerated forward matches float32, can be switched off, and
falls back to float32 where the CPU lacks bf16. No timing here (see bench/forward.py)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from stream.models import accel
from stream.models.accel import accelerate, bf16_support, fold_weight_norm, resolve_mode

from support.models import tone


def _load(ckpt):
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    return (AutoModelForAudioClassification.from_pretrained(ckpt, local_files_only=True).eval(),
            AutoFeatureExtractor.from_pretrained(ckpt, local_files_only=True))


def _music_like(seconds=4.0, rate=16000, seed=0):
    rng = np.random.default_rng(seed)
    y = tone(220, seconds, rate, 0.3) + tone(330, seconds, rate, 0.2) + tone(1760, seconds, rate, 0.05)
    y = y * (1 + 0.5 * np.sin(2 * np.pi * 2 * np.arange(len(y)) / rate)).astype(np.float32)
    return (y + 0.05 * rng.standard_normal(len(y))).astype(np.float32)


def _inputs(fe, waves):
    return dict(fe(list(waves), sampling_rate=fe.sampling_rate, return_tensors="pt"))


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(accel.ENV_VAR, raising=False)


@pytest.fixture
def bf16_ok(monkeypatch, no_env):
    ok, why = bf16_support()
    if not ok:  # "the CPU lacks avx512_bf16/amx_bf16 ...": the one skip CI allows (tests/conftest.py)
        pytest.skip(f"no native bf16: {why} (the fallback tests cover it)")


def _reference(model, inputs):
    with torch.inference_mode():
        return torch.softmax(model(**inputs).logits.float(), -1)


# What each precision may move a probability by (the accelerated path against float32). Labels
# are compared only where the reference's top two are further apart than twice that: closer
# than that, a tie may break either way (bf16 rounds differently on Intel AMX and on AMD Zen 4).
PROB_TOL = {"fp32": 1e-4, "bf16": 0.02}


def _decisive(ref, tol):
    top = ref.topk(2, -1).values
    return (top[:, 0] - top[:, 1]) > 2 * tol


def _peaked(model):
    """The tiny checkpoint's head is flat (its ten probabilities lie within 0.0002 of 0.1: a
    near-tie everywhere). Spread biases give it a clear leader (0.15 ahead on these inputs) while
    the network's bf16 rounding stays what it was (the scores move by about 0.001)."""
    with torch.no_grad():
        model.classifier.bias.add_(0.5 * torch.tensor([3.0, 7, 1, 9, 0, 5, 2, 8, 4, 6]))
    return model


@pytest.mark.parametrize("mode", ["auto", "fp32", "bf16"])
def test_accelerated_path_matches_fp32_on_tiny_checkpoint(tiny_ckpt, no_env, mode):
    model, fe = _load(tiny_ckpt)
    _peaked(model)
    waves = [_music_like(4.0, seed=s) for s in range(6)] + \
        [np.random.default_rng(9 + s).standard_normal(64000).astype(np.float32) * 0.1 for s in range(2)]
    inputs = _inputs(fe, waves)
    ref = _reference(model, inputs)
    fwd = accelerate(model, fe, mode=mode)
    assert fwd.mode in ("fp32", "bf16")
    got = torch.softmax(fwd(**inputs), -1)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    assert torch.isfinite(got).all()
    tol = PROB_TOL[fwd.mode]
    assert float((got - ref).abs().max()) <= tol
    decisive = _decisive(ref, tol)
    assert int(decisive.sum()) >= 3, ref.topk(2, -1).values  # the label check is never vacuous
    assert torch.equal(got.argmax(-1)[decisive], ref.argmax(-1)[decisive])


def test_label_check_skips_only_near_ties():
    ref = torch.tensor([[0.50, 0.30, 0.20], [0.34, 0.33, 0.33]])
    assert _decisive(ref, 0.02).tolist() == [True, False]
    assert _decisive(ref, 1e-4).tolist() == [True, True]


def test_bf16_is_really_used_when_supported(tiny_ckpt, bf16_ok):
    model, fe = _load(tiny_ckpt)
    fwd = accelerate(model, fe, mode="auto")
    assert fwd.mode == "bf16", fwd.reason
    seen = []
    hook = model.classifier.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        fwd(**_inputs(fe, [_music_like(2.0)]))
    finally:
        hook.remove()
    assert seen == [torch.bfloat16]


def test_off_switch_leaves_the_model_untouched(tiny_ckpt, no_env):
    from torch.nn.utils import parametrize

    model, fe = _load(tiny_ckpt)
    conv = model.hubert.encoder.pos_conv_embed.conv
    assert parametrize.is_parametrized(conv, "weight")
    inputs = _inputs(fe, [_music_like(3.0)])
    ref = model(**inputs).logits.detach()
    fwd = accelerate(model, fe, mode="off")
    assert fwd.mode == "off"
    assert parametrize.is_parametrized(conv, "weight")  # no graph change at all
    seen = []
    hook = model.classifier.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        out = fwd(**inputs)
    finally:
        hook.remove()
    assert seen == [torch.float32]
    assert torch.equal(out, ref)


def test_env_var_overrides_auto_only(monkeypatch):
    monkeypatch.setenv(accel.ENV_VAR, "off")
    assert resolve_mode("auto")[0] == "off"
    assert resolve_mode("fp32")[0] == "fp32"  # an explicit mode wins over the environment
    monkeypatch.setenv(accel.ENV_VAR, "fp32")
    assert resolve_mode("auto")[0] == "fp32"
    monkeypatch.setenv(accel.ENV_VAR, "turbo")
    with pytest.raises(ValueError, match="STREAM_ACCEL"):
        resolve_mode("auto")


def test_unknown_mode_is_an_error(no_env):
    with pytest.raises(ValueError, match="unknown acceleration mode"):
        resolve_mode("int4")


def test_weight_norm_folding_is_exact(tiny_ckpt):
    model, fe = _load(tiny_ckpt)
    inputs = _inputs(fe, [_music_like(3.0)])
    with torch.inference_mode():
        ref = model(**inputs).logits
    assert fold_weight_norm(model) == 1
    assert fold_weight_norm(model) == 0  # idempotent
    with torch.inference_mode():
        got = model(**inputs).logits
    assert torch.allclose(got, ref, atol=1e-6, rtol=1e-5)


# ---- fallback where the CPU (or torch) lacks bf16: simulated by hiding the feature ------------

def test_fallback_when_cpu_lacks_bf16(tiny_ckpt, no_env, monkeypatch):
    monkeypatch.setattr(accel, "cpu_flags", lambda: frozenset({"fpu", "sse2", "avx2", "fma"}))
    ok, why = bf16_support()
    # The decision, not one machine's wording: the reason is the CPU's flags or, on a torch
    # build without oneDNN bf16 (or one capped to AVX2), that build.
    assert not ok and why
    model, fe = _load(tiny_ckpt)
    inputs = _inputs(fe, [_music_like(3.0)])
    ref = _reference(model, inputs)
    for mode in ("auto", "bf16"):
        fwd = accelerate(model, fe, mode=mode)
        assert fwd.mode == "fp32" and why in fwd.reason
        assert float((torch.softmax(fwd(**inputs), -1) - ref).abs().max()) < 1e-5


def test_fallback_when_torch_has_no_onednn_bf16(no_env, monkeypatch):
    monkeypatch.setattr(accel, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})  # the CPU has it, the build not
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert resolve_mode("auto") == ("fp32", "float32: bf16 not used but this torch build has no oneDNN bf16 support")


def test_non_cpu_device_never_uses_bf16(no_env):
    assert resolve_mode("bf16", device="cuda:0")[0] == "fp32"


def test_bf16_failure_at_run_time_falls_back_for_good(tiny_ckpt, no_env, monkeypatch, caplog):
    monkeypatch.setattr(accel, "bf16_support", lambda: (True, "simulated"))
    model, fe = _load(tiny_ckpt)
    inputs = _inputs(fe, [_music_like(3.0)])
    ref = _reference(model, inputs)
    fwd = accelerate(model, fe, mode="bf16", check=False)
    assert fwd.mode == "bf16"
    real_run = fwd._run

    def run(mode, args, kwargs):
        if mode == "bf16":
            raise RuntimeError("\"addmm\" not implemented for 'BFloat16'")
        return real_run(mode, args, kwargs)

    monkeypatch.setattr(fwd, "_run", run)
    with caplog.at_level(logging.WARNING):
        out = fwd(**inputs)
    assert fwd.mode == "fp32" and "failed" in fwd.reason
    assert float((torch.softmax(out, -1) - ref).abs().max()) < 1e-5
    assert any("bf16 inference failed" in r.message for r in caplog.records)


def test_self_check_rejects_a_bf16_path_that_disagrees(tiny_ckpt, no_env, monkeypatch):
    monkeypatch.setattr(accel, "bf16_support", lambda: (True, "simulated"))
    model, fe = _load(tiny_ckpt)
    real_run = accel.Accelerated._run

    def skewed(self, mode, args, kwargs):
        out = real_run(self, mode, args, kwargs)
        if mode == "bf16":  # a broken low-precision kernel: logits far off
            out = out + torch.arange(out.shape[-1], dtype=out.dtype) * 3.0
        return out

    monkeypatch.setattr(accel.Accelerated, "_run", skewed)
    fwd = accelerate(model, fe, mode="bf16")
    assert fwd.mode == "fp32" and "self-check" in fwd.reason


def test_accelerated_forward_serves_batches_of_windows(tiny_ckpt, no_env):
    model, fe = _load(tiny_ckpt)
    waves = [_music_like(3.0, seed=s) for s in range(4)]
    inputs = _inputs(fe, waves)
    ref = _reference(model, inputs)
    fwd = accelerate(model, fe, mode="auto")
    got = torch.softmax(fwd(**inputs), -1)
    assert got.shape == (4, 10)
    for i, w in enumerate(waves):  # each row equals that window classified alone
        alone = torch.softmax(fwd(**_inputs(fe, [w])), -1)[0]
        assert float((alone - got[i]).abs().max()) <= 0.02
    assert float((got - ref).abs().max()) <= 0.02
