"""The training loop of the room-robust recipe: losses, the student's own noise (SpecAugment
masks, mixup within a family, dropout), batches, an exponential moving average of the weights,
validation and resumable checkpoints."""
from __future__ import annotations

import copy
import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import robust_chain as RC
from . import robust_targets as RT
from .robust_data import PRE_ROLL, log

LAYER_SETS = {
    # which parameters learn; batch norms are folded and stay fixed (they are affine maps here)
    "all": lambda n: True,
    "front": lambda n: n.startswith(("timbral", "temporal")),
    "front+mid": lambda n: n.startswith(("timbral", "temporal", "mid")),
    # the front stays the teacher's: 2.5x cheaper a step (no backward through the timbral convs)
    "mid+back": lambda n: n.startswith(("mid", "dense", "out")),
    "back": lambda n: n.startswith(("dense", "out")),
}


@dataclass
class LoopConfig:
    steps: int = 20000
    batch: int = 12
    clean_items: int = 6  # the first items also heard clean, holding the clean behaviour every step
    clean_weight: float = 1.0
    family_weight: float = 20.0
    lr: float = 1e-4
    front_lr: float = 0.1
    warmup: int = 100
    schedule: str = "const"  # const (+ EMA) keeps every checkpoint usable; cosine over `steps`
    ema: float = 0.998
    layers: str = "all"
    p_mix: float = 0.25  # mixup with a patch of the same family (the targets mix alike)
    p_mask: float = 0.5  # SpecAugment: one time and one frequency mask on the student's input
    dropout: float = 0.2  # on the dense layer's input, training only
    eval_every: int = 250
    seed: int = 0


def param_groups(nets, layers: str, lr: float, front_lr: float = 1.0) -> list[dict]:
    """The optimiser's groups: the trained parameters of `layers`, the front end's (timbral and
    temporal convolutions) at `front_lr` x `lr`. A smaller front rate keeps the features every
    tag reads closer to the teacher's while the later layers learn the room."""
    groups = {"front": [], "rest": []}
    for net in nets:
        for name, p in net.named_parameters():
            p.requires_grad_(LAYER_SETS[layers](name))
            if p.requires_grad:
                groups["front" if LAYER_SETS["front"](name) else "rest"].append(p)
    return [{"params": ps, "lr": lr * (front_lr if key == "front" else 1.0)} for key, ps in groups.items() if ps]


# ---- losses ----------------------------------------------------------------------------------

