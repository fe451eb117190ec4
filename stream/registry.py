"""The models a spec can name (`load_model`, every face's -m/--model), defined once: the bundled
ones with their checkpoints and a line each, the other kinds of spec, and which to pick.
Standard library only: a front end's --help and the page's settings list them at once."""
from __future__ import annotations

from typing import NamedTuple


class Bundled(NamedTuple):
    """A bundled offline model: the checkpoints it runs (`<DATASET>_<arch>`, merged when two),
    the folder under weights/ its own weights sit in (None: the converted originals), a line
    saying what it is for, and whether every face lists it (the single checkpoints are for
    comparisons)."""

    checkpoints: tuple[str, ...]
    weights: str | None
    line: str
    listed: bool = True


BUNDLED: dict[str, Bundled] = {
    "musicnn": Bundled(("MTT_musicnn", "MSD_musicnn"), "track",
                       "bundled, offline: MusiCNN taught to hear rooms, hiss and phones as it hears a clean file; "
                       "styles under nine genres"),
    "musicnn-original": Bundled(("MTT_musicnn", "MSD_musicnn"), None,
                                "the upstream MusiCNN weights (the default's teacher): for comparisons"),
    "musicnn-room": Bundled(("MTT_musicnn", "MSD_musicnn"), "robust",
                            "bundled, the first room model, for comparisons: musicnn is better in every condition "
                            "measured, talk included"),
    "musicnn-mtt": Bundled(("MTT_musicnn",), None, "one checkpoint (MagnaTagATune, 50 tags)", False),
    "musicnn-msd": Bundled(("MSD_musicnn",), None, "one checkpoint (Million Song Dataset, 50 tags)", False),
    "vgg-mtt": Bundled(("MTT_vgg",), None, "the VGG baseline (MagnaTagATune)", False),
    "vgg-msd": Bundled(("MSD_vgg",), None, "the VGG baseline (Million Song Dataset)", False),
}

OTHER_SPECS: tuple[tuple[str, str], ...] = (
    ("auto", "the course model, DistilHuBERT on GTZAN, if cached or reachable, else musicnn"),
    ("a Hub id", "a Hugging Face audio-classification checkpoint"),
    ("a directory", "a checkpoint saved with save_pretrained"),
)

ADVICE = ("Which model: musicnn everywhere (a line-in, a file, a microphone in a shop, a bar or a hall); "
          "musicnn-original to compare with the upstream weights.")


def listed() -> list[tuple[str, str]]:
    """(spec, line) of every model the faces list: the bundled ones, then the other specs."""
    return [(name, b.line) for name, b in BUNDLED.items() if b.listed] + list(OTHER_SPECS)


def model_help() -> str:
    """The -m/--model help of every face: the models, one phrase each, and the advice."""
    return ", ".join(f"{name} ({line})" for name, line in listed()) + ". " + ADVICE
