"""A student's weights back in the checkpoint's layout, so `stream` loads them as it loads the original."""
from __future__ import annotations

from pathlib import Path

import torch

from stream.models.musicnn.model import WEIGHTS_DIR
from stream.models.musicnn.nets import ARCHITECTURES, BN_EPS

from .robust_data import log


def _unflip(w: torch.Tensor, bn) -> torch.Tensor:
    w = w.detach().clone()
    w[bn.scale < 0] *= -1
    return w


def _folded_bn(name: str, bn) -> dict[str, torch.Tensor]:
    """TF batch-norm tensors that fold back to `bn`'s scale and shift (mean 0, variance 1 - eps)."""
    n = bn.scale.shape[0]
    return {f"{name}/gamma": bn.scale.detach().clone(), f"{name}/beta": bn.shift.detach().clone(),
            f"{name}/moving_mean": torch.zeros(n), f"{name}/moving_variance": torch.full((n,), 1.0 - BN_EPS)}


def to_tf(net: torch.nn.Module, original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The student's weights in the checkpoint's TF names and layouts (the inverse of nets.py's
    MusiCNN loading: un-flip the channels flipped for negative BN scales, transpose back).
    Batch norms did not train, so their tensors are the original's; a widened net's
    (tools/robust_widen.py) are written from its folded scale and shift."""
    t = {k: v.clone() for k, v in original.items()}
    bns = [("batch_normalization", net.bn_in)] + [(f"batch_normalization_{i}", bn) for i, bn in enumerate(
        [*net.front_bn, *net.mid_bn, net.pool_bn, net.dense_bn], start=1)]
    for name, bn in bns:
        if t[f"{name}/gamma"].shape != bn.scale.shape:
            t.update(_folded_bn(name, bn))
    for conv, name, bn in zip(net.timbral, ("conv2d", "conv2d_1"), net.front_bn[:2]):
        t[f"{name}/kernel"] = _unflip(conv.weight, bn).permute(2, 3, 1, 0).contiguous()
        t[f"{name}/bias"] = _unflip(conv.bias, bn)
    for conv, name, bn in zip(net.temporal, ("conv2d_2", "conv2d_3", "conv2d_4"), net.front_bn[2:]):
        w = _unflip(conv.weight, bn)  # [51, 1, kt]
        t[f"{name}/kernel"] = w[:, 0, :].t().reshape(-1, 1, 1, w.shape[0]).contiguous()
        t[f"{name}/bias"] = _unflip(conv.bias, bn)
    for conv, name in zip(net.mid, ("conv2d_5", "conv2d_6", "conv2d_7")):
        t[f"{name}/kernel"] = conv.weight.detach().permute(2, 1, 0).unsqueeze(2).contiguous()
        t[f"{name}/bias"] = conv.bias.detach().clone()
    t["dense/kernel"] = net.dense.weight.detach().t().contiguous()
    t["dense/bias"] = net.dense.bias.detach().clone()
    t["dense_1/kernel"] = net.out.weight.detach().t().contiguous()
    t["dense_1/bias"] = net.out.bias.detach().clone()
    return {k: v.float().contiguous() for k, v in t.items()}


def blend(teacher: dict, student: dict, alpha: float) -> dict:
    """teacher + alpha x (student - teacher), tensor by tensor (fixed tensors are equal in both).
    alpha 1 is the student exactly (t + (s - t) rounds), so a re-export gives the shipped bytes."""
    if alpha == 1.0:
        return dict(student)
    return {k: t + alpha * (student[k] - t) if t.is_floating_point() else student[k] for k, t in teacher.items()}


def same_function(a: torch.nn.Module, b: torch.nn.Module, seed: int = 0) -> float:
    """Largest difference of the two nets' sigmoid outputs on random patches."""
    x = torch.randn(2, 187, 96, generator=torch.Generator().manual_seed(seed)) + 2
    with torch.inference_mode():
        return float((torch.sigmoid(a(x)) - torch.sigmoid(b(x))).abs().max())


def export(students: dict, out: Path, metadata: dict) -> None:
    """Write each student as <out>/<net>.safetensors, after checking that the written tensors
    load back as the same function."""
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    for ck, net in students.items():
        tensors = to_tf(net, load_file(str(WEIGHTS_DIR / f"{ck}.safetensors")))
        diff = same_function(ARCHITECTURES["musicnn"](tensors), net)  # reload: the same function as the student
        if diff > 1e-5:
            raise RuntimeError(f"{ck}: exported weights differ from the student by {diff:.1e}")
        save_file(tensors, str(out / f"{ck}.safetensors"), metadata={k: str(v) for k, v in metadata.items()})
    log(f"exported to {out}")
