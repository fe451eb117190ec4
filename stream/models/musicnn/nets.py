"""PyTorch ports of the two musicnn 0.1.0 architectures (inference only).

Both take log-mel patches ``(B, 187, 96)`` (time, mel) and return logits ``(B, 50)``.
They are built from the TF tensors exactly as stored in the safetensors files (TF names,
TF layouts) and reproduce TF's NHWC semantics:

- every convolution is followed by ReLU and *then* batch norm (eps 1e-3);
- batch norms are folded into a per-channel scale and shift at load time;
- the musicnn back end interleaves max and mean pooling ([max_0, mean_0, max_1, ...]).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3

# TF tensor names and shapes each architecture needs (the full inference set).
_BN_PARAMS = ("gamma", "beta", "moving_mean", "moving_variance")
FRONT = 2 * 204 + 3 * 51  # musicnn's front-end channels (timbral + temporal), fixed
MAX_WIDTH = {"mid": 256, "dense": 1024}  # the widest student allowed (mid 256: ~1.2x upstream's multiply-adds)


def _bn_shapes(name: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}/{p}": (c,) for p in _BN_PARAMS}


def _musicnn_shapes(mid: int = 64, dense: int = 200) -> dict[str, tuple[int, ...]]:
    """The musicnn tensors with a mid end `mid` channels wide and a dense layer of `dense` units
    (upstream: 64 and 200; a wider student keeps the front end and the 50 tags)."""
    s: dict[str, tuple[int, ...]] = {}
    convs = [("conv2d", (7, 38, 1, 204)), ("conv2d_1", (7, 67, 1, 204)), ("conv2d_2", (128, 1, 1, 51)),
             ("conv2d_3", (64, 1, 1, 51)), ("conv2d_4", (32, 1, 1, 51)), ("conv2d_5", (7, FRONT, 1, mid)),
             ("conv2d_6", (7, mid, 1, mid)), ("conv2d_7", (7, mid, 1, mid))]
    for name, k in convs:
        s[f"{name}/kernel"] = k
        s[f"{name}/bias"] = (k[-1],)
    pooled = 2 * (FRONT + 3 * mid)
    for i, c in enumerate([1, 204, 204, 51, 51, 51, mid, mid, mid, pooled, dense]):
        s.update(_bn_shapes("batch_normalization" + (f"_{i}" if i else ""), c))
    s.update({"dense/kernel": (pooled, dense), "dense/bias": (dense,), "dense_1/kernel": (dense, 50),
              "dense_1/bias": (50,)})
    return s


def _vgg_shapes() -> dict[str, tuple[int, ...]]:
    s: dict[str, tuple[int, ...]] = {}
    for i in range(1, 6):
        s[f"{i}CNN/kernel"] = (3, 3, 1 if i == 1 else 128, 128)
        s[f"{i}CNN/bias"] = (128,)
    for i, c in enumerate([1, 128, 128, 128, 128, 128]):
        s.update(_bn_shapes("batch_normalization" + (f"_{i}" if i else ""), c))
    s.update({"dense/kernel": (256, 50), "dense/bias": (50,)})
    return s


EXPECTED_SHAPES = {"musicnn": _musicnn_shapes(), "vgg": _vgg_shapes()}


def musicnn_widths(tensors: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(mid-end channels, dense units) of musicnn weights, read from the tensors' shapes."""
    try:
        mid, dense = int(tensors["conv2d_5/kernel"].shape[-1]), int(tensors["dense/kernel"].shape[-1])
    except (KeyError, IndexError):
        return 64, 200  # check_tensors names what is missing
    return mid, dense


def expected_shapes(arch: str, tensors: dict[str, torch.Tensor] | None = None) -> dict[str, tuple[int, ...]]:
    """The inference set of `arch`; for musicnn at the widths `tensors` carry (upstream's without)."""
    if arch == "musicnn" and tensors is not None:
        return _musicnn_shapes(*musicnn_widths(tensors))
    return EXPECTED_SHAPES[arch]


def check_tensors(arch: str, tensors: dict[str, torch.Tensor]) -> None:
    """Raise ValueError unless `tensors` is exactly the inference set of `arch` (musicnn: at any
    mid/dense width up to MAX_WIDTH, the rest of the shapes following from those two)."""
    want = expected_shapes(arch, tensors)
    if arch == "musicnn":
        mid, dense = musicnn_widths(tensors)
        if not (1 <= mid <= MAX_WIDTH["mid"] and 1 <= dense <= MAX_WIDTH["dense"]):
            raise ValueError(f"musicnn weights with a mid end of {mid} channels and a dense layer of {dense} "
                             f"units: the engine takes up to {MAX_WIDTH['mid']} and {MAX_WIDTH['dense']}")
    missing = sorted(set(want) - set(tensors))
    extra = sorted(set(tensors) - set(want))
    bad = sorted(k for k in set(want) & set(tensors) if tuple(tensors[k].shape) != want[k])
    if missing or extra or bad:
        raise ValueError(f"{arch} weights do not match the architecture: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}, wrong shape {bad[:5]}")


