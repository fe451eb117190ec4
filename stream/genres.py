"""Two levels for the readout: a handful of top-level genres (the headline) above the model's
own labels (its styles), as Discogs shows music ("Electronic", style "Techno").

A tagger's neighbouring labels (techno / electronic / dance, indie / rock) trade places many
times a minute on one track; a listener's question, "what kind of music is this?", does not
change with them. So the engine ranks genres, each pooled from its styles, and shows the best
style inside the leading genre. A model ships its own mapping (`AudioModel.genres`, e.g.
stream/models/musicnn/genres.json); a checkpoint whose labels already are genres (GTZAN's ten)
has none, and each label is its own genre; `EngineConfig.genres` overrides either.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

POOLS = ("max", "sum")


def read_genre_table(data, where: str = "genre mapping") -> dict[str, str]:
    """{label: genre} from a parsed genre file or mapping, in the order of its genres.

    Accepted forms: a flat {label: genre}, or {"genres": [names], "styles": {label: genre |
    [genre] | [genre, why]}} (the shipped files: the list fixes the genres' order and catches a
    misspelt genre). Raises ValueError naming `where` and what is wrong."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping of label -> genre, got {type(data).__name__}")
    order = None
    if "styles" in data:
        styles = data["styles"]
        order = data.get("genres")
        if not isinstance(styles, Mapping):
            raise ValueError(f"{where}: 'styles' must map each label to its genre")
        if order is not None and (not isinstance(order, list) or not all(isinstance(g, str) and g.strip()
                                                                          for g in order)):
            raise ValueError(f"{where}: 'genres' must be a list of genre names")
    else:
        styles = data
    out: dict[str, str] = {}
    bad = []
    for label, value in styles.items():
        genre = value[0] if isinstance(value, (list, tuple)) and 1 <= len(value) <= 2 else value
        if not isinstance(label, str) or not label.strip() or not isinstance(genre, str) or not genre.strip():
            bad.append(f"{label!r}: {value!r}")
            continue
        key = label.strip().lower()
        if key in out:
            raise ValueError(f"{where}: label {label!r} is placed twice (labels match case-insensitively)")
        out[key] = genre.strip()
    if bad:
        raise ValueError(f"{where}: each label needs a genre name (\"label\": \"Genre\" or [\"Genre\", \"why\"]); "
                         f"not understood: {', '.join(bad[:5])}")
    if not out:
        raise ValueError(f"{where}: no label is placed in a genre")
    if order is not None:
        unknown = sorted({g for g in out.values() if g not in order})
        if unknown:
            raise ValueError(f"{where}: genre(s) {unknown} are not in its 'genres' list {order}")
        rank = {g: i for i, g in enumerate(order)}
        out = dict(sorted(out.items(), key=lambda kv: rank[kv[1]]))
    return out


def load_genre_file(path) -> dict[str, str]:
    """A JSON genre file (see `read_genre_table`) as {label: genre}. Raises ValueError naming
    the file when it cannot be read or makes no sense."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"genre file {str(p)!r} cannot be read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"genre file {str(p)!r} is not valid JSON ({exc})") from None
    return read_genre_table(data, f"genre file {str(p)!r}")


def genre_mapping(spec) -> dict[str, str]:
    """`EngineConfig.genres` as {label (lower case): genre}: a mapping, or the path of a JSON file."""
    if isinstance(spec, (str, os.PathLike)):
        return load_genre_file(spec)
    return read_genre_table(spec, "EngineConfig.genres")


@dataclass(frozen=True)
class GenreLevel:
    """How one engine pools a model's label scores into genre scores.

    genres: the genres that have at least one visible label, in the mapping's order.
    members: per genre, the indices (into the model's labels) of its visible labels.
    genre_of: visible label -> its genre; visible labels without one (a tagger's moods and
        instruments under allow=["*"]) are shown but never lead, and count for no genre.
    has_styles: False when every label is its own genre (a GTZAN checkpoint): no style level.
    pool: "max" (a genre scores as its best style) or "sum" (the sum of its styles).
    """

    genres: tuple
    members: tuple
    genre_of: dict
    has_styles: bool
    pool: str

    def scores(self, probs: np.ndarray) -> np.ndarray:
        """Genre scores (len(genres),) pooled from label scores (len(model.labels),)."""
        p = np.asarray(probs, np.float64)
        reduce = np.max if self.pool == "max" else np.sum
        return np.array([reduce(p[m]) for m in self.members], np.float64)


def genre_level(labels, visible, mapping: Mapping[str, str] | None, pool: str = "max",
                strict: bool = False) -> GenreLevel:
    """The genre level of a model whose labels are `labels`, shown labels `visible` (indices).

    mapping: {label: genre} (labels case-insensitive); None = each label is its own genre.
    strict: labels of `mapping` the model does not have are an error (a user's override: likely
    a typo) rather than skipped (a model's own file may name tags of checkpoints not loaded).
    A view in which no visible label has a genre (allow=["piano", "guitar"]) ranks its
    labels as genres of their own."""
    if pool not in POOLS:
        raise ValueError(f"genre pool {pool!r}: expected one of {', '.join(POOLS)}")
    labels = list(labels)
    index = {l.lower(): i for i, l in enumerate(labels)}
    if mapping is not None and strict:
        unknown = [k for k in mapping if k.lower() not in index]
        if unknown:
            raise ValueError(f"EngineConfig.genres names label(s) this model does not have: {unknown}; "
                             f"its labels are: {labels}")
    placed = {index[k.lower()]: g for k, g in (mapping or {}).items() if k.lower() in index}
    shown = [int(i) for i in visible]
    if not any(i in placed for i in shown):
        placed = {i: labels[i] for i in shown}
    order = list(dict.fromkeys(placed.values()))  # the mapping's order of genres
    members = {g: [] for g in order}
    for i in shown:
        if i in placed:
            members[placed[i]].append(i)
    genres = tuple(g for g in order if members[g])
    genre_of = {labels[i]: placed[i] for i in shown if i in placed}
    return GenreLevel(genres=genres, members=tuple(np.array(members[g], np.int64) for g in genres),
                      genre_of=genre_of, has_styles=any(l != g for l, g in genre_of.items()), pool=pool)
