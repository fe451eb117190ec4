"""The streaming front end: one stream's consecutive patches share most of their timbral
convolutions, so each new patch computes only the frames it adds.

Live, the engine scores one new 2.976 s patch a hop (1 s). The two timbral convolutions (7
frames x 38 and 67 mel bands, 204 filters each) are 81 % of a patch's work and see only 7
frames around each output frame, so a patch that starts d frames after the previous one (d <=
`NEW`) shares the previous patch's timbral output on all but its newest frames. What is
recomputed each step: the `NEW` newest interior frames and the 4 frames at either edge (those
see the patch's own zero padding and its first and last STFT frame, which are the patch's own
too). So the result is the whole-patch computation's, not an approximation, as long as both
patches sit on one 256-sample frame grid: the engine cuts patches ending on multiples of
`MusicnnModel.patch_grid` in stream samples (a patch's newest sample is then at most 15 ms
older than the hop boundary). The temporal branches (128-, 64- and 32-frame kernels, SAME
padding over the patch), the mid end and the back end run on the whole patch, as before.

Per stream the state is the newest patch's 179 interior timbral frames per network
(`StreamFrames`, ~0.3 MB a network); the engine holds it and drops it on reset. A step costs
about 0.6x the whole patch (bench/README.md "Streaming front end"). Every part runs on the
backend its network's whole-patch kernel runs on, and the parts together are checked at load
against that kernel (`StreamingFront.build`), falling back to whole patches if they differ.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backends import BF16_TOLERANCE, Forward, same_backend
from .floor import StreamFloor
from .frontend import HOP, N_MELS, PATCH_FRAMES, PATCH_SAMPLES

log = logging.getLogger(__name__)

NEW = 66  # interior frames computed per step: patches up to 66 frames (1.056 s) apart share the rest
EDGE = 4  # frames at each edge that see the patch's own padding (3 zero frames + its edge STFT frame)
INTERIOR = PATCH_FRAMES - 2 * EDGE  # 179 frames kept per network and stream
CHANNELS = 408  # 2 timbral branches x 204 filters


class StreamFrames:
    """One stream's newest patch: where it starts (in frames of the stream's 256-sample grid) and
    its interior timbral frames, per network. The engine keeps one per stream (a new one on
    reset); the model reads and replaces it while scoring that stream's patches."""

    __slots__ = ("start", "interior", "floor")

    def __init__(self) -> None:
        self.start: int | None = None
        self.interior: dict[str, np.ndarray] = {}
        self.floor = StreamFloor()  # (used where the model's `floor` option is on)


class _Whole(nn.Module):
    """Raw patch (B, 187, 96) -> timbral features (B, 408, 187), zero-padded at the edges."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.timbral_features(F.pad(self.net.bn_in(x.unsqueeze(1)), (0, 0, 3, 3)))


class _Step(nn.Module):
    """Raw patch (B, 187, 96) -> the timbral features of its 4 first, `NEW` newest interior and
    4 last frames (B, 408, NEW + 8), from one VALID convolution over
    [pad, frames 0-6, frames 114-185, frames 180-186, pad]: the 6 outputs that straddle each
    junction are dropped."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.net.bn_in(x.unsqueeze(1))
        pad = x0.new_zeros(x0.shape[0], 1, 3, x0.shape[3])
        last = PATCH_FRAMES - EDGE  # 183: first frame of the end edge
        seq = torch.cat([pad, x0[:, :, :7], x0[:, :, last - NEW - 3:PATCH_FRAMES - 1], x0[:, :, last - 3:], pad], dim=2)
        y = self.net.timbral_features(seq)  # (B, 408, NEW + 20)
        return torch.cat([y[..., :EDGE], y[..., 10:10 + NEW], y[..., 16 + NEW:20 + NEW]], dim=2)