class _BN(nn.Module):
    """Inference batch norm folded to ``x * scale + shift`` over the last or channel axis."""

    def __init__(self, t: dict[str, torch.Tensor], name: str) -> None:
        super().__init__()
        g, b = t[f"{name}/gamma"], t[f"{name}/beta"]
        m, v = t[f"{name}/moving_mean"], t[f"{name}/moving_variance"]
        # Fold in float64 so the folding itself adds no error beyond one float32 rounding.
        scale = g.double() / torch.sqrt(v.double() + BN_EPS)
        self.register_buffer("scale", scale.float())
        self.register_buffer("shift", (b.double() - m.double() * scale).float())

    def channel_view(self, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """scale, shift shaped to broadcast over dim 1 of an `ndim`-d NC... tensor."""
        shape = (1, -1) + (1,) * (ndim - 2)
        return self.scale.view(shape), self.shift.view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # channel axis = 1
        s, b = self.channel_view(x.dim())
        return torch.addcmul(b, x, s)


def _conv2d_weight(k: torch.Tensor) -> torch.Tensor:
    """TF [kh, kw, in, out] -> torch [out, in, kh, kw]."""
    return k.permute(3, 2, 0, 1).contiguous()


def _flip_negative_channels(conv: nn.Module, bn: _BN) -> None:
    """Negate the conv filters of channels whose folded BN scale is negative (see below)."""
    neg = bn.scale < 0
    conv.weight.data[neg] *= -1
    conv.bias.data[neg] *= -1


def _relu_bn_maxfreq(y: torch.Tensor, bn: _BN) -> torch.Tensor:
    """max over frequency (dim 3) of BN(ReLU(conv)), for y (B, C, T, F) -> (B, C, T).

    BN is a per-channel affine map ``s*x + b``: its max over F is ``s*max(x) + b`` where
    s >= 0 and ``s*min(x) + b`` where s < 0, and ReLU commutes with max and min. So BN and
    ReLU run on the F-times smaller reduced tensor. The channels with s < 0 had their conv
    filters negated at load time (`_flip_negative_channels`, exact in floating point), so
    ``y = -conv`` there and ``min(conv) = -max(y)``: a single max reduction serves both.
    """
    m = y.amax(dim=3)
    s, b = bn.channel_view(3)
    m = F.relu(torch.where(s < 0, -m, m))
    return torch.addcmul(b, m, s)


class MusiCNN(nn.Module):
    """musicnn (Pons & Serra 2019): musically motivated front end + dense mid end + pooling.

    Front end on the input-normalised patch x0 (B, 1, T=187, F=96):
      timbral convs spanning 38 and 67 mel bands (7 frames), temporal convs over 128, 64,
      32 frames (1 band); each ReLU -> BN -> max over frequency; concat -> (B, 561, T).
    Mid end: three 1-D convs (k=7, 64 ch) with residuals; concat -> (B, 753, T).
    Back end: max & mean over time (interleaved) -> BN -> dense 200 + ReLU -> BN -> dense 50.
    A wider student (tools/robust_widen.py) has M mid channels and D dense units instead of 64
    and 200, read from the tensors' shapes.
    """

    arch = "musicnn"

    def __init__(self, t: dict[str, torch.Tensor]) -> None:
        super().__init__()
        check_tensors(self.arch, t)
        self.bn_in = _BN(t, "batch_normalization")
        self.timbral = nn.ModuleList()
        for conv in ("conv2d", "conv2d_1"):
            c = nn.Conv2d(1, 204, tuple(t[f"{conv}/kernel"].shape[:2]))
            c.weight.data = _conv2d_weight(t[f"{conv}/kernel"])
            c.bias.data = t[f"{conv}/bias"].clone()
            self.timbral.append(c)
        # Temporal convs see one mel band at a time: run them as Conv1d over (B*96, 1, T).
        self.temporal = nn.ModuleList()
        self.temporal_pad = []
        for conv in ("conv2d_2", "conv2d_3", "conv2d_4"):
            k = t[f"{conv}/kernel"]  # [kt, 1, 1, 51]
            c = nn.Conv1d(1, 51, k.shape[0])
            c.weight.data = k[:, 0, 0, :].t().unsqueeze(1).contiguous()  # [51, 1, kt]
            c.bias.data = t[f"{conv}/bias"].clone()
            self.temporal.append(c)
            kt = k.shape[0]
            self.temporal_pad.append(((kt - 1) // 2, kt // 2))  # TF SAME: extra pad after
        self.front_bn = nn.ModuleList(_BN(t, f"batch_normalization_{i}") for i in range(1, 6))
        for conv, bn in zip([*self.timbral, *self.temporal], self.front_bn):
            _flip_negative_channels(conv, bn)
        self.mid = nn.ModuleList()
        for conv in ("conv2d_5", "conv2d_6", "conv2d_7"):
            k = t[f"{conv}/kernel"]  # [7, C, 1, 64]
            c = nn.Conv1d(k.shape[1], k.shape[3], 7)
            c.weight.data = k[:, :, 0, :].permute(2, 1, 0).contiguous()  # [64, C, 7]
            c.bias.data = t[f"{conv}/bias"].clone()
            self.mid.append(c)
        self.mid_bn = nn.ModuleList(_BN(t, f"batch_normalization_{i}") for i in range(6, 9))
        self.pool_bn = _BN(t, "batch_normalization_9")
        self.dense = nn.Linear(*t["dense/kernel"].shape)
        self.dense.weight.data = t["dense/kernel"].t().contiguous()
        self.dense.bias.data = t["dense/bias"].clone()
        self.dense_bn = _BN(t, "batch_normalization_10")
        self.out = nn.Linear(*t["dense_1/kernel"].shape)
        self.out.weight.data = t["dense_1/kernel"].t().contiguous()
        self.out.bias.data = t["dense_1/bias"].clone()

    def timbral_features(self, x0: torch.Tensor) -> torch.Tensor:
        """The two timbral branches, VALID in time: normalised (B, 1, T + 6, F) -> (B, 408, T).
        Each output frame sees 7 input frames (3 either side); the caller pads (`features`: zeros
        at the patch edges) or passes real neighbours (`stream.models.musicnn.streaming`)."""
        return torch.cat([_relu_bn_maxfreq(conv(x0), bn) for conv, bn in zip(self.timbral, self.front_bn[:2])],
                         dim=1)

    def after_timbral(self, x: torch.Tensor, timbral: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything but the timbral convolutions, on a raw patch x (B, T, F) and its timbral
        features (B, 408, T): temporal branches, mid end, back end."""
        b, n_t, n_f = x.shape
        x0 = self.bn_in(x.unsqueeze(1))
        front = [timbral]
        # (B, 1, T, F) -> (B*F, 1, T): each band is an independent 1-D signal.
        xt = x0[:, 0].transpose(1, 2).reshape(b * n_f, 1, n_t)
        for conv, pad, bn in zip(self.temporal, self.temporal_pad, self.front_bn[2:]):
            y = conv(F.pad(xt, pad)).view(b, n_f, 51, n_t).permute(0, 2, 1, 3)  # (B, 51, F, T)
            y = _relu_bn_maxfreq(y.transpose(2, 3), bn)  # max over F -> (B, 51, T)
            front.append(y)
        front_t = torch.cat(front, dim=1)  # (B, 561, T)
        m1 = self.mid_bn[0](F.relu(self.mid[0](F.pad(front_t, (3, 3)))))
        r2 = self.mid_bn[1](F.relu(self.mid[1](F.pad(m1, (3, 3))))) + m1
        r3 = self.mid_bn[2](F.relu(self.mid[2](F.pad(r2, (3, 3))))) + r2
        mid = torch.cat([front_t, m1, r2, r3], dim=1)  # (B, 561 + 3M, T)
        max_pool = mid.amax(dim=2)
        mean_pool = mid.mean(dim=2)
        pooled = torch.stack([max_pool, mean_pool], dim=2).reshape(b, -1)  # interleaved
        pen = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return {"max_pool": max_pool, "mean_pool": mean_pool, "penultimate": pen, "logits": self.out(pen)}

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Intermediate tensors named as in the reference vectors (for checking a port)."""
        x0 = self.bn_in(x.unsqueeze(1))  # (B, 1, T, F)
        xp = F.pad(x0, (0, 0, 3, 3))  # time padding 3/3 for the 7-frame timbral kernels
        return self.after_timbral(x, self.timbral_features(xp))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)["logits"]


class VGG(nn.Module):
    """musicnn's VGG-like baseline: 5 x (3x3 conv 128 -> ReLU -> BN -> max-pool) -> dense 50."""

    arch = "vgg"
    # (kernel, stride) of each max-pool, (time, freq), VALID (sizes rounded down).
    POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))

    def __init__(self, t: dict[str, torch.Tensor]) -> None:
        super().__init__()
        check_tensors(self.arch, t)
        self.bn_in = _BN(t, "batch_normalization")
        self.convs = nn.ModuleList()
        for i in range(1, 6):
            k = t[f"{i}CNN/kernel"]
            c = nn.Conv2d(k.shape[2], 128, 3, padding=1)  # TF SAME for odd 3x3 = pad 1
            c.weight.data = _conv2d_weight(k)
            c.bias.data = t[f"{i}CNN/bias"].clone()
            self.convs.append(c)
        self.bns = nn.ModuleList(_BN(t, f"batch_normalization_{i}") for i in range(1, 6))
        self.dense = nn.Linear(256, 50)
        self.dense.weight.data = t["dense/kernel"].t().contiguous()
        self.dense.bias.data = t["dense/bias"].clone()

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.bn_in(x.unsqueeze(1))  # (B, 1, T, F)
        for conv, bn, (k, s) in zip(self.convs, self.bns, self.POOLS):
            y = F.max_pool2d(bn(F.relu(conv(y))), kernel_size=k, stride=s)
        flat = y.permute(0, 2, 3, 1).reshape(y.shape[0], -1)  # NHWC flatten: t*128 + c
        return {"flat_pool5": flat, "logits": self.dense(flat)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)["logits"]


ARCHITECTURES = {"musicnn": MusiCNN, "vgg": VGG}
