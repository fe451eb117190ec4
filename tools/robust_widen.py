"""A wider musicnn that computes the same function: more mid-end channels and dense units for a
student to learn into (issue 35, item 4: capacity up to 1.5x the cost per patch).

Each new unit reads the existing ones through small random weights, and everything reading a new
unit starts at zero, so the widened net's output equals the narrow one's until training moves it.
New batch norms are identities (gamma 1, beta 0, mean 0, variance 1 - eps: scale 1, shift 0).
"""
from __future__ import annotations

import torch

from stream.models.musicnn.nets import BN_EPS, FRONT, check_tensors, musicnn_widths


def _identity_bn(t: dict, name: str, old: int, new: int, index: torch.Tensor | None = None) -> None:
    """Widen batch norm `name` from `old` to `new` channels; `index` places the old ones (default: first)."""
    fill = {"gamma": 1.0, "beta": 0.0, "moving_mean": 0.0, "moving_variance": 1.0 - BN_EPS}
    for p, v in fill.items():
        key = f"{name}/{p}"
        out = torch.full((new,), v, dtype=t[key].dtype)
        out[index if index is not None else slice(0, old)] = t[key]
        t[key] = out


def _pooled_index(mid: int, new_mid: int) -> torch.Tensor:
    """Where each pooled feature of the narrow net sits in the wide one. Pooled features interleave
    max and mean per channel of [front, m1, r2, r3]; widening each of m1, r2, r3 shifts the later blocks."""
    chans = list(range(FRONT)) + [FRONT + b * new_mid + j for b in range(3) for j in range(mid)]
    return torch.tensor([2 * c + k for c in chans for k in (0, 1)])


def widen(t: dict[str, torch.Tensor], mid: int, dense: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """musicnn tensors (TF layout) widened to `mid` channels and `dense` units, same function."""
    check_tensors("musicnn", t)
    m0, d0 = musicnn_widths(t)
    if mid < m0 or dense < d0:
        raise ValueError(f"widen: {m0}x{d0} cannot narrow to {mid}x{dense}")
    gen = torch.Generator().manual_seed(seed)
    t = {k: v.clone() for k, v in t.items()}

    def rand(shape, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(shape, generator=gen) * float(like.std()) * 0.5

    # Mid end: conv2d_5 reads the front end; conv2d_6/7 read the previous mid layer.
    for name, n_in_old, n_in_new in (("conv2d_5", FRONT, FRONT), ("conv2d_6", m0, mid), ("conv2d_7", m0, mid)):
        k = t[f"{name}/kernel"]  # [7, in, 1, out]
        out = rand((7, n_in_new, 1, mid), k)
        out[:, n_in_old:, :, :m0] = 0  # old units ignore new ones
        out[:, :n_in_old, :, :m0] = k
        t[f"{name}/kernel"] = out
        b = torch.zeros(mid)
        b[:m0] = t[f"{name}/bias"]
        t[f"{name}/bias"] = b
    for i in (6, 7, 8):
        _identity_bn(t, f"batch_normalization_{i}", m0, mid)
    # Back end: pooled features are re-placed; the dense layer reads new features through zeros.
    index = _pooled_index(m0, mid)
    pooled = 2 * (FRONT + 3 * mid)
    _identity_bn(t, "batch_normalization_9", len(index), pooled, index)
    k = t["dense/kernel"]  # [pooled, dense]
    out = rand((pooled, dense), k)
    out[:, :d0] = 0
    out[index, :d0] = k
    t["dense/kernel"] = out
    b = torch.zeros(dense)
    b[:d0] = t["dense/bias"]
    t["dense/bias"] = b
    _identity_bn(t, "batch_normalization_10", d0, dense)
    k = t["dense_1/kernel"]  # [dense, 50]
    out = torch.zeros(dense, k.shape[1])
    out[:d0] = k
    t["dense_1/kernel"] = out
    check_tensors("musicnn", t)
    return {k: v.float().contiguous() for k, v in t.items()}


def parse_width(text: str) -> tuple[int, int]:
    """"MIDxDENSE" (e.g. 128x400) -> (128, 400); ValueError naming the form otherwise."""
    try:
        mid, dense = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"width {text!r}: give MIDxDENSE, e.g. 128x400 (upstream is 64x200)") from None
    if mid < 1 or dense < 1:
        raise ValueError(f"width {text!r}: both numbers must be positive")
    return mid, dense
