"""The room-robust recipe (issue 18, issue 35): the acoustic chain, the export to the checkpoint
layout, a real training step, and the students it shipped ("musicnn", the default since
2026-12-06, and "musicnn-room"): they load and run under ONNX Runtime as under torch, keep their
family verdict through a room better than the original does, and the default keeps the
original's clean headline on most patches."""
from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stream.models.backends import onnxruntime_available
from stream.models.musicnn import load_bundled
from stream.models.musicnn.frontend import PATCH_SAMPLES, LogMel
from stream.models.musicnn.model import TRAINED, WEIGHTS_DIR, load_tag_lists
from tools import robust_chain as RC
from tools import robust_data as RD
from tools import robust_export as RE
from tools import robust_loop as RL
from tools import robust_targets as RT
from tools import train_robust as TR

ROOT = Path(__file__).resolve().parents[1]
CHILD = "LIVE_GENRE_TEST_CHILD"


def ran_in_own_process(request) -> bool:
    """Runs the calling test again in a fresh pytest process and returns True in the parent. The
    suite's long-lived process died (SIGSEGV, no traceback) in these training tests after ~430
    other tests, in three runs; never alone or in smaller sets. Not understood yet: isolated."""
    if os.environ.get(CHILD):
        return False
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid],
                       cwd=ROOT, env={**os.environ, CHILD: "1"}, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.returncode, r.stdout[-4000:], r.stderr[-2000:])
    return True
PRE_ROLL = RD.PRE_ROLL

@pytest.fixture(scope="module")
def banks():
    """A tiny bank: 3 simulated rooms, 2 babble clips (seconds to make)."""
    return RC.rir_bank(3, seed=1), RC.babble_bank(2, seed=2, seconds=3.0, talkers=(2, 3))


def test_chain_is_deterministic_under_a_seed_and_keeps_length(banks):
    rirs, babble = banks
    chain = RC.Chain(rirs, babble, RC.ChainConfig(p_clean=0.0, p_codec=0.5))
    x = RD.level(np.random.default_rng(0).standard_normal(PRE_ROLL + PATCH_SAMPLES).astype(np.float32))
    outs = {}
    for seed in (3, 3, 4):
        y, what = chain(x, np.random.default_rng(seed))
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
        outs.setdefault(seed, []).append((y, what))
    (a, wa), (b, wb) = outs[3]
    assert wa == wb and np.array_equal(a, b)  # same seed, same draw, same samples
    assert not np.array_equal(a, outs[4][0][0])
    assert not np.allclose(a, x, atol=1e-3)  # p_clean=0: something was applied
    # apply() cuts the pre-roll: the patch the model sees keeps its length
    assert chain.apply(x, np.random.default_rng(3), PRE_ROLL).shape == (PATCH_SAMPLES,)


def test_chain_clean_draw_is_the_input_and_bad_input_is_refused(banks):
    chain = RC.Chain(*banks, RC.ChainConfig(p_clean=1.0))
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    y, what = chain(x, np.random.default_rng(0))
    assert what == "clean" and np.array_equal(x, y)
    with pytest.raises(ValueError, match="mono"):
        chain(np.zeros((2, 100), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="non-empty"):
        RC.Chain([], banks[1])


def test_simulated_room_has_the_asked_reverberation():
    """The bank's rooms are real simulations: the RT60 measured on the response grows with the
    RT60 asked for (pyroomacoustics' own estimate, within a factor of 2)."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(0)
    measured = []
    for rt in (0.3, 1.0):
        h = RC.simulate_rir(rng, rt, (8.0, 6.0, 3.0))
        measured.append(pra.experimental.measure_rt60(h, fs=RC.RATE))
        assert rt / 2 <= measured[-1] <= rt * 2, (rt, measured[-1])
    assert measured[1] > measured[0] * 1.5


@pytest.mark.slow
def test_a_simulated_room_is_the_same_in_another_process():
    """The ray tracer's randomness is seeded from the chain's generator: two processes build
    the same room sample for sample (the training bank and bench/robust.py's rooms repeat)."""
    code = ("import sys, numpy as np; from tools import robust_chain as RC; "
            "h = RC.simulate_rir(np.random.default_rng(5), 0.8, (7.0, 5.0, 3.0)); "
            "sys.stdout.buffer.write(h.tobytes())")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, cwd=ROOT).stdout
            for _ in range(2)]
    a, b = (np.frombuffer(r, np.float32) for r in runs)
    assert len(a) > RC.RATE // 4 and np.array_equal(a, b)
    other = RC.simulate_rir(np.random.default_rng(6), 0.8, (7.0, 5.0, 3.0))
    n = min(len(a), len(other))
    assert not np.allclose(a[:n], other[:n], atol=1e-3 * np.abs(a).max())


def test_export_to_checkpoint_layout_round_trips():
    """A student's weights written in the checkpoint's TF layout load back as the same function
    (the flipped channels and transposes undone exactly)."""
    nets = RT.load_nets()
    net = nets["MTT_musicnn"]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    from safetensors.torch import load_file

    tensors = RE.to_tf(net, load_file(str(WEIGHTS_DIR / "MTT_musicnn.safetensors")))
    back = type(net)(tensors)
    x = torch.randn(3, 187, 96, generator=g) + 2
    with torch.inference_mode():
        assert torch.allclose(back(x), net(x), atol=1e-4)


def validation_tracks(pkg) -> list:
    tracks = RD.tracks([pkg])
    if not tracks:
        pytest.fail(f"{pkg.name} is not installed: bash scripts/setup.sh --dev installs it")
    return tracks