def bce_excess(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(BCE against soft targets, the same minus the targets' entropy: 0 = matched)."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    t = target.clamp(1e-7, 1 - 1e-7)
    entropy = -(t * t.log() + (1 - t) * (1 - t).log()).mean()
    return bce, bce - entropy


def logit_mse(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the student's logits and the target's. BCE on probabilities
    barely pulls on tags at 0.01-0.1, yet the top genre is often decided among exactly those;
    in logit space every tag's place in the order weighs the same."""
    t = target.clamp(1e-6, 1 - 1e-6)
    return F.mse_loss(logits, t.log() - (-t).log1p())


def distill_loss(students, mel, targets: dict, margin: torch.Tensor, cols, family_weight: float) -> torch.Tensor:
    """Logit MSE on every tag of both nets + family_weight x the squared error of the family margin."""
    logits = {ck: net(mel) for ck, net in students.items()}
    loss = sum(logit_mse(lg, targets[ck]) for ck, lg in logits.items())
    if family_weight:
        m = RT.family_margin({ck: torch.sigmoid(lg) for ck, lg in logits.items()}, cols)
        loss = loss + family_weight * F.mse_loss(m, margin)
    return loss


# ---- the student's own noise -----------------------------------------------------------------

def spec_mask(mel: torch.Tensor, gen: torch.Generator, p: float, max_t: int = 25, max_f: int = 12) -> torch.Tensor:
    """SpecAugment-style: with probability p per patch, one band of frames and one of mel bins
    set to the patch's mean (mel is [batch, frames, bins])."""
    mel = mel.clone()
    b, t, f = mel.shape
    r = torch.rand(b, 5, generator=gen)
    for i in range(b):
        if r[i, 0] >= p:
            continue
        fill = mel[i].mean()
        wt, wf = int(r[i, 1] * max_t), int(r[i, 2] * max_f)
        t0, f0 = int(r[i, 3] * (t - wt)), int(r[i, 4] * (f - wf))
        mel[i, t0:t0 + wt] = fill
        mel[i, :, f0:f0 + wf] = fill
    return mel


def add_dropout(net: torch.nn.Module, p: float) -> None:
    """Dropout on the dense layer's input while the net trains (a hook: the architecture and
    the exported tensors stay the original's)."""
    if p:
        net.dense.register_forward_pre_hook(lambda m, inp: (F.dropout(inp[0], p, m.training),))


class Batches(torch.utils.data.IterableDataset):
    """Batches step by step; step s always draws from Generator([seed, s]) (resumable).
    Yields (step, idx, partner, lam, degraded audio, clean audio of the first clean_items):
    a patch mixed (audio and targets) with `lam` of itself and 1 - lam of a partner of the same
    family; lam 1 = not mixed."""

    def __init__(self, audio, weights, family, chain, cfg: LoopConfig, start: int, pre_roll: bool = False):
        """pre_roll: the audio keeps its pre-roll (for a front end that reads it: LaggedFloorLogMel)."""
        self.audio, self.p, self.chain, self.cfg, self.start = audio, weights / weights.sum(), chain, cfg, start
        self.cut = 0 if pre_roll else PRE_ROLL
        self.by_family = {f: np.flatnonzero(family == f) for f in np.unique(family)}
        self.family = family

    def __iter__(self):
        c = self.cfg
        for step in range(self.start, c.steps):
            rng = np.random.default_rng([c.seed, step])
            idx = rng.choice(len(self.audio), size=c.batch, p=self.p)
            partner = np.array([rng.choice(self.by_family[self.family[i]]) for i in idx])
            lam = np.where(rng.random(c.batch) < c.p_mix, rng.uniform(0.3, 0.7, c.batch), 1.0)
            mixed = [self.audio[i].astype(np.float32) * a + self.audio[j].astype(np.float32) * (1 - a)
                     for i, j, a in zip(idx, partner, lam)]
            x = np.stack([self.chain.apply(m, rng, self.cut) for m in mixed])
            clean = np.stack([m[self.cut:] for m in mixed[:c.clean_items]]) if c.clean_items else np.zeros((0, 1))
            yield (step, torch.from_numpy(idx), torch.from_numpy(partner), torch.from_numpy(lam.astype(np.float32)),
                   torch.from_numpy(x), torch.from_numpy(clean.astype(np.float32)))


def batch_targets(targets: dict, margin: np.ndarray, idx, partner, lam) -> tuple[dict, torch.Tensor]:
    """The mixed patches' targets: lam x the patch's + (1 - lam) x its partner's."""
    i, j, a = idx.numpy(), partner.numpy(), lam.numpy()[:, None]
    t = {ck: torch.from_numpy((a * p[i] + (1 - a) * p[j]).astype(np.float32)) for ck, p in targets.items()}
    return t, torch.from_numpy((a[:, 0] * margin[i] + (1 - a[:, 0]) * margin[j]).astype(np.float32))


# ---- weights averaged over steps ---------------------------------------------------------------

def ema_update(ema: dict, students: dict, decay: float) -> None:
    with torch.no_grad():
        for ck, net in students.items():
            for k, v in net.state_dict().items():
                if v.is_floating_point():
                    ema[ck][k].mul_(decay).add_(v, alpha=1 - decay)


def nets_from(template: dict, states: dict) -> dict:
    nets = {ck: copy.deepcopy(n).eval() for ck, n in template.items()}
    for ck, n in nets.items():
        n.load_state_dict(states[ck])
    return nets


# ---- validation (early stopping only) ---------------------------------------------------------

@dataclass
class Validation:
    degraded: np.ndarray  # validation patches through a chain drawn from other banks
    clean: np.ndarray
    electronic: np.ndarray  # the package's family (bool per patch)
    teacher_top: np.ndarray  # the teacher's top genre on each clean patch


def evaluate(nets, frontend, val: Validation, tags) -> dict:
    """Family accuracy (against the package's family) on degraded and clean validation patches,
    and the clean top genre's agreement with the teacher's; `score` = their sum (higher better)."""
    cols = RT.family_columns(tags)
    res = {}
    for name, audio in (("degraded", val.degraded), ("clean", val.clean)):
        probs = {ck: torch.sigmoid(lg).numpy() for ck, lg in RT.logits_of(nets, frontend, audio).items()}
        res[f"family_{name}"] = float(np.mean((RT.family_margin(probs, cols) > 0) == val.electronic))
        res[f"top_{name}"] = float(np.mean(RT.top_genre(probs, tags) == val.teacher_top))
    res["score"] = res["family_degraded"] + res["family_clean"] + res["top_clean"]
    return res


# ---- the loop --------------------------------------------------------------------------------

class LaggedFloorLogMel(torch.nn.Module):
    """The student's input as a live stream hears it whose floor is re-estimated every other hop
    from the re-estimating patch alone (`MusicnnModel.floor_every_s` 1.5, `floor_memory_s` 0.5):
    each band's floor x alpha taken off the patch's log-mel, the floor that of the patch itself
    or, as often, of the patch one second earlier (the previous hop's, whose floor the stream
    still holds). Takes audio with the
    1 s pre-roll in front (training batches: `wants_pre_roll`); a bare patch takes its own floor."""

    wants_pre_roll = True

    def __init__(self, alpha: float, seed: int = 0) -> None:
        super().__init__()
        from stream.models.musicnn.frontend import LogMel

        self.alpha, self.logmel = float(alpha), LogMel()
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        from stream.models.musicnn.frontend import PATCH_SAMPLES, band_floor, minus_floor

        lm = self.logmel(audio[:, -PATCH_SAMPLES:])
        floor = band_floor(lm)
        if audio.shape[1] >= PATCH_SAMPLES + PRE_ROLL:
            earlier = band_floor(self.logmel(audio[:, -PATCH_SAMPLES - PRE_ROLL:-PRE_ROLL]))
            lagged = torch.rand(len(audio), generator=self.gen) < 0.5
            floor = torch.where(lagged[:, None], earlier, floor)
        return minus_floor(lm, floor, self.alpha)


@dataclass
class Data:
    audio: np.ndarray  # training patches (float16, with pre-roll)
    weights: np.ndarray  # sampling weight per patch (balance by the teacher's top genre)
    targets: dict  # per net: the track-level target probabilities
    margin: np.ndarray  # the track's family margin per patch
    chain: RC.Chain
    # per net: the clean pass's targets, when they mix less of the track than `targets` (None: the
    # same); the teacher's own patch output here anchors the clean headline to the teacher's
    clean_targets: dict | None = None


def lr_lambda(cfg: LoopConfig):
    def f(s):
        warm = min(1.0, (s + 1) / cfg.warmup)
        return warm if cfg.schedule == "const" else warm * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))
    return f


class Trainer:
    """Students, optimiser, EMA and checkpoints of one run; `run()` trains to cfg.steps from
    where the checkpoint left off and keeps a snapshot of the averaged weights at every evaluation."""

    def __init__(self, teacher: dict, frontend, data: Data, val: Validation, tags, cfg: LoopConfig, folder: Path,
                 init: dict | None = None):
        """init: the networks the students start from (default: the teacher's)."""
        torch.manual_seed(cfg.seed)
        self.teacher, self.frontend, self.data, self.val, self.tags, self.cfg = teacher, frontend, data, val, tags, cfg
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.template = {ck: copy.deepcopy((init or teacher)[ck]).eval() for ck in teacher}  # at the students' width
        self.students = {ck: copy.deepcopy((init or teacher)[ck]).train() for ck in teacher}
        for n in self.students.values():
            add_dropout(n, cfg.dropout)
        self.opt = torch.optim.Adam(param_groups(self.students.values(), cfg.layers, cfg.lr, cfg.front_lr))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg))
        self.ema = {ck: {k: v.detach().clone() for k, v in n.state_dict().items()} for ck, n in self.students.items()}
        self.step, self.best = 0, None
        self.cols = RT.family_columns(tags)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        if (folder / "last.pt").exists():
            self._resume(torch.load(folder / "last.pt", weights_only=False))

    def _resume(self, st: dict) -> None:
        for ck, net in self.students.items():
            net.load_state_dict(st["nets"][ck])
        self.opt.load_state_dict(st["opt"])
        self.sched.load_state_dict(st["sched"])
        self.ema, self.step, self.best = st["ema"], st["step"], st["best"]
        self.gen.manual_seed(self.cfg.seed + self.step)
        log(f"resumed {self.folder.name} at step {self.step}")

    def train_step(self, idx, partner, lam, x, clean) -> float:
        d, c = self.data, self.cfg
        targets, margin = batch_targets(d.targets, d.margin, idx, partner, lam)
        with torch.no_grad():
            mel = spec_mask(self.frontend(x), self.gen, c.p_mask)
            mel_clean = self.frontend(clean) if len(clean) else None
        loss = distill_loss(self.students, mel, targets, margin, self.cols, c.family_weight)
        if mel_clean is not None:
            k = len(clean)
            if d.clean_targets is not None:
                targets, _ = batch_targets(d.clean_targets, d.margin, idx, partner, lam)
            loss = loss + c.clean_weight * distill_loss(self.students, mel_clean, {ck: t[:k] for ck, t in targets.items()},
                                                        margin[:k], self.cols, c.family_weight)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.sched.step()
        ema_update(self.ema, self.students, min(c.ema, (1 + self.step) / (10 + self.step)))
        return float(loss.detach())

    def validate(self) -> dict:
        res = evaluate(nets_from(self.template, self.ema), self.frontend, self.val, self.tags)
        if self.best is None or res["score"] > self.best["score"]:
            self.best = {"score": res["score"], "step": self.step, "nets": copy.deepcopy(self.ema)}
        torch.save({"ema": self.ema, "step": self.step, "res": res}, self.folder / f"ema-{self.step:06d}.pt")
        torch.save({"nets": {ck: n.state_dict() for ck, n in self.students.items()}, "opt": self.opt.state_dict(),
                    "sched": self.sched.state_dict(), "ema": self.ema, "step": self.step, "best": self.best},
                   self.folder / "last.pt.tmp")
        (self.folder / "last.pt.tmp").replace(self.folder / "last.pt")
        return res

    def run(self, stop_after: int | None = None) -> dict | None:
        d, c = self.data, self.cfg
        family = (d.margin > 0).astype(np.int8)
        pre_roll = getattr(self.frontend, "wants_pre_roll", False)
        loader = torch.utils.data.DataLoader(Batches(d.audio, d.weights, family, d.chain, c, self.step, pre_roll),
                                             batch_size=None, num_workers=1, prefetch_factor=4)
        new = not (self.folder / "log.csv").exists()
        with open(self.folder / "log.csv", "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", "loss", "lr", "seconds", "family_degraded", "family_clean", "top_degraded",
                            "top_clean", "score"])
            t0, run_loss = time.time(), None
            for step, idx, partner, lam, x, clean in loader:
                loss = self.train_step(idx, partner, lam, x, clean)
                self.step = step + 1
                run_loss = loss if run_loss is None else 0.98 * run_loss + 0.02 * loss
                row = [self.step, f"{loss:.4f}", f"{self.sched.get_last_lr()[-1]:.3g}", f"{time.time() - t0:.1f}"]
                if self.step % c.eval_every == 0 or self.step == c.steps or self.step == stop_after:
                    res = self.validate()
                    row += [f"{res[k]:.4f}" for k in ("family_degraded", "family_clean", "top_degraded", "top_clean",
                                                       "score")]
                    log(f"step {self.step}: loss {run_loss:.4f}, " + ", ".join(f"{k} {v:.3f}" for k, v in res.items())
                        + f"; best step {self.best['step']}; {(time.time() - t0) / 60:.1f} min")
                w.writerow(row)
                f.flush()
                if self.step == stop_after:
                    break
        return self.best
