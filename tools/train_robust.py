"""Teach the bundled MusiCNN networks to hear a room, talk, hiss and a phone as they hear a clean
file, and to beat their own per-window quirks (track-level targets).

    python -m tools.train_robust --tag long                 # prepare (cached), train, export the best
    python -m tools.train_robust --tag long --steps 20 --out /tmp/try    # a short try
    python -m tools.train_robust --tag long --export-only [--step N] [--install]

Teacher-student distillation, no genre labels. The teacher is the bundled MusiCNN pair (MTT and
MSD) on clean 3 s patches of every training track, run once and cached (tools.robust_targets);
each patch's target mixes the teacher's mean over its whole track with its own output
(--mix, --context), the family term pulls on the track's family margin. Each student starts as
its teacher and hears the patches through a random acoustic chain (tools.robust_chain: simulated
rooms, synthetic and recorded noise, babble, broadband hiss under a reverb tail, small devices,
codecs) with its own noise (SpecAugment masks, mixup within a family, dropout: tools.robust_loop).
Weights are averaged over steps (EMA) at a constant rate, so every snapshot is usable.

Data: free music from Debian packages (tools.robust_data), training packages only; the
validation packages (asc-music, wesnoth-1.16-music) pick the snapshot to keep (early stopping)
and are never trained on. Everything is cached under --cache/<tag>: a run stopped anywhere
resumes where its last checkpoint left off (the batches are drawn from the step number).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from stream.models.musicnn.frontend import FloorLogMel, LogMel
from stream.models.musicnn.model import GENRE_TAGS, TRAINED, WEIGHTS_DIR, load_tag_lists
from stream.models.musicnn.nets import ARCHITECTURES

from . import robust_chain as RC
from . import robust_data as RD
from . import robust_loop as RL
from . import robust_targets as RT
from .robust_data import PRE_ROLL, log
from .robust_export import blend, export, to_tf
from .robust_widen import parse_width, widen

VAL_TAG = "val-15-20"  # validation patches: every 15 s, at most 20 a track


def chain_config(settings: list[str], p_clean: float, p_hiss: float = 0.0) -> RC.ChainConfig:
    """The chain's settings with KEY=VALUE overrides, a range as LO,HI (e.g. snr_db=10,30
    p_room=0.5: a milder chain). Unknown keys and unreadable values stop with what is allowed."""
    fields = {f.name: f for f in dataclasses.fields(RC.ChainConfig)}
    changes = {"p_clean": p_clean, "p_hiss": p_hiss}
    for item in settings:
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--chain {item}: unknown setting; known: {' '.join(fields)}")
        try:
            numbers = tuple(float(v) for v in value.split(","))
        except ValueError:
            numbers = ()
        want = len(getattr(RC.ChainConfig, key)) if isinstance(getattr(RC.ChainConfig, key), tuple) else 1
        if len(numbers) != want:
            raise SystemExit(f"--chain {item}: {key} takes {'LO,HI' if want == 2 else 'one number'}")
        changes[key] = numbers if want == 2 else numbers[0]
    return dataclasses.replace(RC.ChainConfig(), **changes)


def parse(argv=None) -> argparse.Namespace:
    d = RL.LoopConfig()
    ap = argparse.ArgumentParser(prog="python -m tools.train_robust", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "live-genre-robust")
    ap.add_argument("--tag", default="track", help="the run's folder under --cache (checkpoints, log, snapshots)")
    ap.add_argument("--out", type=Path, default=None, help="where the weights go (default: <cache>/<tag>/weights)")
    ap.add_argument("--install", action="store_true",
                    help="write them where the package ships the default musicnn (then refit its confidence, "
                         "tools/calibrate_confidence.py, and the device's presence head, tools/train_presence_head.py: "
                         "a test checks both were fitted on the weights that ship)")
    ap.add_argument("--export-only", action="store_true", help="export a snapshot of the run as it stands, and stop")
    ap.add_argument("--step", type=int, default=None, help="with --export-only: this step's snapshot (default: best)")
    ap.add_argument("--blend", type=float, default=1.0, help="export teacher + BLEND x (student - teacher)")
    ap.add_argument("--stop-after", type=int, default=None, help="stop (and export) after this many steps")
    ap.add_argument("--mix", type=float, default=0.7, help="share of the track's mean in each patch's target")
    ap.add_argument("--clean-mix", type=float, default=None,
                    help="the same for the clean pass (default: --mix; 0: the teacher's own output on the patch)")
    ap.add_argument("--context", type=int, default=0,
                    help="patches either side that the mean covers (0: the whole track; 5 = 33 s at a 3 s stride)")
    ap.add_argument("--stride", type=float, default=3.0, help="seconds between training patches")
    ap.add_argument("--max-per-track", type=int, default=0, help="0: every patch of every track")
    ap.add_argument("--every", type=int, default=1, help="train on every k-th patch (all tracks, k times fewer patches)")
    ap.add_argument("--balance", type=float, default=1.0,
                    help="sample each patch with weight 1/count(teacher's top genre of its track)**balance")
    ap.add_argument("--min-group", type=int, default=100)
    ap.add_argument("--acoustic-share", type=float, default=None,
                    help="draw patches of acoustic-family tracks (the teacher's track verdict) this share of the time "
                         "(default: as --balance leaves it, ~0.47): degraded acoustic music is what the networks lose")
    ap.add_argument("--p-clean", type=float, default=0.1, help="share of patches the chain leaves clean")
    ap.add_argument("--p-hiss", type=float, default=0.15, help="share of hiss draws (room + white noise 5-15 dB)")
    ap.add_argument("--festival-babble", type=float, default=0.0,
                    help="share of the babble's talkers read by Festival voices instead of espeak-ng (0: espeak-ng only)")
    ap.add_argument("--recorded", action=argparse.BooleanOptionalAction, default=True,
                    help="recorded ambiences and voices of the training-side sound packages in the chain")
    ap.add_argument("--chain", nargs="*", default=[], metavar="KEY=VALUE", help="ChainConfig overrides")
    for f in dataclasses.fields(RL.LoopConfig):
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(getattr(d, f.name)), default=getattr(d, f.name))
    ap.add_argument("--floor", type=float, default=0.0,
                    help="the student hears its input with each band's floor taken off (take_floor alpha; 0: off); "
                         "the teacher's targets stay those of the plain clean log-mel")
    ap.add_argument("--floor-lag", action="store_true",
                    help="with --floor: half the patches take the floor of the audio a second earlier, as a live stream "
                         "does whose floor is re-estimated every other hop from that patch alone (floor_every_s 1.5, "
                         "floor_memory_s 0.5; robust_loop.LaggedFloorLogMel)")
    ap.add_argument("--init", default=None,
                    help="the students start from these weights: a folder of exported ones, or 'musicnn' for the shipped "
                         "default (default: the teacher, the original pair); the targets stay the teacher's")
    ap.add_argument("--width", default=None, metavar="MIDxDENSE",
                    help="widen the students' mid end and dense layer (upstream 64x200) before training, keeping "
                         "their function (tools/robust_widen.py; the new units start silent)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    if a.width:
        try:
            a.width = parse_width(a.width)
        except ValueError as e:
            ap.error(str(e))
    if not 0.0 <= a.festival_babble <= 1.0:
        ap.error(f"--festival-babble is a share of the talkers, within [0, 1]; got {a.festival_babble}")
    return a


def balance_weights(top: np.ndarray, balance: float, min_group: int) -> np.ndarray:
    """1/count**balance of each patch's group: a genre with few patches is drawn as often as a common one."""
    counts = np.bincount(top, minlength=len(GENRE_TAGS))
    return 1.0 / np.maximum(counts[top], min_group).astype(np.float64) ** balance