def real_patches(n: int, seed: int = 0) -> np.ndarray:
    """n patches (with pre-roll) from the validation recordings, half of each family."""
    rng = np.random.default_rng(seed)
    out = []
    for pkg in RD.VALIDATION:
        tracks = validation_tracks(pkg)
        for k in range(n // 2):
            y = RD.load(tracks[int(rng.integers(len(tracks)))])
            while len(y) < 16000 * 12 + PRE_ROLL + PATCH_SAMPLES:  # a jingle: another track
                y = RD.load(tracks[int(rng.integers(len(tracks)))])
            s = int(rng.integers(16000 * 10, len(y) - PRE_ROLL - PATCH_SAMPLES - 16000))
            out.append(y[s:s + PRE_ROLL + PATCH_SAMPLES])
    return np.stack(out).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bce", "logit", "family"])
def test_one_training_step_lowers_the_loss(banks, kind):
    """One real Adam step of the recipe on a tiny real batch lowers the distillation loss on it
    (BCE on the teacher's probabilities, MSE on its logits, or the family-margin term alone)."""
    torch.manual_seed(0)
    audio = real_patches(4)
    teachers = RT.load_nets()
    frontend = LogMel().eval()
    with torch.no_grad():
        clean = frontend(torch.from_numpy(audio[:, PRE_ROLL:]))
        target = {ck: torch.sigmoid(n(clean)) for ck, n in teachers.items()}
    chain = RC.Chain(*banks, RC.ChainConfig(p_clean=0.0, p_codec=0.0))
    rng = np.random.default_rng(0)
    x = torch.from_numpy(np.stack([chain.apply(a, rng, PRE_ROLL) for a in audio]))
    with torch.no_grad():
        mel = frontend(x)
    students = {ck: copy.deepcopy(n).train() for ck, n in teachers.items()}
    opt = torch.optim.Adam([p for n in students.values() for p in n.parameters()], lr=1e-4)

    cols = RT.family_columns(load_tag_lists())

    def loss():
        if kind == "bce":
            return sum(RL.bce_excess(n(mel), target[ck])[1] for ck, n in students.items())
        if kind == "family":
            margin = RT.family_margin({ck: torch.sigmoid(n(mel)) for ck, n in students.items()}, cols)
            return torch.nn.functional.mse_loss(margin, RT.family_margin(target, cols))
        return sum(RL.logit_mse(n(mel), target[ck]) for ck, n in students.items())

    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss()
    before = before.item()
    assert before > 0  # the degraded patch is heard differently: something to learn
    assert float(after) < before * 0.98, (before, float(after))


def test_family_margin_is_the_bench_verdict_over_both_nets():
    """The margin is the best electronic-family tag minus the best acoustic one, over both nets
    (so its sign is bench/quality.py's family verdict), alike on numpy and torch."""
    tags = load_tag_lists()
    cols = RT.family_columns(tags)
    for ck, fam in cols.items():
        assert fam["electronic"] and fam["acoustic"], ck  # each net can vote for either family
    probs = {ck: np.full((2, len(tags[ck.split("_")[0] + "_LABELS"])), 0.05) for ck in RT.NETS}
    mtt, msd = probs["MTT_musicnn"], probs["MSD_musicnn"]
    mtt[0, cols["MTT_musicnn"]["acoustic"][0]] = 0.6  # row 0: an acoustic tag of one net wins
    msd[0, cols["MSD_musicnn"]["electronic"][0]] = 0.3
    msd[1, cols["MSD_musicnn"]["electronic"][-1]] = 0.9  # row 1: an electronic tag of the other
    margin = RT.family_margin(probs, cols)
    assert np.allclose(margin, [0.3 - 0.6, 0.9 - 0.05])
    as_torch = RT.family_margin({ck: torch.from_numpy(p) for ck, p in probs.items()}, cols)
    assert np.allclose(as_torch.numpy(), margin)


def test_chain_settings_override_and_bad_ones_are_refused():
    c = TR.chain_config(["snr_db=10,30", "p_room=0.5"], p_clean=0.2)
    assert c.snr_db == (10.0, 30.0) and c.p_room == 0.5 and c.p_clean == 0.2
    assert c.p_noise == RC.ChainConfig.p_noise  # the rest as shipped
    with pytest.raises(SystemExit, match="unknown setting; known: .*snr_db"):
        TR.chain_config(["snr=10,30"], 0.0)
    with pytest.raises(SystemExit, match="snr_db takes LO,HI"):
        TR.chain_config(["snr_db=10"], 0.0)
    with pytest.raises(SystemExit, match="p_room takes one number"):
        TR.chain_config(["p_room=lots"], 0.0)


def test_babble_weight_sets_how_often_talk_is_the_background():
    """--chain babble_weight=W: 0 never draws babble; a large weight makes it nearly every background."""
    x = np.ones(4000, np.float32)

    def share(weight):
        chain = RC.Chain(RC.rir_bank(1, seed=1), [np.ones(100, np.float32)],
                         RC.ChainConfig(p_clean=0.0, p_room=0.0, p_noise=1.0, p_codec=0.0, babble_weight=weight))
        return np.mean(["babble" in chain(x, np.random.default_rng(s))[1] for s in range(60)])

    assert share(0.0) == 0.0
    assert share(20.0) > 0.8 > share(RC.ChainConfig.babble_weight)
    assert TR.chain_config(["babble_weight=1.2"], 0.0).babble_weight == 1.2
    with pytest.raises(ValueError, match="babble_weight -1.0: .* >= 0"):
        RC.Chain(RC.rir_bank(1, seed=1), [x], RC.ChainConfig(babble_weight=-1.0))
    with pytest.raises(SystemExit):
        TR.parse(["--festival-babble", "2"])


def test_festival_babble_is_deterministic_and_falls_back_to_espeak_without_festival():
    """--festival-babble: Festival voices read some talkers (a different bank from the same seed);
    with none installed the bank is espeak-ng's, draw for draw."""
    espeak_only = RC.babble_bank(1, seed=3, seconds=2.0, talkers=(2, 3))
    a = RC.babble_bank(1, seed=3, seconds=2.0, talkers=(2, 3), festival_share=1.0)
    b = RC.babble_bank(1, seed=3, seconds=2.0, talkers=(2, 3), festival_share=1.0)
    assert np.array_equal(a[0], b[0]) and abs(RC.rms(a[0]) - 1) < 1e-3
    if any(RC.festival_speech("one", v) is not None for v in RC.FESTIVAL_VOICES):
        assert not np.allclose(a[0], espeak_only[0], atol=1e-2)
    else:
        assert np.array_equal(a[0], espeak_only[0])


def test_acoustic_share_sets_how_often_each_family_is_drawn_and_keeps_the_balance_within_it():
    """--acoustic-share: the acoustic patches carry that share of the draws; within a family the
    genre balance (--balance) is kept; a share outside (0, 1) or a missing family is refused."""
    weights = np.array([1.0, 1.0, 2.0, 0.5, 0.5, 3.0])
    acoustic = np.array([False, False, False, True, True, False])
    got = TR.family_share(weights, acoustic, 0.7)
    assert got[acoustic].sum() == pytest.approx(0.7) and got.sum() == pytest.approx(1.0)
    assert got[2] / got[0] == pytest.approx(2.0) and got[3] == pytest.approx(got[4])
    for bad, mask in ((1.0, acoustic), (0.0, acoustic), (0.5, np.zeros(6, bool))):
        with pytest.raises(SystemExit, match="--acoustic-share must be within"):
            TR.family_share(weights, mask, bad)


def test_blend_runs_from_teacher_to_student_and_missing_packages_are_named(tmp_path):
    """--blend: 0 gives the teacher's tensors, 1 the student's, 0.5 the midpoint. A package list
    with nothing installed stops with the names to install, not numpy's empty-stack error."""
    t = {"w": torch.zeros(3), "n": torch.tensor([7])}
    s = {"w": torch.tensor([2.0, -4.0, 6.0]), "n": torch.tensor([7])}
    assert torch.equal(RE.blend(t, s, 0.0)["w"], t["w"]) and torch.equal(RE.blend(t, s, 1.0)["w"], s["w"])
    assert torch.equal(RE.blend(t, s, 0.5)["w"], torch.tensor([1.0, -2.0, 3.0]))
    t2, s2 = {"w": torch.tensor([0.1, 374.385])}, {"w": torch.tensor([0.3, -0.7])}
    assert torch.equal(RE.blend(t2, s2, 1.0)["w"], s2["w"])  # exactly: a re-export is the shipped weights
    missing = RD.Package("no-such-music", "none", (str(tmp_path / "nothing" / "*.ogg"),))
    with pytest.raises(SystemExit, match="no-such-music"):
        RD.prepare_patches(tmp_path, [missing], "t", 5.0, 2)


STUDENTS = ("musicnn", "musicnn-room")  # the default (track-level targets) and the first room model


@pytest.mark.slow
@pytest.mark.skipif(not onnxruntime_available()[0], reason="onnxruntime/onnx not installed")
@pytest.mark.parametrize("spec", STUDENTS)
def test_shipped_student_loads_and_runs_under_onnxruntime_as_under_torch(spec, monkeypatch, tmp_path):
    folder = WEIGHTS_DIR / TRAINED[spec]
    card = (folder / "MODEL_CARD.md").read_text()
    assert "ISC" in card and "asc-music" in card  # the teacher's licence; the validation packages
    monkeypatch.delenv("STREAM_BACKEND", raising=False)
    monkeypatch.setenv("STREAM_CACHE", str(tmp_path))
    ref = load_bundled(spec, backend="torch")
    fast = load_bundled(spec, backend="onnxruntime")  # (auto may pick bf16: test_precision.py)
    assert fast.backend == "onnxruntime", fast.kernels["MTT_musicnn"].reason
    x = np.stack([p[PRE_ROLL:] for p in real_patches(4, seed=3)])
    assert np.abs(fast.predict(x) - ref.predict(x)).max() <= 1e-4  # the load-time self-check's tolerance
    original = load_bundled("musicnn-original", backend="torch")
    assert ref.labels == original.labels
    assert np.abs(ref.predict(x) - original.predict(x)).max() > 1e-3  # the student's own weights


def family_is_electronic(model, windows: np.ndarray) -> np.ndarray:
    """bench/quality.py's verdict on each window: best electronic-family tag beats the best acoustic one."""
    p = model.predict(windows)
    best = {f: p[:, [i for i, t in enumerate(model.labels) if t in members]].max(1)
            for f, members in RD.FAMILIES.items()}
    return best["electronic"] > best["acoustic"]


def validation_excerpts(per_package: int = 5, per_track: int = 8) -> np.ndarray:
    """Patches (with pre-roll) every 15 s of `per_package` tracks spread over each validation package."""
    out = []
    for pkg in RD.VALIDATION:
        tracks = validation_tracks(pkg)
        for t in tracks[:: max(1, len(tracks) // per_package)][:per_package]:
            y = RD.load(t)
            starts = range(16000 * 10, len(y) - PRE_ROLL - PATCH_SAMPLES, 16000 * 15)
            out += [y[s:s + PRE_ROLL + PATCH_SAMPLES] for s in list(starts)[:per_track]]
    return np.stack(out).astype(np.float32)


@pytest.fixture(scope="module")
def validation_audio():
    """Real validation excerpts (packages never trained on), with pre-roll."""
    return validation_excerpts()


@functools.lru_cache(maxsize=None)
def ort_model(spec: str):
    return load_bundled(spec, backend="onnxruntime")  # (float32 as torch, a third less CPU)


def kept_family(spec: str, clean: np.ndarray, degraded: np.ndarray) -> int:
    m = ort_model(spec)
    return int((family_is_electronic(m, degraded) == family_is_electronic(m, clean)).sum())


@pytest.mark.slow
@pytest.mark.xdist_group("robust_students")
def test_room_model_keeps_its_family_through_a_room_with_voices_more_often_than_the_original(validation_audio):
    """Each excerpt through a seeded draw of the full chain, rooms and espeak voices of the
    validation seeds: the first room model's verdict on the degraded patch equals its own clean
    verdict more often than the original's does."""
    chain = RC.Chain(RC.rir_bank(8, seed=5000), RC.babble_bank(3, seed=5001, seconds=4.0, talkers=(3, 5)),
                     RC.ChainConfig(p_clean=0.0))
    clean = validation_audio[:, PRE_ROLL:]
    degraded = np.stack([chain.apply(x, np.random.default_rng(100 + i), PRE_ROLL) for i, x in enumerate(validation_audio)])
    kept = {spec: kept_family(spec, clean, degraded) for spec in ("musicnn-original", "musicnn-room")}
    assert kept["musicnn-room"] > kept["musicnn-original"], kept


@pytest.mark.slow
@pytest.mark.xdist_group("robust_students")
def test_default_keeps_its_family_through_rooms_hiss_and_a_laptop_more_often_than_the_original(validation_audio):
    """The default's gains (model card): each excerpt through bench/robust.py's room, laptop and
    hiss conditions (seeded), the verdicts on all three counted together; under synthetic
    voices it is no better than the original (the café condition), so they are not here."""
    clean = validation_audio[:, PRE_ROLL:]
    degraded = np.concatenate([np.stack([RC.condition(c, x, seed=100 + i)[PRE_ROLL:] for i, x in enumerate(validation_audio)])
                               for c in ("room", "laptop", "hiss")])
    clean3 = np.concatenate([clean] * 3)
    kept = {spec: kept_family(spec, clean3, degraded) for spec in ("musicnn-original", "musicnn")}
    assert kept["musicnn"] > kept["musicnn-original"], kept


@pytest.mark.slow
@pytest.mark.xdist_group("robust_students")
def test_default_keeps_the_originals_clean_headline_on_most_patches(validation_audio):
    """The default must not trade clean audio for rooms: on clean validation excerpts its headline
    genre (the engine's genre level) equals the original's on most patches (measured: 92 % of 51)."""
    from stream import EngineConfig, StreamEngine
    clean = validation_audio[:, PRE_ROLL:]
    heads = {}
    for name in ("musicnn-original", "musicnn"):
        m = ort_model(name)
        gl = StreamEngine(m, EngineConfig(music_detector=False), background=False).genre_level
        heads[name] = np.array([np.argmax(gl.scores(p)) for p in m.predict(clean)])
    assert np.mean(heads["musicnn"] == heads["musicnn-original"]) >= 0.8, heads


def test_front_lr_scales_only_the_front_convolutions_of_the_layers_trained():
    """--front-lr: the timbral and temporal convolutions learn at that share of --lr, the rest at
    --lr; layers not trained get no group and no gradient."""
    nets = list(RT.load_nets().values())
    groups = RL.param_groups(nets, "all", 1e-4, 0.1)
    front = {id(p) for n in nets for name, p in n.named_parameters() if name.startswith(("timbral", "temporal"))}
    assert [g["lr"] for g in groups] == [pytest.approx(1e-5), 1e-4]
    assert {id(p) for p in groups[0]["params"]} == front
    assert not front & {id(p) for p in groups[1]["params"]}
    assert sum(len(g["params"]) for g in groups) == sum(1 for n in nets for _ in n.parameters())
    groups = RL.param_groups(nets, "mid+back", 1e-4, 0.1)
    assert len(groups) == 1 and groups[0]["lr"] == 1e-4 and not front & {id(p) for p in groups[0]["params"]}
    assert not any(p.requires_grad for n in nets for name, p in n.named_parameters() if id(p) in front)


# ---- track-level targets and the loop (issue: beyond the teacher) ------------------------------

def fake_teacher(packages: list[str], tracks: list[str], seed: int = 0):
    rng = np.random.default_rng(seed)
    tags = load_tag_lists()
    probs = {ck: rng.uniform(0.01, 0.9, (len(tracks), len(tags[ck.split("_")[0] + "_LABELS"]))).astype(np.float32)
             for ck in RT.NETS}
    return probs, {"package": np.array(packages), "track": np.array(tracks)}, RT.family_columns(tags)


def test_track_targets_mix_the_track_mean_deterministically_and_refuse_validation_packages(request):
    if ran_in_own_process(request):
        return
    train = RD.TRAIN[0].name
    probs, patches, cols = fake_teacher([train] * 5 + [RD.TRAIN[1].name] * 3, list("aaaaabbb"))
    t1, m1 = RT.track_targets(probs, patches, cols, mix=0.7)
    t2, m2 = RT.track_targets(probs, patches, cols, mix=0.7)
    assert all(np.array_equal(t1[ck], t2[ck]) for ck in RT.NETS) and np.array_equal(m1, m2)
    p = probs["MTT_musicnn"]
    assert np.allclose(t1["MTT_musicnn"][1], 0.7 * p[:5].mean(0) + 0.3 * p[1], atol=1e-6)
    assert np.allclose(t1["MTT_musicnn"][6], 0.7 * p[5:].mean(0) + 0.3 * p[6], atol=1e-6)  # its own track only
    assert len(set(m1[:5].tolist())) == 1 and m1[0] != m1[5]  # one family margin per track
    near, _ = RT.track_targets(probs, patches, cols, mix=1.0, context=1)  # +-1 patch of the same track
    assert np.allclose(near["MTT_musicnn"][2], p[1:4].mean(0), atol=1e-6)
    assert np.allclose(near["MTT_musicnn"][5], p[5:7].mean(0), atol=1e-6)
    held = RD.VALIDATION[0].name
    probs, patches, cols = fake_teacher([train, held], ["a", "b"])
    with pytest.raises(ValueError, match=f"validation packages \\({held}\\)"):
        RT.track_targets(probs, patches, cols)


def tiny_run(tmp_path, banks, init=None, **cfg):
    """A real Trainer on 6 real patches (validation recordings standing in for a training package)."""
    audio = real_patches(6, seed=1)
    teacher = {ck: n.eval() for ck, n in RT.load_nets().items()}
    frontend = LogMel().eval()
    tags = load_tag_lists()
    patches = {"audio": audio.astype(np.float16), "package": np.array(["tiny"] * 6), "track": np.array(list("aaabbb"))}
    probs = {ck: torch.sigmoid(v).numpy() for ck, v in RT.logits_of(teacher, frontend, audio[:, PRE_ROLL:]).items()}
    targets, margin = RT.track_targets(probs, patches, RT.family_columns(tags))
    chain = RC.Chain(*banks, RC.ChainConfig(p_clean=0.0, p_codec=0.0, p_hiss=0.5))
    data = RL.Data(patches["audio"], np.ones(6), targets, margin, chain)
    clean = audio[:, PRE_ROLL:]
    val = RL.Validation(clean, clean, margin > 0, RT.top_genre(probs, tags))
    config = RL.LoopConfig(**{"batch": 4, "clean_items": 2, "eval_every": 1, "warmup": 1, **cfg})
    return RL.Trainer(teacher, frontend, data, val, tags, config, tmp_path / "run", init)


@pytest.mark.slow  # a run of the trainer, twice (resumed): the quick tier's longest test by far (~100 s)
def test_one_trainer_step_on_track_targets_lowers_the_loss_and_a_run_resumes(request, tmp_path):
    if ran_in_own_process(request):
        return
    banks = request.getfixturevalue("banks")
    tr = tiny_run(tmp_path, banks, p_mask=0.0, dropout=0.0, p_mix=0.0, lr=3e-4, steps=4)
    batch = next(iter(RL.Batches(tr.data.audio, tr.data.weights, (tr.data.margin > 0).astype(np.int8),
                                 tr.data.chain, tr.cfg, 0)))
    _, idx, partner, lam, x, clean = batch
    targets, margin = RL.batch_targets(tr.data.targets, tr.data.margin, idx, partner, lam)

    def loss():
        with torch.no_grad():
            return float(RL.distill_loss(tr.students, tr.frontend(x), targets, margin, tr.cols, 20.0))

    before = loss()
    tr.train_step(idx, partner, lam, x, clean)
    assert before > 0 and loss() < before * 0.98, (before, loss())
    best = tr.run(stop_after=2)  # the loop: two steps, a snapshot and a checkpoint at each
    assert best is not None and (tmp_path / "run" / "ema-000002.pt").exists()
    again = tiny_run(tmp_path, banks, p_mask=0.0, dropout=0.0, p_mix=0.0, lr=3e-4, steps=4)
    assert again.step == 2 and again.best["step"] == best["step"]
    # --export-only writes the best averaged weights in the checkpoint layout, loadable as the bundled pair
    assert TR.main(["--cache", str(tmp_path), "--tag", "run", "--export-only", "--out", str(tmp_path / "w")]) == 0
    from safetensors.torch import load_file

    for ck in RT.NETS:
        net = type(tr.teacher[ck])(load_file(str(tmp_path / "w" / f"{ck}.safetensors"))).eval()
        want = RL.nets_from(tr.teacher, best["nets"])[ck]
        with torch.no_grad():
            assert torch.allclose(net(tr.frontend(x)), want(tr.frontend(x)), atol=1e-4)


def test_clean_pass_learns_its_own_targets_when_given(request, tmp_path, monkeypatch):
    """--clean-mix: the clean items' loss reads `Data.clean_targets` (the teacher's patch output
    with --clean-mix 0), the degraded pass the track-level targets."""
    if ran_in_own_process(request):
        return
    banks = request.getfixturevalue("banks")
    tr = tiny_run(tmp_path, banks, p_mask=0.0, dropout=0.0, p_mix=0.0, steps=1)
    patch_only = {ck: t + 0.125 for ck, t in tr.data.targets.items()}  # distinguishable from the track targets
    tr.data.clean_targets = patch_only
    seen = []
    real = RL.distill_loss
    monkeypatch.setattr(RL, "distill_loss", lambda nets, mel, t, *a: seen.append(t) or real(nets, mel, t, *a))
    _, idx, partner, lam, x, clean = next(iter(RL.Batches(tr.data.audio, tr.data.weights, (tr.data.margin > 0).astype(np.int8),
                                                          tr.data.chain, tr.cfg, 0)))
    tr.train_step(idx, partner, lam, x, clean)
    i = idx.numpy()
    track, own = seen
    for ck in RT.NETS:
        assert np.allclose(track[ck].numpy(), tr.data.targets[ck][i])
        assert np.allclose(own[ck].numpy(), patch_only[ck][i[:len(clean)]])


def test_student_noise_masks_mixes_within_a_family_and_drops_out_only_in_training(request):
    if ran_in_own_process(request):
        return
    banks = request.getfixturevalue("banks")
    gen = torch.Generator().manual_seed(0)
    mel = torch.rand(8, 187, 96) + 1
    masked = RL.spec_mask(mel, gen, p=1.0)
    assert masked.shape == mel.shape and (masked != mel).any(dim=(1, 2)).float().mean() > 0.5
    assert torch.equal(RL.spec_mask(mel, gen, p=0.0), mel)
    family = np.array([0, 0, 0, 1, 1, 1], np.int8)
    audio = np.random.default_rng(0).standard_normal((6, PRE_ROLL + PATCH_SAMPLES)).astype(np.float16)
    cfg = RL.LoopConfig(batch=6, clean_items=0, p_mix=1.0, steps=3)
    chain = RC.Chain(*banks, RC.ChainConfig(p_clean=1.0))
    for _, idx, partner, lam, _, _ in RL.Batches(audio, np.ones(6), family, chain, cfg, 0):
        assert np.array_equal(family[idx.numpy()], family[partner.numpy()])
        assert ((lam >= 0.3) & (lam <= 0.7)).all()
    net = RT.load_nets()["MTT_musicnn"]
    RL.add_dropout(net, 0.5)
    x = torch.rand(2, 187, 96) + 1
    with torch.no_grad():
        net.eval()
        assert torch.equal(net(x), net(x))
        net.train()
        assert not torch.equal(net(x), net(x))


def test_hiss_is_white_noise_under_the_room_and_the_chain_draws_it(request):
    """The hiss condition is the room condition's reverb with white instead of pink noise (more
    energy above 4 kHz); the chain's hiss draw says so and always puts a room in front."""
    if ran_in_own_process(request):
        return
    x = RD.level(np.random.default_rng(0).standard_normal(RC.RATE * 2).astype(np.float32) * 0.0 +
                 np.sin(np.arange(RC.RATE * 2) * 2 * np.pi * 220 / RC.RATE).astype(np.float32))
    room, hiss = (RC.condition(c, x, seed=3) for c in ("room", "hiss"))
    hf = lambda y: np.abs(np.fft.rfft(y))[len(y) // 4:].sum()  # noqa: E731  (4-8 kHz)
    assert hf(hiss) > 2 * hf(room)
    chain = RC.Chain(RC.rir_bank(2, seed=1), [np.ones(100, np.float32)], RC.ChainConfig(p_clean=0.0, p_hiss=1.0))
    _, what = chain(np.resize(x, PRE_ROLL + PATCH_SAMPLES), np.random.default_rng(0))
    assert what.startswith("room, hiss@") and 5 <= int(what.split("@")[1].split("dB")[0]) <= 15, what


def test_recorded_bank_is_deterministic_unit_level_and_empty_without_recordings(request, tmp_path):
    if ran_in_own_process(request):
        return
    import soundfile as sf

    rng = np.random.default_rng(0)
    for k in range(4):
        sf.write(tmp_path / f"s{k}.wav", (rng.standard_normal(RC.RATE) * 0.1 * (k + 1)).astype(np.float32), RC.RATE)
    pkg = RD.Package("some-sounds", "none", (str(tmp_path / "*.wav"),))
    a, b = RD.recorded_bank([pkg], n=3, seconds=2.0, seed=4), RD.recorded_bank([pkg], n=3, seconds=2.0, seed=4)
    assert len(a) == 3 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(len(x) == 2 * RC.RATE and abs(RC.rms(x) - 1) < 1e-3 for x in a)
    assert RD.recorded_bank([RD.Package("none", "none", (str(tmp_path / "*.ogg"),))]) == []
    chain = RC.Chain(RC.rir_bank(1, seed=1), [np.ones(100, np.float32)], RC.ChainConfig(p_clean=0.0, p_noise=1.0),
                     recorded=a)
    kinds = {chain(np.ones(PRE_ROLL + PATCH_SAMPLES, np.float32), np.random.default_rng(s))[1] for s in range(40)}
    assert any("recorded" in k for k in kinds)


def test_taking_each_bands_floor_off_brings_hissy_music_closer_to_the_clean():
    """The floor experiment's front end (tools/train_robust.py --floor): on real music with white
    noise 10 dB below, the log-mel with each band's floor taken off is closer to the clean one's
    (same treatment) than the plain log-mels are; alpha 0 changes nothing; nothing goes below the
    kept tenth of the power."""
    import soundfile as sf

    from stream.models.musicnn.frontend import take_floor

    y, _ = sf.read(Path(__file__).parent / "data" / "musicnn" / "real.wav", dtype="float32")
    clean = y[:PATCH_SAMPLES]
    noisy = RC.add_at_snr(clean, RC.coloured_noise(len(clean), np.random.default_rng(0), 0.0), 10.0)
    lm = LogMel().eval()
    with torch.inference_mode():
        c, n = lm(torch.from_numpy(clean[None])), lm(torch.from_numpy(noisy[None].astype(np.float32)))
        plain = float((n - c).abs().mean())
        floored = float((take_floor(n, 1.0) - take_floor(c, 1.0)).abs().mean())
        assert floored < 0.85 * plain, (floored, plain)  # 0.75 on this recording
        assert torch.allclose(take_floor(c, 0.0), c, atol=1e-5 * float(c.abs().max()))
        kept = torch.log10(1000.0 * ((torch.pow(10.0, n.double()) - 1.0) / 10000.0) + 1.0).float()
        assert bool((take_floor(n, 5.0) >= kept - 1e-5).all())


def test_a_streams_floor_is_kept_over_seconds_and_its_streamed_patches_are_whole_ones():
    """The model's `floor` option live (stream/models/musicnn/floor.py): a stream's floor comes
    from its patches of the last 10 s, changes at most every 5 s, and a patch computed by the
    streaming front end equals the same patch computed whole with the same floor (the frames it
    reuses were floored alike); the floor takes something off; a bad setting is refused."""
    import soundfile as sf

    from stream.models.musicnn.floor import EVERY_S, MEMORY_S, StreamFloor
    from stream.models.musicnn.frontend import HOP, SAMPLE_RATE

    # the state alone: 1 s patches whose own floors fall, then rise
    st, levels = StreamFloor(), [5.0, 4.0, 3.0, 2.0, 1.0] + [6.0] * 15
    changed = [st.observe((k + 3) * SAMPLE_RATE, np.full(96, v)) for k, v in enumerate(levels)]
    assert [k for k, c in enumerate(changed) if c] == [0, 5, 15]  # re-estimated every 5 s only
    assert st.floor[0] == 6.0  # the 1.0 patch (k = 4) ended more than MEMORY_S before k = 15
    assert 15 - 4 > MEMORY_S and EVERY_S == 5.0
    st.observe(SAMPLE_RATE, np.full(96, 9.0))  # the stream went back: start over
    assert st.floor[0] == 9.0 and len(st.minima) == 1

    y, _ = sf.read(Path(__file__).parent / "data" / "musicnn" / "real.wav", dtype="float32")
    music = np.tile(y, 3)
    audio = RC.add_at_snr(music, RC.coloured_noise(len(music), np.random.default_rng(0), 0.0), 10.0).astype(np.float32)
    live = load_bundled("musicnn-original", backend="torch", floor=1.0)
    whole = load_bundled("musicnn-original", backend="torch", floor=1.0, streaming=False)
    plain = load_bundled("musicnn-original", backend="torch", streaming=False)
    assert live.streaming is not None and whole.streaming is None
    s_live, s_whole = live.new_stream(), whole.new_stream()
    ends = [PATCH_SAMPLES + k * SAMPLE_RATE for k in range(14)]
    ends = [e - e % HOP for e in ends]
    got = {name: np.concatenate([m.predict(audio[None, e - PATCH_SAMPLES:e], context=[(s, e)]) for e in ends])
           for name, m, s in (("live", live, s_live), ("whole", whole, s_whole))}
    assert np.abs(got["live"] - got["whole"]).max() <= 1e-4
    off = np.concatenate([plain.predict(audio[None, e - PATCH_SAMPLES:e]) for e in ends])
    assert np.abs(got["whole"] - off).max() > 1e-2
    assert np.array_equal(s_live.floor.floor, s_whole.floor.floor)
    from stream.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="floor must be between 0 .off. and 4, got -1.0. Use floor=0"):
        load_bundled("musicnn-original", backend="torch", floor=-1.0)


def test_the_lagged_training_floor_is_what_a_stream_floored_every_other_hop_hears(request):
    """tools.train_robust --floor-lag: batches keep their pre-roll (same degraded audio), and each
    patch takes its own floor or that of the audio a second earlier; a live stream with the floor
    re-estimated every 1.5 s from 0.5 s of memory takes exactly those two, hop by hop."""
    if ran_in_own_process(request):
        return
    banks = request.getfixturevalue("banks")
    from stream.models.musicnn.frontend import SAMPLE_RATE, FloorLogMel, band_floor, minus_floor

    family = np.array([0, 0, 1, 1], np.int8)
    audio = np.random.default_rng(0).standard_normal((4, PRE_ROLL + PATCH_SAMPLES)).astype(np.float16)
    cfg = RL.LoopConfig(batch=4, clean_items=2, steps=1)
    chain = RC.Chain(*banks, RC.ChainConfig(p_clean=0.0))
    cut = next(iter(RL.Batches(audio, np.ones(4), family, chain, cfg, 0)))
    full = next(iter(RL.Batches(audio, np.ones(4), family, chain, cfg, 0, pre_roll=True)))
    assert full[4].shape[1] == PRE_ROLL + PATCH_SAMPLES and torch.equal(full[4][:, PRE_ROLL:], cut[4])
    assert torch.equal(full[5][:, PRE_ROLL:], cut[5])

    lag = RL.LaggedFloorLogMel(1.0, seed=0)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((16, PRE_ROLL + PATCH_SAMPLES)).astype(np.float32))
    lm = LogMel()
    with torch.inference_mode():
        got = lag(x)
        own = FloorLogMel(1.0)(x[:, PRE_ROLL:])
        earlier = minus_floor(lm(x[:, PRE_ROLL:]), band_floor(lm(x[:, :PATCH_SAMPLES])), 1.0)
        assert torch.equal(lag(x[:, PRE_ROLL:]), own)  # a bare patch: its own floor
    is_own = [bool(torch.equal(got[i], own[i])) for i in range(16)]
    is_earlier = [bool(torch.equal(got[i], earlier[i])) for i in range(16)]
    assert all(a != b for a, b in zip(is_own, is_earlier)) and 3 <= sum(is_own) <= 13, (is_own, is_earlier)

    from stream.models.musicnn.floor import StreamFloor

    st = StreamFloor()
    ends = [PATCH_SAMPLES + k * SAMPLE_RATE for k in range(8)]
    ends = [e - e % 256 for e in ends]  # (the engine's grid: hops of 15872 or 16128 samples)
    levels = np.arange(8, 0, -1.0)
    changed = [st.observe(e, np.full(96, v), memory_s=0.5, every_s=1.5) for e, v in zip(ends, levels)]
    assert changed == [True, False] * 4


def test_students_can_start_from_other_weights_than_the_teachers(request, tmp_path):
    """tools.train_robust --init musicnn: the students (and their average) start as the shipped
    default, the teacher whose outputs are the targets stays the original pair."""
    if ran_in_own_process(request):
        return
    banks = request.getfixturevalue("banks")
    shipped = RT.load_nets(WEIGHTS_DIR / TRAINED["musicnn"])
    tr = tiny_run(tmp_path, banks, init=shipped)
    for ck, net in shipped.items():
        want = dict(net.named_parameters())
        for name, p in tr.students[ck].named_parameters():
            assert torch.equal(p, want[name]), name
        assert torch.equal(tr.ema[ck][name], want[name])
        assert not torch.equal(dict(tr.teacher[ck].named_parameters())[name], want[name])


@pytest.mark.slow  # a trainer step and an ONNX export of the wide pair
def test_a_widened_student_starts_as_the_narrow_one_trains_exports_and_runs_under_onnxruntime(request, tmp_path):
    """tools.train_robust --width 128x400 (issue 35, item 4): the wider pair computes the shipped
    default's function at the start, a trainer step moves its new units, the export loads back as the
    same function at the new width, and the engine's model runs it under ONNX Runtime as under torch."""
    if ran_in_own_process(request):
        return
    from safetensors.torch import load_file

    from stream.models.musicnn.model import MusicnnModel
    from stream.models.musicnn.nets import ARCHITECTURES, check_tensors
    from tools.robust_export import same_function
    from tools.robust_widen import widen

    shipped = RT.load_nets(WEIGHTS_DIR / TRAINED["musicnn"])
    wide = TR.widened(shipped, (128, 400), seed=0)
    for ck, net in wide.items():
        assert (net.mid[0].out_channels, net.dense.out_features) == (128, 400)
        assert same_function(net, shipped[ck]) < 1e-6, ck
    tr = tiny_run(tmp_path, request.getfixturevalue("banks"), init=wide, steps=1, p_mask=0.0, p_mix=0.0, lr=1e-3)
    tr.run()
    net = tr.students["MTT_musicnn"].eval()
    assert float(net.out.weight[:, 200:].abs().max()) > 0  # the new dense units now speak
    assert tr.best is not None  # validation ran on nets at the students' width
    RE.export({ck: n.eval() for ck, n in tr.students.items()}, tmp_path / "w", {"run": "wide-test"})
    for ck, n in tr.students.items():
        tensors = load_file(str(tmp_path / "w" / f"{ck}.safetensors"))
        assert tuple(tensors["dense/kernel"].shape) == (2 * (561 + 3 * 128), 400)
        assert same_function(ARCHITECTURES["musicnn"](tensors).eval(), n) < 1e-5
    nets = {ck: ARCHITECTURES["musicnn"](load_file(str(tmp_path / "w" / f"{ck}.safetensors")))
            for ck in ("MTT_musicnn", "MSD_musicnn")}
    x = np.stack([p[PRE_ROLL:] for p in real_patches(2, seed=4)])
    ref = MusicnnModel("wide", nets, load_tag_lists(), backend="torch").predict(x)
    fast = MusicnnModel("wide", {k: copy.deepcopy(v) for k, v in nets.items()}, load_tag_lists(), backend="onnxruntime")
    assert fast.backend == "onnxruntime", fast.kernels["MTT_musicnn"].reason
    assert np.abs(fast.predict(x) - ref).max() <= 1e-4
    # the load-time check: a width beyond the engine's bound, and a set whose shapes disagree, are refused
    t = load_file(str(WEIGHTS_DIR / "MTT_musicnn.safetensors"))
    with pytest.raises(ValueError, match="up to 256"):
        check_tensors("musicnn", widen(t, 64, 200) | {"conv2d_5/kernel": torch.zeros(7, 561, 1, 300)})
    with pytest.raises(ValueError, match="wrong shape"):
        check_tensors("musicnn", widen(t, 128, 200) | {"conv2d_6/kernel": torch.zeros(7, 64, 1, 128)})
    with pytest.raises(ValueError, match="cannot narrow"):
        widen(widen(t, 128, 400), 64, 400)
