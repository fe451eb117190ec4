"""Bundled offline music tagger: PyTorch port of musicnn 0.1.0 (Pons & Serra, ISC license).

    from stream.models.musicnn import load_bundled
    model = load_bundled("musicnn")          # MTT + MSD musicnn merged
    probs = model.predict(windows)           # (B, N) float32 @ 16 kHz -> (B, len(labels))

Weights: ``weights/*.safetensors`` (TF names and layouts), converted from the musicnn
wheel by ``tools/convert_musicnn.py``; see ``weights/README.md`` and ``weights/LICENSE``.
"""
from .model import GENRE_TAGS, SPECS, MusicnnModel, load_bundled

__all__ = ["MusicnnModel", "load_bundled", "SPECS", "GENRE_TAGS"]
