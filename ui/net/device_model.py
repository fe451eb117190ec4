"""The kiosk's device mode: the bundled model as files a browser runs itself (onnxruntime-web).

    files = device_files(model, settings.engine)   # {name: bytes}: logmel.onnx, <net>.onnx, model.json

- ``logmel.onnx``: one 2.976 s patch of 16 kHz audio ``(B, 47616)`` -> log-mel ``(B, 187, 96)``,
  written with ONNX's STFT op: the same zero-padded centred periodic-Hann STFT, Slaney mel bank and
  ``log10(10000 * mel + 1)`` as stream/models/musicnn/frontend.py (in float32, where the Python front
  end runs its FFT in float64: within ~2e-6, tests/test_kiosk_device.py).
- ``<checkpoint>.onnx``: each network in float32, the graph the server runs under ONNX Runtime
  (stream/models/backends.py exports and caches it; where the CPU has bf16 the server runs it in bf16
  under OpenVINO instead, checked against float32 at load): page and server agree by construction.
- ``model.json``: what the page's engine needs to mirror stream/: labels, how the networks' tags
  merge, the visible labels, the genre level and the engine settings the server would use.

Every graph is saved with IR version 8 (opset 17): onnxruntime-web refuses newer IR versions.
"""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np

from stream.config import EngineConfig
from stream.engine import StreamEngine
from stream.presence_head import TRACKER_SETTINGS, PresenceHead
from stream.models.musicnn.frontend import HOP, N_FFT, PATCH_FRAMES, PATCH_SAMPLES, SAMPLE_RATE, mel_basis

FRONTEND_FILE = "logmel.onnx"
MANIFEST_FILE = "model.json"
IR_VERSION = 8  # onnxruntime-web 1.31 loads IR <= 10; opset 17 needs IR >= 8
OPSET = 17  # STFT appeared in opset 17


class DeviceModeUnavailable(ValueError):
    """The server's model cannot run on a device (not the bundled MusiCNN)."""