class _Rest(nn.Module):
    """(B, 187, 96 + 408): a raw patch and its timbral features side by side -> logits (B, tags).
    One packed input, so it runs behind the same one-input kernels as the whole network."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        x, tim = packed[..., :N_MELS], packed[..., N_MELS:].transpose(1, 2)
        return self.net.after_timbral(x, tim)["logits"]


class StreamingFront:
    """Per network: whole-patch timbral, step timbral and the rest, on the whole kernel's backend."""

    def __init__(self, nets: dict[str, nn.Module], kernels: dict[str, Forward], example: torch.Tensor) -> None:
        packed = torch.cat([example, torch.zeros(example.shape[0], PATCH_FRAMES, CHANNELS)], dim=2)
        self.parts = {ck: (same_backend(kernels[ck], _Whole(net), example),
                           same_backend(kernels[ck], _Step(net), example),
                           same_backend(kernels[ck], _Rest(net), packed))
                      for ck, net in nets.items()}
        self.check_diff = float("nan")

    @classmethod
    def build(cls, nets: dict[str, nn.Module], kernels: dict[str, Forward], logmel) -> "StreamingFront | None":
        """The streaming front end, or None (with the reason logged) where a network is not a
        MusiCNN or the parts, on a patch and the next one 62 frames on, differ from the whole
        kernels by more than the backend's tolerance in probability (1e-4, bf16 `BF16_TOLERANCE`)."""
        if not all(hasattr(net, "timbral_features") for net in nets.values()):
            return None
        noise = np.random.default_rng(1).standard_normal(PATCH_SAMPLES + 62 * HOP).astype(np.float32)
        audio = 0.1 * noise * np.linspace(0.2, 1.5, len(noise), dtype=np.float32)  # a level that changes
        ends = [PATCH_SAMPLES, PATCH_SAMPLES + 62 * HOP]
        lm = logmel(np.stack([audio[e - PATCH_SAMPLES:e] for e in ends]))
        try:
            front = cls(nets, kernels, lm[:1])
            frames = StreamFrames()
            got = [front.logits(lm[i:i + 1], [(frames, ends[i])]) for i in range(2)]
        except Exception as exc:
            log.warning("streaming front end off: it could not run (%s: %s)", type(exc).__name__, exc)
            return None
        bf16 = any(k.precision == "bf16" for k in kernels.values())
        tol = BF16_TOLERANCE if bf16 else 1e-4
        diff = 0.0
        for ck, fwd in kernels.items():
            ref = torch.sigmoid(fwd(lm))
            diff = max(diff, float((torch.sigmoid(torch.cat([g[ck] for g in got])) - ref).abs().max()))
        if not diff <= tol:  # NaN fails too
            log.warning("streaming front end off: it differed from whole patches by %.1e in probability "
                        "(tolerance %g)", diff, tol)
            return None
        front.check_diff = diff
        return front

    def logits(self, logmel: torch.Tensor, context: list, fresh=frozenset()) -> dict[str, torch.Tensor]:
        """{network: (B, tags) logits} for raw patches (B, 187, 96) with their (StreamFrames | None,
        end sample | None) each. A stream's rows are taken oldest first (several, when its engine
        fell behind), each in its own pass: a patch on the grid within `NEW` frames after the one
        before it takes the step, any other (and the rows in `fresh`: their input changed otherwise
        than by new frames, e.g. a new floor) computes its timbral frames whole. Either way the
        stream's state then holds its newest patch."""
        streams: dict[int, tuple[StreamFrames, list]] = {}
        alone = []  # rows without a stream state, or off the grid: whole, and nothing kept
        for i, (frames, end) in enumerate(context):
            if frames is None or end is None or end % HOP:
                alone.append(i)
            else:
                streams.setdefault(id(frames), (frames, []))[1].append(((end - PATCH_SAMPLES) // HOP, i))
        passes: list[tuple[list, list]] = [(list(alone), [])]  # per pass: whole rows, step rows (row, from, g)
        last = {}  # row -> (stream state, start)
        for frames, rows in streams.values():
            prev = frames.start
            for p, (g, i) in enumerate(sorted(rows)):
                if p == len(passes):
                    passes.append(([], []))
                if prev is not None and 0 < g - prev <= NEW and i not in fresh:
                    passes[p][1].append((i, g - prev))
                else:
                    passes[p][0].append(i)
                prev = g
            last[id(frames)] = (frames, prev)
        x = logmel.detach().cpu().numpy()
        out = {}
        for ck, (whole, step, rest) in self.parts.items():
            tim = np.empty((len(x), CHANNELS, PATCH_FRAMES), np.float32)
            kept = {id(f): f.interior.get(ck) for f, _ in streams.values()}  # each stream's newest interior so far
            for whole_rows, step_rows in passes:
                if whole_rows:
                    tim[whole_rows] = whole(torch.from_numpy(x[whole_rows])).numpy()
                if step_rows:
                    new = step(torch.from_numpy(x[[i for i, _ in step_rows]])).numpy()
                    for j, (i, d) in enumerate(step_rows):
                        tim[i, :, :EDGE] = new[j, :, :EDGE]
                        tim[i, :, EDGE:PATCH_FRAMES - EDGE - NEW] = kept[id(context[i][0])][:, d:d + INTERIOR - NEW]
                        tim[i, :, PATCH_FRAMES - EDGE - NEW:] = new[j, :, EDGE:]
                for i in whole_rows + [i for i, _ in step_rows]:
                    if i not in alone:
                        kept[id(context[i][0])] = tim[i, :, EDGE:PATCH_FRAMES - EDGE]
            packed = np.concatenate([x, tim.transpose(0, 2, 1)], axis=2)
            out[ck] = rest(torch.from_numpy(packed))
            for frames, _ in streams.values():
                frames.interior[ck] = kept[id(frames)].copy()
        for frames, start in last.values():
            frames.start = start
        return out
