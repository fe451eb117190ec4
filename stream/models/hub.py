"""The Hugging Face Hub, asked without transformers or torch: is it switched off, does it answer.

`load_model("auto")` asks here first, so an offline kiosk falls back to the bundled model at
once; stream/models/hf.py (which needs torch) is imported only when a checkpoint is loaded.
"""
from __future__ import annotations

import logging
import os
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

COURSE_MODEL = "sanchit-gandhi/distilhubert-finetuned-gtzan"
HUB_PROBE_TIMEOUT_S = 3.0


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """One bounded HTTP request to the Hub. The Hub client itself retries for ~30 s when
    offline, which would freeze a kiosk at start-up, so we ask first. (ok, why not): `why` is
    plain words for a screen; the error itself goes to the log."""
    import httpx  # inside: an edge (requirements-edge.txt: engine + Ray) has no httpx and never asks the Hub

    try:
        httpx.head(hub_endpoint() + "/api/models", timeout=timeout, follow_redirects=True)
        return True, ""
    except Exception as exc:
        log.info("the Hugging Face Hub at %s did not answer: %s: %s", hub_endpoint(), type(exc).__name__, exc)
        return False, f"the Hugging Face Hub ({urlsplit(hub_endpoint()).netloc}) is unreachable"
