"""Model loading: one entry point for Hub ids, local checkpoints and the bundled model."""
from __future__ import annotations

import logging
import os

from ..errors import ModelLoadError
from .base import AudioModel
from .hub import COURSE_MODEL, hub_offline, hub_reachable
from .remote import load_remote

log = logging.getLogger(__name__)

BUNDLED = "musicnn"
BUNDLED_PREFIXES = ("musicnn", "vgg-")


# Inside functions below: the model libraries (torch, transformers) are imported only for the model
# that is loaded, so `import stream.models` and a `ray://` edge need neither (requirements-edge.txt).
def _load_bundled(spec: str, device: str) -> AudioModel:
    from .musicnn import load_bundled  # inside: torch

    return load_bundled(spec, device=device)


def _load_hf(spec: str, device: str, accel: str) -> AudioModel:
    from .hf import load_hf  # inside: torch and transformers

    return load_hf(spec, device, accel)


def _course_cached() -> bool:
    try:
        from transformers import AutoConfig  # inside: transformers (torch)

        AutoConfig.from_pretrained(COURSE_MODEL, local_files_only=True)
        return True
    except Exception:
        return False


def _load_auto(device: str, accel: str) -> AudioModel:
    if _course_cached():
        try:
            model = _load_hf(COURSE_MODEL, device, accel)
            model.notice = f"Model: {COURSE_MODEL} (course model, from the local cache; {model.compute})."
            return model
        except ModelLoadError as exc:  # e.g. an interrupted download left only config.json
            log.info("the cached course model did not load: %s", exc)  # (the details: the log's, not the screen's)
            why = "the cached course model is incomplete"
    elif hub_offline():
        why = "HF_HUB_OFFLINE is set and the course model is not cached"
    else:
        ok, why = hub_reachable()
        if ok:
            try:
                model = _load_hf(COURSE_MODEL, device, accel)
                model.notice = f"Model: {COURSE_MODEL} (course model, from the Hugging Face Hub; {model.compute})."
                return model
            except ModelLoadError as exc:
                log.info("the course model did not load from the Hub: %s", exc)
                why = "the course model could not be loaded from the Hugging Face Hub"
    model = _load_bundled(BUNDLED, device)
    model.notice = f"Model: bundled offline {model.name} ({why})."
    log.info(model.notice)  # the normal offline case, not a problem: the caller shows model.notice
    return model


def load_model(spec="auto", *, device: str = "cpu", accel: str = "auto") -> AudioModel:
    """Turn `spec` into a ready `AudioModel`.

    spec:
      "auto"        the course model (DistilHuBERT fine-tuned on GTZAN) when it is cached or
                    the Hub answers within a few seconds, else the bundled offline MusiCNN
                    tagger; `model.notice` says which and why (also logged at INFO). Never
                    hangs on a dead network.
      "musicnn"...  the bundled offline model (no network at all).
      a Hub id      e.g. "sanchit-gandhi/distilhubert-finetuned-gtzan" (cached, or downloaded).
      a directory   a local checkpoint saved with `save_pretrained` (+ its feature extractor).
      "ray://APP[@ADDRESS]"  a model served by Ray Serve (`genre-serve-ray`): windows
                    are classified by its replicas; the engine stays local. ADDRESS (HOST:6379)
                    defaults to RAY_ADDRESS, else the Ray running on this machine. Needs the
                    `serve` extra.
      an AudioModel returned as is.
    accel: "auto" runs transformers checkpoints under bf16 autocast where the CPU supports it
      natively (about 2x faster; probabilities within ~0.004 of float32, checked at load), else
      float32; "off" (or env STREAM_ACCEL=off) forces plain float32. The bundled model always
      runs float32 (bf16 does not speed it up).
    `model.notice` is always set: one line naming the model (and, for "auto", why), for front
    ends to show as it is.
    Raises ModelLoadError naming the spec, the cause and what to do.
    """
    if isinstance(spec, AudioModel):
        if not spec.notice:
            spec.notice = f"Model: {spec.name}."
        return spec
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(spec, "a model spec must be a non-empty string (Hub id, directory, 'musicnn' or 'auto')")
    spec = spec.strip()
    if spec == "auto":
        return _load_auto(device, accel)
    if spec.lower().startswith("ray://"):
        return load_remote(spec)
    if spec.lower().startswith(BUNDLED_PREFIXES) and not os.path.exists(spec):
        model = _load_bundled(spec.lower(), device)
        model.notice = f"Model: bundled offline {model.name}."
        return model
    model = _load_hf(spec, device, accel)
    model.notice = f"Model: {model.name} ({model.compute})."
    return model


__all__ = ["AudioModel", "load_model", "ModelLoadError", "COURSE_MODEL", "BUNDLED"]
