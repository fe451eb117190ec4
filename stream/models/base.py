"""The interface every model backend implements, so the engine never cares where scores come from."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class AudioModel(ABC):
    """A classifier of fixed-rate mono float32 windows.

    Attributes
    ----------
    name: human-readable model id (Hub id, directory or bundled name).
    sample_rate: rate the windows passed to `predict` must have (the engine resamples to it).
    labels: output label names in output order, read from the checkpoint (never hard-coded).
    multi_label: True when outputs are independent sigmoids (taggers), False for a softmax.
    default_labels: the labels shown by default (e.g. a genre view of a tagger); None = all.
    default_window_s / default_hop_s: window and hop that suit this model (used when the
        engine config leaves them unset).
    min_samples: the shortest window `predict` accepts.
    notice: one line saying which model is in use (and for "auto" why); `load_model` always sets it.
    genres: {label: genre} placing labels (styles) under top-level genres, in the genres'
        order (stream/genres.py); None (the default): the labels are genres themselves.
    patch_samples: optional capability. A model whose window score is the mean of the scores
        of fixed-length patches sets it to the patch length; `predict` on windows of exactly
        that length must return one patch's probabilities. The engine may then score each
        hop's new patch once and average it with earlier ones (EngineConfig.patch_reuse).
        None (the default, e.g. Hugging Face checkpoints): windows are always scored whole.
    patch_grid: optional, for patch-scoring models: the engine cuts each live patch to end on a
        multiple of `patch_grid` stream samples (the newest at most that much before the hop).
    new_stream(): optional, for a model that keeps per-stream state (a streaming front end): the
        engine keeps what it returns per stream (None: nothing to keep; a new one on reset) and
        calls ``predict(patches, context=[(state, end sample), ...])``, one entry per row, when
        its hop is at most `max_stream_step` samples. The result must be what `predict` gives
        the same patch without a context.
    """

    name: str = "model"
    sample_rate: int = 16000
    labels: list[str] = []
    multi_label: bool = False
    default_labels: list[str] | None = None
    default_window_s: float = 10.0
    default_hop_s: float = 1.0
    min_samples: int = 400
    notice: str | None = None
    patch_samples: int | None = None
    patch_grid: int | None = None
    max_stream_step: int = 0
    genres: dict[str, str] | None = None

    @abstractmethod
    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Classify a batch.

        windows: float32 array ``(batch, n_samples)`` at `sample_rate`, all the same length.
        Returns float32 probabilities ``(batch, len(labels))``: softmax for single-label
        checkpoints, sigmoid for multi-label ones.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.sample_rate} Hz, {len(self.labels)} labels>"
