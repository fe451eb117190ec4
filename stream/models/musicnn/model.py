"""`MusicnnModel`: the bundled offline tagger (musicnn 0.1.0 weights, ISC) as an `AudioModel`."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ...errors import ModelLoadError
from ...genres import load_genre_file
from ...registry import BUNDLED
from ..backends import Forward, select_backend
from ..base import AudioModel
from .floor import EVERY_S as FLOOR_EVERY_S
from .floor import MEMORY_S as FLOOR_MEMORY_S
from .floor import alpha_error
from .frontend import HOP, PATCH_FRAMES, PATCH_SAMPLES, SAMPLE_RATE, LogMel, band_floor, minus_floor, patch_starts
from .nets import ARCHITECTURES
from .streaming import NEW, StreamFrames, StreamingFront

PACKAGE_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = PACKAGE_DIR / "weights"
TAGS_PATH = PACKAGE_DIR / "tags.json"
GENRES_PATH = PACKAGE_DIR / "genres.json"  # each genre tag's top-level genre (and why, where arguable)

# spec -> checkpoints it runs, and the specs whose weights are not the converted originals: spec ->
# folder under weights/ (a model card beside them); both from the one list of models (stream/registry.py).
# "musicnn" is the track-target student of tools/train_robust.py (weights/track/MODEL_CARD.md);
# "musicnn-original" the converted upstream pair, its teacher; "musicnn-room" the first student.
SPECS: dict[str, tuple[str, ...]] = {name: b.checkpoints for name, b in BUNDLED.items()}
TRAINED: dict[str, str] = {name: b.weights for name, b in BUNDLED.items() if b.weights}

# Tags (display form, lower case) that name a genre or style. The genre view is this set
# *intersected with the tags the loaded checkpoints really output*, so a label is never
# invented. Left out on purpose: eras ("00s", "oldies"), moods ("mellow", "chill", "sad"),
# voices/instruments ("female vocalists", "guitar", "choral", "acoustic",
# "instrumental"), and ambiguous tags ("classic": classical or classic rock?; "indian":
# mostly sitar/instrument tags in MagnaTagATune).
GENRE_TAGS = frozenset({
    "rock", "pop", "alternative", "indie", "electronic", "dance", "alternative rock", "jazz",
    "metal", "chillout", "classic rock", "soul", "indie rock", "electronica", "folk", "punk",
    "blues", "hard rock", "ambient", "hip-hop", "country", "funk", "electro", "heavy metal",
    "progressive rock", "rnb", "indie pop", "house", "experimental", "easy listening",
    "classical", "techno", "opera", "new age",
})


def display_name(tag: str) -> str:
    """The label shown to users: lower case, so "Hip-Hop"/"House" read like the other tags
    and tags from the two datasets merge case-insensitively."""
    return tag.strip().lower()


def load_tag_lists(path: Path = TAGS_PATH) -> dict[str, list[str]]:
    """{"MTT_LABELS": [...], "MSD_LABELS": [...]} in logit order, as shipped by musicnn."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class MusicnnModel(AudioModel):
    """musicnn tagger(s) behind the engine's `AudioModel` interface.

    One or more checkpoints (e.g. MagnaTagATune and Million Song Dataset musicnn) share
    one front end. Their tag sets are merged by `display_name`; a tag output by several
    checkpoints gets the *mean* of their probabilities (a simple two-model ensemble; the
    datasets tag differently, so neither model's value is preferred), a tag output by
    one keeps that model's probability. Display names are lower case ("Hip-Hop" ->
    "hip-hop"); the original spellings are in `raw_labels`.

    Windows and patches
    -------------------
    The networks see fixed 3 s patches (187 frames of 16 ms). A window is cut into
    non-overlapping patches and the per-patch sigmoid probabilities are averaged (as the
    upstream tagger averages its taggram). A longer window averages more patches: steadier
    tags, but it reacts later to a change of music and costs proportionally more per hop.
    The default 9 s window holds 3 patches: after a change of music the newest patch
    (1/3 of the average) is all new after ~3 s and the whole window after 9 s; a 6 s
    window (2 patches) would react faster but be noisier. With the 1 s hop that costs
    3 patch forwards per checkpoint per second (see bench/musicnn.py for timings).

    Live, the engine scores one new patch per hop instead (`patch_samples`, EngineConfig.
    patch_reuse): the patches of a window then end on hop boundaries, spaced by the patch
    length rounded to whole hops (3 s at a 1 s hop), and each is scored once, on its own
    2.976 s of audio (its first and last frame see zero padding, like the edges of a window),
    and averaged with the window's earlier patches. `predict` on a whole window (files, the
    engine with patch_reuse=False) cuts its patches back to back from the newest frame, so
    the older patches sit a few ms away from the grid's; on real music the two readouts
    differ by about as much as one window scored 8 ms earlier or later (bench/streams.py
    --quality).

    With ``align="end"`` (default) the patches are anchored at the newest frame, so the
    leftover (< 3 s) is dropped from the *oldest* audio; ``align="start"`` is upstream's
    behaviour (drop the newest). Windows shorter than one patch (`min_samples`, 2.976 s)
    are still accepted: their frames are repeated to fill one patch ("repeat-pad", the
    training-time ``pad_short`` setting in the checkpoint's config.json). Quality drops
    for very short inputs; the engine should normally wait for `min_samples`.
    """

    sample_rate = SAMPLE_RATE
    multi_label = True
    default_window_s = 9.0
    default_hop_s = 1.0
    min_samples = PATCH_SAMPLES
    patch_samples = PATCH_SAMPLES  # predict() on exactly this many samples scores one patch
    # Patches per network call. Under torch, per-patch CPU time rises beyond ~2 patches per
    # call as the activations fall out of cache (2 threads: ~10 ms/patch for 1-2, 13 for
    # 4, 20+ for 8-16); ONNX Runtime's stays flat, so it takes bigger calls (set in
    # __init__; `python bench/backends.py`). Also bounds memory (~9 MB per patch and branch).
    max_patches_per_forward = 2
    # Engines' jobs per worker call: live, each is one new patch, so up to 64 streams due at once
    # share one predict call (the kernels cut it into the few batch shapes they run, Forward.chunk:
    # per patch ONNX Runtime and OpenVINO cost the same at 1 or 4 rows, so a bigger call only saves
    # per-call overhead; at ~10 ms per patch 64 patches still come back within the hop).
    max_batch = 64
    # Live patches end on multiples of this (stream samples): the STFT's frame grid, so that a stream's
    # patches share their frames (streaming.py), and every face (page, Ray edge) cuts the same audio.
    patch_grid = HOP
    max_stream_step = NEW * HOP  # samples: live patches further apart than this are computed whole

    def __init__(self, name: str, checkpoints: dict[str, torch.nn.Module], tag_lists: dict[str, list[str]],
                 device: str | torch.device = "cpu", align: str = "end", backend: str = "auto",
                 streaming: bool = True, floor: float = 0.0) -> None:
        if align not in ("start", "end"):
            raise ValueError(f"align must be 'start' or 'end', got {align!r}")
        if alpha_error(floor):
            raise ValueError(alpha_error(floor))
        self.floor = float(floor)
        self.floor_memory_s, self.floor_every_s = FLOOR_MEMORY_S, FLOOR_EVERY_S  # (floor.py; bench.robust varies them)
        self.name = name
        self.align = align
        self.device = torch.device(device)
        self.frontend = LogMel().to(self.device).eval()
        self.nets = {k: net.to(self.device).eval() for k, net in checkpoints.items()}
        labels: list[str] = []
        index: dict[str, int] = {}
        self.raw_labels: dict[str, list[str]] = {}
        columns: dict[str, list[int]] = {}
        for ckpt in self.nets:
            raw = tag_lists[ckpt.split("_", 1)[0] + "_LABELS"]
            if len({display_name(t) for t in raw}) != len(raw):
                raise ValueError(f"{ckpt}: tags collide after case folding")
            self.raw_labels[ckpt] = list(raw)
            cols = []
            for tag in raw:
                key = display_name(tag)
                if key not in index:
                    index[key] = len(labels)
                    labels.append(key)
                cols.append(index[key])
            columns[ckpt] = cols
        # Per checkpoint, a (n_tags, n_labels) matrix that places its probabilities in the
        # merged columns, divided by how many checkpoints feed each column (= a mean).
        counts = np.zeros(len(labels))
        for cols in columns.values():
            counts[cols] += 1
        self._merge = {}
        for ckpt, cols in columns.items():
            m = np.zeros((len(cols), len(labels)), dtype=np.float32)
            m[np.arange(len(cols)), cols] = 1.0 / counts[cols]
            self._merge[ckpt] = torch.from_numpy(m).to(self.device)
        self.labels = labels
        self.default_labels = [t for t in labels if t in GENRE_TAGS]
        self.genres = {t: g for t, g in load_genre_file(GENRES_PATH).items() if t in index}
        # Each network's forward: torch, or the same float32 function under ONNX Runtime where
        # installed and checked, or OpenVINO bf16 on a CPU with AMX (backends.py: checked at load
        # against torch; backend="torch" or STREAM_BACKEND=torch turns it off).
        if self.device.type != "cpu":
            self.kernels = {k: Forward(net, "torch", f"torch (device {self.device})") for k, net in self.nets.items()}
        else:
            noise = np.random.default_rng(0).standard_normal((1, PATCH_SAMPLES)).astype(np.float32)
            example = self.logmel(0.1 * noise)[:, :PATCH_FRAMES]
            self.kernels = {k: select_backend(net, example, backend, lower_precision=True)
                            for k, net in self.nets.items()}
        self.backend = ", ".join(sorted({f.backend for f in self.kernels.values()}))
        self.precision = ", ".join(sorted({f.precision for f in self.kernels.values()}))
        if all(f.backend != "torch" for f in self.kernels.values()):
            self.max_patches_per_forward = 16
        self.streaming = StreamingFront.build(self.nets, self.kernels, self.logmel) \
            if streaming and self.device.type == "cpu" else None

    def new_stream(self) -> StreamFrames | None:
        """A live stream's state for `predict(..., context=)` (the engine keeps one per stream);
        None where neither the streaming front end nor the floor is on."""
        return StreamFrames() if self.streaming is not None or self.floor else None

    # -- pieces, exposed for tests and tools ------------------------------------------

    def logmel(self, windows: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, N) audio -> (B, 1 + N // 256, 96) float32 log-mel on `device`."""
        x = torch.as_tensor(windows, dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            return self.frontend(x)

    def patches(self, logmel: torch.Tensor) -> torch.Tensor:
        """(B, T, 96) -> (B, K, 187, 96): patches per `align`, or one repeat-padded patch."""
        total = logmel.shape[1]
        if total < PATCH_FRAMES:
            reps = -(-PATCH_FRAMES // total)
            return logmel.repeat(1, reps, 1)[:, None, :PATCH_FRAMES]
        starts = patch_starts(total, self.align)
        return torch.stack([logmel[:, s:s + PATCH_FRAMES] for s in starts], dim=1)

    def patch_logits(self, windows: np.ndarray) -> dict[str, torch.Tensor]:
        """{checkpoint: (B, K, n_tags) logits} for a batch of windows.

        The patches of all windows are batched together, `max_patches_per_forward` at a time.
        """
        with torch.inference_mode():
            lm = self.logmel(windows)
            return self._patch_logits(self._floored(lm, None)[0] if self.floor else lm)

    def _floored(self, logmel: torch.Tensor, context: list | None) -> tuple[torch.Tensor, set]:
        """`logmel` with each band's floor taken off (the `floor` option), and the rows whose
        stream's floor changed with them (their timbral frames must be computed whole). A row of a
        live stream takes its stream's floor (floor.py), any other row the floor of its own audio."""
        floors = band_floor(logmel)
        fresh = set()
        if context is not None:
            rows = sorted((end, i) for i, (state, end) in enumerate(context) if state is not None and end is not None)
            for end, i in rows:
                state = context[i][0].floor
                if state.observe(end, floors[i].cpu().numpy(), self.floor_memory_s, self.floor_every_s):
                    fresh.add(i)
                floors[i] = torch.from_numpy(state.floor)
        return minus_floor(logmel, floors, self.floor), fresh

    def _patch_logits(self, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            p = self.patches(logmel)
            b, k = p.shape[:2]
            flat = p.reshape(b * k, PATCH_FRAMES, p.shape[-1])
            n = self.max_patches_per_forward
            return {ck: torch.cat([fwd(flat[i:i + n]) for i in range(0, b * k, n)]).view(b, k, -1)
                    for ck, fwd in self.kernels.items()}

    # -- AudioModel ---------------------------------------------------------------------

    def predict(self, windows: np.ndarray, context: list | None = None) -> np.ndarray:
        """Tag probabilities ``(B, len(labels))`` float32 for windows ``(B, N)`` at 16 kHz.

        All patches of all windows go through each network together (in chunks of
        `max_patches_per_forward`); the front end runs once for all checkpoints.
        context: live patches only (N = `patch_samples`), one ``(new_stream() state, end sample in
        its stream)`` per row: a row ending on `patch_grid` just after its stream's previous patch
        reuses that patch's timbral frames (the same result, ~0.6x the work; streaming.py).
        Raises ValueError for a wrong shape, an empty window, non-finite samples or a context
        that does not match the rows.
        """
        w = np.asarray(windows)
        if w.ndim != 2:
            raise ValueError(f"predict expects windows of shape (batch, n_samples), got {w.shape}")
        if w.shape[0] == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if w.shape[1] == 0:
            raise ValueError("predict got empty windows (0 samples)")
        w = w.astype(np.float32, copy=False)
        if not np.isfinite(w).all():
            raise ValueError("predict got NaN or infinite samples")
        if context is not None and len(context) != len(w):
            raise ValueError(f"predict got {len(context)} context entries for {len(w)} windows")
        live = context is not None and w.shape[1] == PATCH_SAMPLES
        with torch.inference_mode():
            lm = self.logmel(w)
            fresh = set()
            if self.floor:
                lm, fresh = self._floored(lm, context if live else None)
            if live and self.streaming is not None:
                per_net = {ck: l[:, None] for ck, l in self.streaming.logits(lm, context, fresh).items()}
            else:
                per_net = self._patch_logits(lm)
            out = None
            for ckpt, logits in per_net.items():
                probs = torch.sigmoid(logits).mean(dim=1) @ self._merge[ckpt]
                out = probs if out is None else out + probs
        return out.cpu().numpy().astype(np.float32, copy=False)


def weights_digest(spec: str) -> str:
    """sha256 over a bundled spec's weight files, in checkpoint order: what a calibration or a
    head fitted on its outputs records, so that new weights under an old name are caught."""
    h = hashlib.sha256()
    for ckpt in SPECS[spec]:
        h.update((WEIGHTS_DIR / TRAINED.get(spec, "") / f"{ckpt}.safetensors").read_bytes())
    return h.hexdigest()


def load_bundled(spec: str = "musicnn", device: str = "cpu", backend: str = "auto",
                 streaming: bool = True, floor: float = 0.0) -> MusicnnModel:
    """Load a bundled musicnn model, offline.

    Specs: ``"musicnn"`` (MTT + MSD musicnn merged, 92 tags; the default: the pair taught
    track-level targets through rooms, hiss and phones, acoustic music drawn 70 % of the time;
    clean headline as the original's on 90.5 % of validation windows; weights/track/MODEL_CARD.md),
    ``"musicnn-original"`` (the converted upstream pair, the default's teacher), ``"musicnn-room"``
    (the first student, for comparisons: the default beats it in every condition measured;
    weights/robust/MODEL_CARD.md),
    ``"musicnn-mtt"``, ``"musicnn-msd"``, ``"vgg-mtt"``, ``"vgg-msd"`` (single checkpoints,
    50 tags). The vgg models cost about as much per patch as musicnn on a CPU (see
    bench/musicnn.py) and score a little lower upstream (ROC-AUC on MTT 0.9030 vs
    0.9067), so they are mainly for comparison. The merged default costs two single
    models' forwards per window (the front end is shared and is ~1% of the time).
    backend: "auto" runs the networks under OpenVINO bf16 where the CPU has AMX or AVX512-BF16
    (within 0.02 of torch in probability with the same leading tag, checked at load; 0.6x the CPU
    of float32 on Zen 4), else under ONNX Runtime float32 where it is installed and agrees with
    torch within 1e-4 (1.3-3x faster per patch than torch), else torch; "onnxruntime",
    "openvino" or "torch" (or env STREAM_BACKEND) choose; `model.backend` and `model.precision`
    say what runs (stream/models/backends.py).
    streaming: live streams compute only each new patch's newest timbral frames (the same result
    for ~0.6x the work, checked at load; streaming.py); False scores every patch whole.
    floor: an experiment, off (0) by default: each band's stationary floor times `floor` taken off
    the log-mel, kept per live stream over ~10 s (floor.py; bench/README.md "A floor kept per stream").
    Raises `ModelLoadError` for an unknown spec, a missing/corrupt weight file, a bad device
    or a backend that cannot run.
    """
    key = spec.strip().lower() if isinstance(spec, str) else spec
    if key not in SPECS:
        raise ModelLoadError(spec, "not a bundled musicnn model",
                             f"Use one of: {', '.join(SPECS)}", fallback=None)
    if alpha_error(floor):  # (before the weights load; the model checks it too, when made directly)
        raise ModelLoadError(spec, alpha_error(floor), "Use floor=0, or 1 for each band's floor as measured",
                             fallback=None)
    try:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available")
    except RuntimeError as e:
        raise ModelLoadError(spec, f"bad device {device!r} ({e})", "Use device='cpu'", fallback=None) from e
    try:
        tags = load_tag_lists()
        nets = {}
        for ckpt in SPECS[key]:
            arch = ckpt.split("_", 1)[1]
            folder = WEIGHTS_DIR / TRAINED.get(key, "")
            nets[ckpt] = ARCHITECTURES[arch](load_file(str(folder / f"{ckpt}.safetensors")))
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise ModelLoadError(
            spec, f"bundled weights are missing or damaged ({type(e).__name__}: {e})",
            "Regenerate them: pip download --no-deps musicnn==0.1.0 -d /tmp/w && "
            "python tools/convert_musicnn.py /tmp/w/musicnn-0.1.0-py3-none-any.whl", fallback=None) from e
    try:
        return MusicnnModel(key, nets, tags, device=dev, backend=backend, streaming=streaming, floor=floor)
    except ValueError as e:  # unknown backend, or onnxruntime asked for and unusable
        raise ModelLoadError(spec, str(e), "Use backend='auto' or 'torch' (or unset STREAM_BACKEND).") from e
