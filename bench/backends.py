#!/usr/bin/env python3
"""Exact kernels (issue 10): torch float32 vs ONNX Runtime and OpenVINO float32, per patch and
per batch size, for the bundled networks and the DistilHuBERT-shaped model.

    python -m bench.backends            # musicnn + vgg per patch at batch 1..16, DistilHuBERT 10 s
    python -m bench.backends --quick
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python -m bench.backends   # torch as on AVX2

Needs `pip install onnxruntime onnx` (and `openvino` for its column); a missing one is skipped.
Rounds are interleaved (torch, ORT, OV, torch, ...) and reported as median (min) ms per patch
or window, with the speed-up over torch in the same run and max |dp| vs torch (sigmoid for
the taggers, softmax for the DistilHuBERT-shaped model with a peaked head). The ISA caps
above only reach torch's kernels: ONNX Runtime and OpenVINO pick theirs from cpuid.
"""
from __future__ import annotations

import argparse
import io
import os
import warnings

import numpy as np

from bench import common as C

warnings.filterwarnings("ignore")


def export(module, x, dynamic_len: bool = False) -> bytes:
    import torch

    buf = io.BytesIO()
    axes = {"x": {0: "b", 1: "n"} if dynamic_len else {0: "b"}, "y": {0: "b"}}
    torch.onnx.export(module, (x,), buf, input_names=["x"], output_names=["y"], dynamic_axes=axes,
                      dynamo=False, opset_version=17)
    return buf.getvalue()


def runtimes(data: bytes, threads: int) -> dict:
    out = {}
    try:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        s = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        out["onnxruntime"] = lambda x: s.run(None, {"x": x})[0]
    except ImportError:
        pass
    try:
        import openvino as ov

        import tempfile

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.onnx")
            with open(path, "wb") as f:
                f.write(data)
            cm = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                        "INFERENCE_NUM_THREADS": threads})
        out["openvino"] = lambda x: cm(x)[0]
    except Exception:
        pass
    return out


def compare(name, module, inputs: dict, prob, repeats: int, threads: int, dynamic_len=False) -> list:
    """inputs: {label: np array}; rows: (model, input, backend, median, min, ratio, max|dp|)."""
    import torch

    first = next(iter(inputs.values()))
    rts = runtimes(export(module, torch.from_numpy(first), dynamic_len), threads)
    rows = []
    for label, x in inputs.items():
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            ref = prob(module(xt).numpy())
        cands = {"torch": lambda: module(xt)}
        for k, f in rts.items():
            cands[k] = (lambda f=f: f(x))
        with torch.inference_mode():
            t = C.interleaved(cands, repeats)
        base = C.med(t["torch"])
        per = len(x) if not dynamic_len else 1
        for k, ts in t.items():
            dp = 0.0 if k == "torch" else float(np.abs(prob(np.asarray(rts[k](x))) - ref).max())
            rows.append([name, label, k, f"{C.med(ts) / per:.1f}", f"{min(ts) / per:.1f}",
                         f"{base / C.med(ts):.2f}x", f"{dp:.1e}"])
        print("\n".join("  " + "  ".join(r) for r in rows[-len(t):]), flush=True)
    return rows


def main(argv=None) -> list:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-distilhubert", action="store_true")
    args = ap.parse_args(argv)
    repeats = 4 if args.quick else 9
    threads = torch.get_num_threads()
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "native")
    print(f"== exact backends, float32 ==\n{C.cpu_note()}; torch ISA cap: {isa}; {threads} threads; {C.load_note()}")
    from stream.models.musicnn import load_bundled

    sig = lambda z: 1 / (1 + np.exp(-z))
    rows = []
    rng = np.random.default_rng(0)
    m = load_bundled("musicnn", backend="torch")
    music = C.music_windows(3.0, per_file=2)
    patches = m.logmel(np.stack([y[: m.patch_samples] for _, y in music]))[:, :187].numpy()
    for spec, ck in (("musicnn", "MTT_musicnn"), ("vgg-mtt", "MTT_vgg")):
        net = (m if spec == "musicnn" else load_bundled(spec, backend="torch")).nets[ck]
        batches = (1, 2, 4, 8) if args.quick else (1, 2, 4, 8, 16)
        inputs = {f"batch {b}": np.ascontiguousarray(patches[rng.integers(0, len(patches), b)]) for b in batches}
        rows += compare(ck, net, inputs, sig, repeats, threads)
    if not args.no_distilhubert:
        from transformers import AutoModelForAudioClassification

        from stream.models.accel import fold_weight_norm
        from stream.models.hf import logits_module

        ckpt = C.temp_checkpoint("distilhubert", head_gain=30.0)
        hf = AutoModelForAudioClassification.from_pretrained(ckpt).eval()
        fold_weight_norm(hf)

        w = C.music_windows(10.0, per_file=1)[0][1]
        w = ((w - w.mean()) / (w.std() + 1e-7))[None].astype(np.float32)
        soft = lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)
        rows += compare("DistilHuBERT-shaped", logits_module(hf), {"10 s window": w}, soft, max(3, repeats // 2),
                        threads, dynamic_len=True)
    print()
    print(C.table(rows, ["model", "input", "backend", "median ms per patch/window", "min ms", "speed-up vs torch",
                         "max |dp|"]))
    return rows


if __name__ == "__main__":
    main()
