"""What the student learns: the teacher's outputs (cached once), the tag columns that decide a
family or a genre, and the track-level targets of the recipe.

Track-level targets: the teacher's output on one 3 s patch carries quirks that hang on fine
detail a room destroys; averaged over a whole track (or a context of >= 30 s) it is right far
more often (on the validation stream: 15 of 16 excerpts against 87.5 % of windows). Each
patch's target mixes that mean with the patch's own output (`mix` of the context), so the
student can beat the teacher per window without labels.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from stream.models.musicnn.model import GENRE_TAGS, WEIGHTS_DIR, display_name
from stream.models.musicnn.nets import ARCHITECTURES

from . import robust_data as RD

NETS = ("MTT_musicnn", "MSD_musicnn")  # the teacher: the original weights in WEIGHTS_DIR


def load_nets(folder=None) -> dict[str, torch.nn.Module]:
    from safetensors.torch import load_file

    folder = folder or WEIGHTS_DIR
    return {ck: ARCHITECTURES[ck.split("_", 1)[1]](load_file(os.path.join(folder, f"{ck}.safetensors")))
            for ck in NETS}


def logits_of(nets, frontend, audio: np.ndarray) -> dict[str, torch.Tensor]:
    """Each net's logits on patches of audio (any float dtype), 64 at a time."""
    out = {ck: [] for ck in nets}
    with torch.inference_mode():
        for i in range(0, len(audio), 64):
            mel = frontend(torch.from_numpy(audio[i:i + 64].astype(np.float32)))
            for ck, net in nets.items():
                out[ck].append(net(mel))
    return {ck: torch.cat(v) for ck, v in out.items()}


def teacher_outputs(cache, tag: str, patches: dict, nets, frontend) -> dict[str, np.ndarray]:
    """The teacher's probabilities on each clean patch, computed once and cached per package."""
    def run(name):
        audio = patches["audio"][patches["package"] == name][:, RD.PRE_ROLL:]
        return {ck: torch.sigmoid(lg).numpy() for ck, lg in logits_of(nets, frontend, audio).items()}

    return RD.concat([RD.cached(os.path.join(cache, f"teacher-{name}-{tag}.npz"), lambda: run(name))
                      for name in dict.fromkeys(patches["package"])])  # in order


# ---- tag columns -------------------------------------------------------------------------------

def genre_columns(tags: dict[str, list[str]]) -> dict[str, list[int]]:
    return {ck: [i for i, t in enumerate(tags[ck.split("_")[0] + "_LABELS"]) if display_name(t) in GENRE_TAGS]
            for ck in NETS}


def top_genre(teacher: dict[str, np.ndarray], tags) -> np.ndarray:
    """Index into a merged genre-tag list of each patch's top genre (mean of the nets)."""
    names = sorted(GENRE_TAGS)
    score = np.zeros((len(next(iter(teacher.values()))), len(names)))
    count = np.zeros(len(names))
    for ck, cols in genre_columns(tags).items():
        labels = tags[ck.split("_")[0] + "_LABELS"]
        for c in cols:
            j = names.index(display_name(labels[c]))
            score[:, j] += teacher[ck][:, c]
            count[j] += 1
    return np.argmax(score / np.maximum(count, 1), axis=1)


def family_columns(tags: dict[str, list[str]]) -> dict[str, dict[str, list[int]]]:
    """{net: {family: the net's tag columns in that family}} for bench/quality.py's families."""
    return {ck: {f: [i for i, t in enumerate(tags[ck.split("_")[0] + "_LABELS"]) if display_name(t) in members]
                 for f, members in RD.FAMILIES.items()} for ck in NETS}


def family_margin(probs: dict, cols):
    """Best electronic-family tag probability minus the best acoustic one over both nets, per
    patch: > 0 is the verdict "electronic" (the engine's family readout, on one patch)."""
    lib = torch if torch.is_tensor(next(iter(probs.values()))) else np  # training: torch; figures: numpy
    best = {f: lib.amax(lib.stack([lib.amax(p[:, cols[ck][f]], 1) for ck, p in probs.items()]), 0)
            for f in RD.FAMILIES}
    return best["electronic"] - best["acoustic"]


# ---- track-level targets -----------------------------------------------------------------------

def context_mean(x: np.ndarray, keys: np.ndarray, context: int) -> np.ndarray:
    """Per row, the mean of x over the rows of the same key (a track: consecutive rows) within
    `context` rows either side; context 0 = the whole track."""
    out = np.empty(x.shape, np.float64)
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        seg = x[a:b].astype(np.float64)
        if not context or context >= b - a:
            out[a:b] = seg.mean(0)
            continue
        c = np.vstack([np.zeros((1,) + seg.shape[1:]), np.cumsum(seg, 0)])
        i = np.arange(b - a)
        lo, hi = np.maximum(i - context, 0), np.minimum(i + context + 1, b - a)
        out[a:b] = (c[hi] - c[lo]) / (hi - lo)[:, None]
    return out


def track_targets(teacher: dict[str, np.ndarray], patches: dict, cols, mix: float = 0.7,
                  context: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(per net: mix x the track's mean probabilities + (1 - mix) x the patch's, the track's
    family margin) for patches in track order. Deterministic; training packages only: a
    validation package here would leak the figures' music into the targets."""
    held = {p.name for p in RD.VALIDATION} & set(np.unique(patches["package"]).tolist())
    if held:
        raise ValueError(f"track targets from validation packages ({', '.join(sorted(held))}): "
                         "they judge the student and never train it")
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be within 0..1, got {mix}")
    keys = np.char.add(np.char.add(patches["package"].astype(str), "/"), patches["track"].astype(str))
    means = {ck: context_mean(p, keys, context) for ck, p in teacher.items()}
    targets = {ck: (mix * means[ck] + (1 - mix) * teacher[ck]).astype(np.float32) for ck in teacher}
    return targets, family_margin(means, cols).astype(np.float32)
