#!/usr/bin/env python3
"""Model forward on one 10 s window: speed of each acceleration candidate, and accuracy.

    python -m bench.forward            # ~4 min on 2 busy cores
    python -m bench.forward --quick    # fewer repeats and windows (~1.5 min)
    python -m bench.forward --onnx     # + ONNX Runtime fp32 / int8-static (pip install onnxruntime onnx)
    python -m bench.forward --compile  # + torch.compile (bf16); compiling takes ~1 min

Speed: DistilHuBERT-shaped classifier (2 layers, hidden 768, default conv front end, random
weights = the course model's compute) on a 10 s window at 16 kHz, input already normalised,
batch 1. Candidates run interleaved (A, B, C, A, B, C...) so background load hits all alike;
figures are medians and ratios to "off" (float32 as loaded) measured in the same run; the
minimum (best of the run) estimates a quiet machine.

Accuracy: max |p_candidate - p_fp32| over real music windows (/usr/share/games/asc/music,
10 s windows spread over each file) and whether the leading label changed, for
  - the tests' tiny HuBERT checkpoint (random weights),
  - the DistilHuBERT-shaped model with a 30x classifier head (random weights; the larger
    head gives peaked outputs, 0.4-0.8 for the leader, so differences are not hidden in a
    near-uniform softmax),
  - the bundled MusiCNN tagger (trained weights) with its two networks under bf16 autocast.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np

from bench import common as C

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _norm(w: np.ndarray):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(w, np.float32)).reshape(1, -1)
    return (x - x.mean()) / torch.sqrt(x.var() + 1e-7)


def _onnx_sessions(torch_model, x, calib: list, int8: bool):
    """(fp32 session, int8 static QDQ session or None); None, None if onnxruntime is missing."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None, None
    import torch

    d = tempfile.mkdtemp(prefix="bench_onnx_")
    path = os.path.join(d, "model.onnx")
    with torch.no_grad():
        torch.onnx.export(torch_model, (x,), path, input_names=["input_values"], output_names=["logits"],
                          dynamic_axes={"input_values": {0: "batch", 1: "samples"}}, opset_version=17, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    fp32 = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    q = None
    if int8:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter([{"input_values": c.numpy()} for c in calib])

            def get_next(self):
                return next(self.it, None)

        qpath = os.path.join(d, "model.int8.onnx")
        quantize_static(path, qpath, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "MatMul"], per_channel=True)
        q = ort.InferenceSession(qpath, so, providers=["CPUExecutionProvider"])
    return fp32, q


def build_candidates(ckpt: str, args, calib: list) -> dict:
    """{name: forward(x) -> float32 logits tensor}; each holds its own copy of the model."""
    import torch
    from transformers import HubertForSequenceClassification

    from stream.models.accel import accelerate

    def fresh():
        return HubertForSequenceClassification.from_pretrained(ckpt).eval()

    cands = {}
    off = accelerate(fresh(), mode="off")
    cands["off (fp32 as loaded)"] = lambda x: off(input_values=x)
    fp = accelerate(fresh(), mode="fp32")
    cands["fp32 + folded weight norm"] = lambda x: fp(input_values=x)
    def one_thread(fwd):
        def run(x):
            n = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return fwd(input_values=x)
            finally:
                torch.set_num_threads(n)
        return run

    bf = accelerate(fresh(), mode="bf16")
    if bf.mode == "bf16":
        cands["bf16 autocast (accel auto)"] = lambda x: bf(input_values=x)
        cands["bf16, 1 thread"] = one_thread(bf)
    else:
        print(f"  (bf16 not measured: {bf.reason})")
    cands["fp32, 1 thread"] = one_thread(off)
    m8 = fresh()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q8 = torch.ao.quantization.quantize_dynamic(m8, {torch.nn.Linear}, dtype=torch.qint8)
    dq = accelerate(q8, mode="off")
    cands["torch int8 dynamic (Linear)"] = lambda x: dq(input_values=x)
    if args.onnx:
        s32, s8 = _onnx_sessions(fresh(), calib[0], calib, int8=True)
        if s32 is None:
            print("  (onnxruntime not installed: ONNX candidates skipped)")
        else:
            cands["ONNX Runtime fp32"] = lambda x: torch.from_numpy(s32.run(None, {"input_values": x.numpy()})[0])
            cands["ONNX Runtime int8 static"] = lambda x: torch.from_numpy(s8.run(None, {"input_values": x.numpy()})[0])
    if args.compile:
        cm = torch.compile(accelerate(fresh(), mode="fp32").model, dynamic=False)
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            cm(input_values=calib[0])
        print(f"  torch.compile: first call (compilation) {time.perf_counter() - t0:.0f} s")

        def comp(x):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return cm(input_values=x).logits.float()

        cands["torch.compile + bf16"] = comp
    return cands


