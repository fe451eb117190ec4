"""Hugging Face `transformers` audio-classification checkpoints (Hub id or local directory).

Imports torch and transformers: `stream.models` imports this module only when such a checkpoint
is loaded (an edge with a `ray://` model has neither)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification
from transformers.models.auto.modeling_auto import MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES
from transformers.utils import logging as hf_logging

from ..errors import ModelLoadError
from .accel import accelerate
from .backends import resolve_backend, select_backend
from .base import AudioModel
from .hub import COURSE_MODEL, hub_offline, hub_reachable


def logits_module(model):
    """`model` (a transformers audio classifier) as a module of one tensor: input_values ->
    logits, the form an exporter (ONNX) takes."""

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(input_values=x).logits

    return Logits(model).eval()


class HFAudioModel(AudioModel):
    """A `AutoModelForAudioClassification` checkpoint with its feature extractor.

    Labels come from `config.id2label`. Outputs are softmax probabilities, or sigmoids when
    the checkpoint declares `problem_type="multi_label_classification"`.
    """

    default_window_s = 10.0
    default_hop_s = 1.0

    def __init__(self, model, feature_extractor, name: str, device: str = "cpu", accel: str = "auto",
                 backend: str = "auto"):
        self.torch = torch
        self.model = model.to(device).eval()
        self.fe = feature_extractor
        self.device = device
        self.name = name
        self.sample_rate = int(feature_extractor.sampling_rate)
        cfg = model.config
        self.labels = [str(cfg.id2label[i]) for i in range(cfg.num_labels)]
        self.multi_label = getattr(cfg, "problem_type", None) == "multi_label_classification"
        # the conv front end of wav2vec2/HuBERT needs at least its receptive field (400 samples)
        self.min_samples = 400
        # bf16 autocast where the CPU has native bf16 (~2x faster, probabilities within ~0.004);
        # falls back to float32 by itself. accel="off" (or STREAM_ACCEL=off) keeps plain float32.
        self.accel = accelerate(self.model, feature_extractor, mode=accel, device=device)
        self.kernel = self._float32_kernel(backend)
        self.backend = self.kernel.backend if self.kernel is not None else "torch"
        # On 2-4 cores a batch of N windows costs N single forwards while every engine waits for
        # the whole batch, so serve windows one at a time (bench/streams.py).
        self.max_batch = 1

    def _float32_kernel(self, backend: str):
        """ONNX Runtime for the float32 forward (1.8x faster than torch for a DistilHuBERT-shaped
        model, exact: stream/models/backends.py) where bf16 autocast does not run: CPUs
        without bf16, or accel="fp32". None keeps torch (accel "off" or bf16, a model whose
        feature extractor also returns an attention mask, or the self-check failed)."""
        resolved, _ = resolve_backend(backend)  # (raises for an unknown mode)
        if self.accel.mode != "fp32" or self.device != "cpu" or resolved == "torch":
            return None
        noise = np.random.default_rng(0).standard_normal(2 * self.sample_rate).astype(np.float32) * 0.1
        inputs = self.fe([noise], sampling_rate=self.sample_rate, return_tensors="pt")
        if set(inputs) != {"input_values"}:
            return None
        fwd = select_backend(logits_module(self.model), inputs["input_values"], backend,
                             multi_label=self.multi_label, dynamic_len=True)
        return fwd if fwd.backend == "onnxruntime" else None

    @property
    def compute(self) -> str:
        """How windows are computed, for the model line: "bf16", "fp32", "fp32, ONNX Runtime", "off"."""
        if self.kernel is not None and self.kernel.backend == "onnxruntime":
            return "fp32, ONNX Runtime"
        return self.accel.mode

    def predict(self, windows: np.ndarray) -> np.ndarray:
        torch = self.torch
        windows = np.asarray(windows, np.float32)
        inputs = self.fe(list(windows), sampling_rate=self.sample_rate, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        if self.kernel is not None and self.kernel.backend == "onnxruntime":
            logits = self.kernel(inputs["input_values"])  # (falls back to torch by itself on failure)
        else:
            logits = self.accel(**inputs)  # float32 logits; inference mode (and autocast) inside
        probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return probs.cpu().numpy().astype(np.float32)


def _is_local(spec: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else path-like is meant as a directory
    return spec.startswith((".", "~", "/")) or spec.count("/") > 1 or "\\" in spec


def load_hf(spec: str, device: str = "cpu", accel: str = "auto", backend: str = "auto") -> HFAudioModel:
    """Load a Hub id or a local checkpoint directory; every failure becomes a ModelLoadError."""
    hf_logging.disable_progress_bar()  # kiosk logs and the CLI's live display stay clean

    path = Path(spec).expanduser()
    local = path.exists() or _is_local(spec)
    if local:
        if not path.exists():
            raise ModelLoadError(spec, f"the directory {str(path)!r} does not exist")
        if not path.is_dir():
            raise ModelLoadError(spec, f"{str(path)!r} is a file, not a checkpoint directory")
        if not (path / "config.json").is_file():
            raise ModelLoadError(spec, f"the directory {str(path)!r} holds no checkpoint (no config.json)")
        source, kwargs = str(path), {"local_files_only": True}
    else:
        source, kwargs = spec, {}
        try:  # cached copies load without any network
            AutoConfig.from_pretrained(spec, local_files_only=True)
            kwargs = {"local_files_only": True}
        except Exception:
            if hub_offline():
                raise ModelLoadError(spec, "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set") from None
            ok, why = hub_reachable()
            if not ok:
                raise ModelLoadError(spec, why + " and the model is not in the local cache") from None
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except Exception as exc:
        raise ModelLoadError(spec, _explain(exc)) from exc
    heads = config.architectures or []
    if config.model_type not in MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES or (
            heads and not any(a.endswith(("ForSequenceClassification", "ForAudioClassification")) for a in heads)):
        raise ModelLoadError(
            spec, f"it is a {config.model_type!r} checkpoint ({', '.join(config.architectures or [])}), "
            "not an audio-classification model",
            "Use a checkpoint fine-tuned for audio classification (e.g. " + COURSE_MODEL + ")")
    try:
        model = AutoModelForAudioClassification.from_pretrained(source, **kwargs)
        fe = AutoFeatureExtractor.from_pretrained(source, **kwargs)
    except Exception as exc:
        raise ModelLoadError(spec, _explain(exc)) from exc
    if not hasattr(fe, "sampling_rate"):
        raise ModelLoadError(spec, "its preprocessor has no sampling_rate: not an audio feature extractor")
    try:
        return HFAudioModel(model, fe, name=spec, device=device, accel=accel, backend=backend)
    except ValueError as exc:  # unknown acceleration mode or backend, or onnxruntime asked for and unusable
        raise ModelLoadError(spec, str(exc), "Use accel='auto' or accel='off', backend='auto' or 'torch'",
                             fallback=None) from exc


def _explain(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "is not a valid model identifier" in str(exc) or "Repository Not Found" in str(exc) or "404" in str(exc):
        return f"no such model on the Hugging Face Hub ({text})"
    return f"{type(exc).__name__}: {text}"