def family_share(weights: np.ndarray, acoustic: np.ndarray, share: float) -> np.ndarray:
    """`weights` rescaled within each family so that the acoustic patches carry `share` of the total."""
    if not 0.0 < share < 1.0 or not acoustic.any() or acoustic.all():
        raise SystemExit(f"--acoustic-share must be within (0, 1) with both families present, got {share}")
    out = weights.astype(np.float64)  # (a copy)
    out[acoustic] *= share / out[acoustic].sum()
    out[~acoustic] *= (1.0 - share) / out[~acoustic].sum()
    return out


def training_data(a, teacher, frontend, tags) -> RL.Data:
    tag = f"train-{a.stride:g}-{a.max_per_track}"
    log("prepare: training patches (all of every training track)")
    tr = RD.prepare_patches(a.cache, RD.TRAIN, tag, a.stride, a.max_per_track)
    if a.every > 1:  # every k-th patch of every track: the teacher's pass is k times cheaper
        tr, tag = {k: v[::a.every] for k, v in tr.items()}, f"{tag}-every{a.every}"
    log(f"  {len(tr['audio'])} patches ({len(tr['audio']) * 3 / 3600:.1f} h of patches); teacher outputs (cached once)")
    t_tr = RT.teacher_outputs(a.cache, tag, tr, teacher, frontend)
    cols = RT.family_columns(tags)
    targets, margin = RT.track_targets(t_tr, tr, cols, a.mix, a.context)
    names = sorted(GENRE_TAGS)
    top = RT.top_genre(targets, tags)
    counts = np.bincount(top, minlength=len(names))
    log("target top genre: " + ", ".join(f"{names[i]} {counts[i]}" for i in np.argsort(-counts) if counts[i]))
    log(f"  track family: {int((margin > 0).sum())} electronic, {int((margin <= 0).sum())} acoustic patches")
    rirs, babble = RC.cached_banks(a.cache, 1000 + a.seed, 200, 60, a.festival_babble)
    recorded = RD.recorded_bank(RD.NOISE_TRAIN) if a.recorded else []
    log(f"  chain: {len(rirs)} rooms, {len(babble)} babble clips, {len(recorded)} recorded clips")
    chain = RC.Chain(rirs, babble, chain_config(a.chain, a.p_clean, a.p_hiss), recorded=recorded)
    clean_targets = None
    if a.clean_mix is not None and a.clean_mix != a.mix:
        clean_targets, _ = RT.track_targets(t_tr, tr, cols, a.clean_mix, a.context)
    weights, acoustic = balance_weights(top, a.balance, a.min_group), margin <= 0
    if a.acoustic_share is not None:
        weights = family_share(weights, acoustic, a.acoustic_share)
    log(f"  acoustic-family share of draws {weights[acoustic].sum() / weights.sum():.2f}")
    return RL.Data(tr["audio"], weights, targets, margin, chain, clean_targets)