def speed(cands: dict, x, repeats: int) -> list:
    fns = {k: (lambda f=f: f(x)) for k, f in cands.items()}
    t = C.interleaved(fns, repeats=repeats, warmup=1)
    base = C.med(t["off (fp32 as loaded)"])
    return [[k, f"{C.med(v):.0f}", f"{min(v):.0f}", f"{C.med(v) / base:.2f}", f"{base / C.med(v):.2f}x"]
            for k, v in t.items()]


def accuracy(cands: dict, windows: list) -> dict:
    import torch

    worst = {k: [0.0, 0] for k in cands}
    for _, w in windows:
        x = _norm(w)
        ref = torch.softmax(cands["off (fp32 as loaded)"](x), -1)
        for k, f in cands.items():
            if ", 1 thread" in k:  # same numbers as its 2-thread twin
                continue
            p = torch.softmax(f(x), -1)
            worst[k][0] = max(worst[k][0], float((p - ref).abs().max()))
            worst[k][1] += int(p.argmax() != ref.argmax())
    return worst


def tiny_accuracy(windows: list) -> list:
    import torch
    from transformers import HubertForSequenceClassification

    from stream.models.accel import accelerate

    ckpt = C.temp_checkpoint("tiny")
    ref = accelerate(HubertForSequenceClassification.from_pretrained(ckpt).eval(), mode="off")
    rows = []
    for mode in ("fp32", "bf16"):
        acc = accelerate(HubertForSequenceClassification.from_pretrained(ckpt).eval(), mode=mode, check=False)
        dmax, flips = 0.0, 0
        for _, w in windows:
            x = _norm(w)
            a, b = torch.softmax(ref(input_values=x), -1), torch.softmax(acc(input_values=x), -1)
            dmax = max(dmax, float((a - b).abs().max()))
            flips += int(a.argmax() != b.argmax())
        rows.append(["tiny HuBERT checkpoint", acc.mode, len(windows), f"{dmax:.1e}", flips])
    return rows


def musicnn_rows(windows_9s: list, repeats: int) -> list:
    """The bundled (trained) MusiCNN: bf16 autocast on its two networks vs float32."""
    try:
        from stream.models.musicnn import load_bundled
    except Exception as exc:  # not there yet
        return [["bundled MusiCNN", f"unavailable ({type(exc).__name__})", "", "", "", ""]]
    from stream.models.accel import accelerate

    ref, fast = load_bundled("musicnn"), load_bundled("musicnn")
    fast.nets = {k: accelerate(n, mode="bf16", check=False) for k, n in fast.nets.items()}
    if any(n.mode != "bf16" for n in fast.nets.values()):
        return [["bundled MusiCNN", "bf16 unsupported here", "", "", "", ""]]
    lab = np.array(ref.labels)
    genre = np.array([l in set(ref.default_labels) for l in ref.labels])
    dmax, flips_all, flips_genre = 0.0, 0, 0
    for _, w in windows_9s:
        a, b = ref.predict(w[None])[0], fast.predict(w[None])[0]
        dmax = max(dmax, float(np.abs(a - b).max()))
        flips_all += int(a.argmax() != b.argmax())
        flips_genre += int(lab[genre][a[genre].argmax()] != lab[genre][b[genre].argmax()])
    x = windows_9s[0][1][None]
    t = C.interleaved({"fp32": lambda: ref.predict(x), "bf16": lambda: fast.predict(x)}, repeats=repeats)
    return [["bundled MusiCNN (trained), 9 s", "bf16", len(windows_9s), f"{dmax:.4f}",
             f"{flips_all} (genre view {flips_genre})",
             f"{C.med(t['fp32']):.0f} -> {C.med(t['bf16']):.0f} ms ({C.med(t['bf16']) / C.med(t['fp32']):.2f})"]]


