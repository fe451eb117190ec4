"""One colour per genre for every front end: the page's live plot, its lead band and File
timeline, and any other face (a kiosk page) that draws genres. Same genre, same colour, in
every session, after every restart and on every face.

Genres are looked up by name (case, spaces and punctuation ignored: "Hip hop" = "hip-hop" =
"hiphop"): the bundled model's nine genres and the GTZAN labels have fixed colours here. A
genre this table does not name (another checkpoint's labels) gets a spare colour by its place
in the model's genre order, or, outside it, by a stable hash of its name (not Python's
`hash`, which changes from run to run).

    from ui.colours import genre_colour, genre_colours
    genre_colour("Electronic")                      # "#4e79a7"
    genre_colours(["Rock", "Classical"])            # {"Rock": "#f28e2b", "Classical": "#9c755f"}

No dependencies: a kiosk's own server can import it, or copy `NAMED` into its JavaScript.
"""
from __future__ import annotations

import re
import zlib
from typing import Iterable, Sequence

# The bundled model's genres (stream/models/musicnn/genres.json) in the colours they have had
# since the page first drew them (Tableau 10, in the file's genre order), and the GTZAN labels:
# a genre of both keeps one colour, GTZAN's own get colours of their own.
NAMED = {
    "electronic": "#4e79a7", "rock": "#f28e2b", "pop": "#e15759", "hiphop": "#76b7b2", "funksoul": "#59a14f",
    "jazz": "#edc948", "blues": "#b07aa1", "folkcountry": "#ff9da7", "classical": "#9c755f",
    # GTZAN's ten labels (and the course model's): these five share a name above or nearly
    "country": "#ff9da7", "folk": "#ff9da7", "soul": "#59a14f", "funk": "#59a14f",
    "disco": "#17becf", "metal": "#404040", "reggae": "#bcbd22",
}
# Silence (no genre heard): the lead band's and the kiosk strip's gaps.
SILENCE_COLOUR = "#b8b8b8"
NO_MUSIC_COLOUR = "#8a8f98"  # "no music" (talk, noise): a grey of its own, no genre's colour
# For genres not named above: distinct from the named colours and from each other.
SPARE = ["#8c1c13", "#6a3d9a", "#1b9e77", "#e7298a", "#a6761d", "#1f3a93", "#fdbf6f", "#bab0ac", "#66a61e",
         "#d95f02", "#7570b3", "#e6ab02"]


def key(genre: str) -> str:
    """A genre's name as the table knows it: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", genre.lower())


def genre_colour(genre: str, order: Sequence[str] = (), taken: Iterable[str] = ()) -> str:
    """The colour of `genre` ("#rrggbb"). `order`, the model's genres in their fixed order,
    places a genre the table does not name; without it, its name's hash does, skipping the
    colours in `taken` (those already drawn beside it) while spare ones are left."""
    named = NAMED.get(key(genre))
    if named is not None:
        return named
    unnamed = [g for g in order if key(g) not in NAMED]
    if genre in unnamed:
        return SPARE[unnamed.index(genre) % len(SPARE)]
    start, taken = zlib.crc32(key(genre).encode()) % len(SPARE), set(taken)
    return next((c for i in range(len(SPARE)) if (c := SPARE[(start + i) % len(SPARE)]) not in taken), SPARE[start])


def genre_colours(genres: Iterable[str], order: Sequence[str] = ()) -> dict[str, str]:
    """{genre: colour} for several genres (`genre_colour` of each)."""
    return {g: genre_colour(g, order) for g in genres}