def validation_data(a, teacher, frontend, tags) -> RL.Validation:
    """Validation patches through a chain of rooms and voices no training drew, hiss included."""
    va = RD.prepare_patches(a.cache, RD.VALIDATION, VAL_TAG, 15.0, 20)
    t_va = RT.teacher_outputs(a.cache, VAL_TAG, va, teacher, frontend)
    v_rirs, v_babble = RC.cached_banks(a.cache, 5000, 60, 12)
    chain = RC.Chain(v_rirs, v_babble, RC.ChainConfig(p_clean=0.0, p_hiss=0.2))
    rng = np.random.default_rng(7)
    degraded = np.stack([chain.apply(x.astype(np.float32), rng, PRE_ROLL) for x in va["audio"]])
    electronic = np.array([RD.VALIDATION_FAMILY[p] == "electronic" for p in va["package"]])
    return RL.Validation(degraded, va["audio"][:, PRE_ROLL:].astype(np.float32), electronic,
                         RT.top_genre(t_va, tags))


RUN_FILE = "run.json"  # the arguments the run last started with (export records them)


def widened(nets: dict, width: tuple[int, int], seed: int) -> dict:
    """Each net widened to `width` (mid channels, dense units), computing the same function."""
    from safetensors.torch import load_file

    out = {}
    for i, (ck, net) in enumerate(nets.items()):
        tensors = to_tf(net, load_file(str(WEIGHTS_DIR / f"{ck}.safetensors")))
        out[ck] = ARCHITECTURES["musicnn"](widen(tensors, *width, seed=seed + i)).eval()
    return out