def batch_rows(ckpt: str, repeats: int) -> list:
    """Per-window cost at batch 1, 2, 4 (bf16 if supported): does batching help?"""
    import torch
    from transformers import HubertForSequenceClassification

    from stream.models.accel import accelerate

    acc = accelerate(HubertForSequenceClassification.from_pretrained(ckpt).eval(), mode="auto", check=False)
    xs = {b: torch.randn(b, 160000) for b in (1, 2, 4)}
    t = C.interleaved({b: (lambda x=x: acc(input_values=x)) for b, x in xs.items()}, repeats=repeats)
    base = C.med(t[1])
    return [[f"batch {b} ({acc.mode})", f"{C.med(v):.0f}", f"{C.med(v) / b:.0f}", f"{C.med(v) / b / base:.2f}"]
            for b, v in t.items()]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--onnx", action="store_true", help="also ONNX Runtime fp32 and int8 static (needs onnxruntime)")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (slow to compile)")
    ap.add_argument("--no-batch", action="store_true")
    args = ap.parse_args(argv)
    import torch

    repeats = args.repeats or (4 if args.quick else 9)
    print(f"== forward: one 10 s window, DistilHuBERT-shaped ==\n{C.cpu_note()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {C.load_note()}")
    windows = C.music_windows(10.0, per_file=2 if args.quick else 4)
    print(f"real music windows: {len(windows)} ({', '.join(n for n, _ in windows[:3])}, ...)")
    ckpt = C.temp_checkpoint("distilhubert", head_gain=30.0)
    calib = [_norm(w) for _, w in windows[: 3]]
    cands = build_candidates(ckpt, args, calib)
    rows = speed(cands, calib[0], repeats)
    print(f"\nspeed ({repeats} interleaved rounds; ratio = median / median of 'off'):")
    print(C.table(rows, ["candidate", "median ms", "min ms", "ratio", "speed-up"]))
    acc = accuracy(cands, windows)
    print(f"\naccuracy vs float32 on {len(windows)} real-music windows (DistilHuBERT-shaped, 30x head):")
    print(C.table([[k, f"{v[0]:.4f}", v[1]] for k, v in acc.items() if ", 1 thread" not in k], ["candidate", "max |dp|", "label flips"]))
    arows = tiny_accuracy(windows)
    w9 = [(n, w[: 9 * C.RATE]) for n, w in windows]
    mrows = musicnn_rows(w9, repeats=max(3, repeats // 2))
    print("\naccuracy of the engine's modes on other models (real music):")
    print(C.table([r + ["", ""][: 6 - len(r)] if len(r) < 6 else r for r in arows + mrows],
                  ["model", "mode", "windows", "max |dp|", "label flips", "speed fp32 -> bf16"]))
    brows = []
    if not args.no_batch:
        brows = batch_rows(ckpt, repeats=max(3, repeats // 2))
        print("\nbatching (10 s windows, random input):")
        print(C.table(brows, ["batch", "ms per call", "ms per window", "ratio per window"]))
    return {"speed": rows, "accuracy": acc, "other": arows + mrows, "batch": brows}


if __name__ == "__main__":
    main()