def frontend_graph() -> bytes:
    """The log-mel front end of one patch as a serialised ONNX model (see the module docstring)."""
    import onnx  # inside: optional (only device mode needs it), as for stream/models/backends.py
    from onnx import TensorProto, helper, numpy_helper  # inside: as above

    n = np.arange(N_FFT, dtype=np.float64)
    window = 0.5 - 0.5 * np.cos(2 * math.pi * n / N_FFT)  # periodic Hann, float64
    consts = {
        "pads": np.array([0, N_FFT // 2, 0, N_FFT // 2], np.int64),  # centre=True, zero padding
        "window": window,
        "frame_step": np.array(HOP, np.int64),
        "frame_length": np.array(N_FFT, np.int64),
        "last": np.array([-1], np.int64),
        "mel_t": np.ascontiguousarray(mel_basis().T),  # (257, 96) float32
        "scale": np.array(10000.0, np.float32),
        "one": np.array(1.0, np.float32),
        "inv_ln10": np.array(1.0 / math.log(10.0), np.float32),
    }
    nodes = [
        # the FFT in float64, rounded to float32 before squaring, as the Python front end does
        helper.make_node("Cast", ["audio"], ["audio64"], to=TensorProto.DOUBLE),
        helper.make_node("Pad", ["audio64", "pads"], ["padded"], mode="constant"),
        helper.make_node("Unsqueeze", ["padded", "last"], ["signal"]),  # (B, N + 512, 1): real signal
        helper.make_node("STFT", ["signal", "frame_step", "window", "frame_length"], ["spec64"], onesided=1),
        helper.make_node("Cast", ["spec64"], ["spec"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["spec", "spec"], ["sq"]),  # (B, 187, 257, 2): re^2, im^2
        helper.make_node("ReduceSum", ["sq", "last"], ["power"], keepdims=0),  # (B, 187, 257)
        helper.make_node("MatMul", ["power", "mel_t"], ["mel"]),  # (B, 187, 96)
        helper.make_node("Mul", ["mel", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "one"], ["shifted"]),
        helper.make_node("Log", ["shifted"], ["ln"]),
        helper.make_node("Mul", ["ln", "inv_ln10"], ["logmel"]),
    ]
    graph = helper.make_graph(
        nodes, "musicnn_logmel",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", PATCH_SAMPLES])],
        [helper.make_tensor_value_info("logmel", TensorProto.FLOAT, ["batch", PATCH_FRAMES, mel_basis().shape[0]])],
        initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="live-genre")
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _net_graph(net) -> bytes:
    """A network's graph as the server's ONNX Runtime backend runs it (input x, output y)."""
    import onnx  # inside: optional, as above
    import torch  # inside: seconds to import; the kiosk router imports this module

    from stream.models.backends import _export  # inside: pulls in torch

    data = _export(net, torch.zeros(1, PATCH_FRAMES, 96))
    proto = onnx.load_from_string(data)
    if proto.ir_version > 10:  # a newer exporter: pin it back (opset 17 runs under IR 8)
        proto.ir_version = IR_VERSION
        data = proto.SerializeToString()
    return data


def manifest(model, config: EngineConfig | None = None) -> dict:
    """What the page's engine needs (JSON-ready): the model's labels and merge, the engine's
    visible labels, genre level and settings, exactly as a server-side StreamEngine has them."""
    if not hasattr(model, "nets") or not hasattr(model, "raw_labels") or getattr(model, "patch_samples", None) != PATCH_SAMPLES:
        raise DeviceModeUnavailable(
            f"device mode runs the bundled MusiCNN models only; this server runs {getattr(model, 'name', model)!r}. "
            "Start it with --model musicnn (or another bundled musicnn spec).")
    engine = StreamEngine(model, config, background=False)
    try:
        c = engine.config
        gl = engine.genre_level
        visible = [int(i) for i in engine._visible]
        index = {l: i for i, l in enumerate(model.labels)}
        counts = np.zeros(len(model.labels))
        nets = []
        for ckpt, raw in model.raw_labels.items():
            cols = [index[l.strip().lower()] for l in raw]
            counts[cols] += 1
            nets.append({"name": ckpt, "file": f"{ckpt}.onnx", "columns": cols})
        info = {
            "model": model.name,
            "sample_rate": SAMPLE_RATE,
            "patch_samples": PATCH_SAMPLES,
            "patch_grid": model.patch_grid,  # patches end on the frame grid, as the server's engine cuts them
            "patch_frames": PATCH_FRAMES,
            "frontend": FRONTEND_FILE,
            "nets": nets,
            "labels": list(model.labels),
            "counts": [int(x) for x in counts],  # networks feeding each label: their probabilities are averaged
            "visible": visible,
            "genres": list(gl.genres),
            "members": [[int(i) for i in m] for m in gl.members],
            "pool": gl.pool,
            "engine": {"window_s": c.window_s, "hop_s": c.hop_s, "min_window_s": c.min_window_s,
                       "smoothing_s": c.smoothing_s, "change_s": c.change_s, "silence_dbfs": c.silence_dbfs,
                       "top_k": c.top_k, "switch_margin": c.switch_margin, "patch_reuse": c.patch_reuse},
        }
        if engine._presence is not None:  # the engine says "no music": the page does, with the presence head
            info["presence"] = presence_manifest(engine._presence)
        return info
    finally:
        engine.close()


def presence_manifest(tracker) -> dict:
    """The presence head's numbers (stream/presence_head.py) and the server's hysteresis settings,
    less what needs a talk signal (TRACKER_SETTINGS)."""
    head = PresenceHead.load()
    return {**head.to_json(), "tracker": {"off_s": tracker.off_s, "on_s": tracker.on_s, "tau_s": tracker.tau_s,
                                          "threshold": tracker.threshold, "keep_threshold": tracker.keep_threshold,
                                          "talk_threshold": tracker.talk_threshold,
                                          "pause_weight": tracker.pause_weight, **TRACKER_SETTINGS}}


def device_files(model, config: EngineConfig | None = None) -> dict[str, bytes]:
    """{file name: bytes}: the front end, each network and model.json (with a `version` hash of
    the graphs, so a browser's cache of an older model is never mixed with a new one)."""
    info = manifest(model, config)
    files = {FRONTEND_FILE: frontend_graph()}
    for entry in info["nets"]:
        files[entry["file"]] = _net_graph(model.nets[entry["name"]])
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode())
        h.update(files[name])
    info["version"] = h.hexdigest()[:16]
    files[MANIFEST_FILE] = json.dumps(info, indent=1).encode()
    return files