def template_for(teacher: dict, states: dict) -> dict:
    """The teacher at the width of a run's weights `states` (a widened run's are wider)."""
    st = next(iter(states.values()))
    width = (st["mid.0.weight"].shape[0], st["dense.weight"].shape[0])
    net = next(iter(teacher.values()))
    return teacher if width == (net.mid[0].weight.shape[0], net.dense.weight.shape[0]) else widened(teacher, width, 0)


def export_run(a, teacher, folder: Path, best: dict) -> None:
    base = template_for(teacher, best["nets"])
    students = RL.nets_from(base, {ck: blend(base[ck].state_dict(), best["nets"][ck], a.blend) for ck in base})
    out = WEIGHTS_DIR / TRAINED["musicnn"] if a.install else (a.out or folder / "weights")
    # the training run's own arguments (run.json, written when it starts), not an --export-only call's
    run = folder / RUN_FILE
    train_args = run.read_text() if run.exists() else json.dumps({k: str(v) for k, v in vars(a).items()})
    meta = {"recipe": "python -m tools.train_robust", "run": a.tag, "step": best["step"], "blend": a.blend,
            "args": train_args, "teacher": "musicnn 0.1.0 (ISC)",
            "train_packages": ",".join(p.name for p in RD.TRAIN)}
    export(students, out, meta)


def snapshot(folder: Path, step: int | None) -> dict:
    """The best averaged weights of a run, or those of one evaluated step."""
    if step is None:
        return torch.load(folder / "last.pt", weights_only=False)["best"]
    st = torch.load(folder / f"ema-{step:06d}.pt", weights_only=False)
    return {"step": st["step"], "nets": st["ema"], "score": st["res"]["score"]}


def main(argv=None) -> int:
    a = parse(argv)
    torch.set_num_threads(a.threads)
    folder = a.cache / a.tag
    a.cache.mkdir(parents=True, exist_ok=True)
    tags = load_tag_lists()
    frontend = LogMel().eval()
    teacher = {ck: n.eval() for ck, n in RT.load_nets().items()}
    if a.export_only:
        best = snapshot(folder, a.step)
        export_run(a, teacher, folder, best)
        log(f"exported step {best['step']} (validation score {best['score']:.3f})")
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RUN_FILE).write_text(json.dumps({k: str(v) for k, v in vars(a).items()}))
    data = training_data(a, teacher, frontend, tags)
    val = validation_data(a, teacher, frontend, tags)
    log(f"validation, the original pair: {RL.evaluate(teacher, frontend, val, tags)}")
    cfg = RL.LoopConfig(**{f.name: getattr(a, f.name) for f in dataclasses.fields(RL.LoopConfig)})
    student_front = (RL.LaggedFloorLogMel(a.floor, a.seed) if a.floor_lag else FloorLogMel(a.floor)).eval() \
        if a.floor > 0 else frontend
    init = None
    if a.init:
        init = {ck: n.eval() for ck, n in RT.load_nets(WEIGHTS_DIR / TRAINED[a.init] if a.init in TRAINED
                                                         else Path(a.init)).items()}
        log(f"students start from {a.init}")
    if a.width:
        init = widened(init or teacher, a.width, a.seed)
        log(f"students widened to {a.width[0]} mid channels, {a.width[1]} dense units")
    best = RL.Trainer(teacher, student_front, data, val, tags, cfg, folder, init).run(a.stop_after)
    if best is None:
        log("no evaluation ran (steps already done?)")
        return 1
    export_run(a, teacher, folder, best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
