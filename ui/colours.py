"""One colour per genre, for every front end that draws genres (the Gradio page's plot, the
kiosk screen served by the network API): a genre's colour is its place in the model's genre
order (`StreamEngine.genres`), so a genre looks the same on every screen of the same model."""
from __future__ import annotations

# Distinct colours, most distinct first (Tableau 10, then ten more); beyond 20 genres they
# repeat with another dash pattern (where lines are drawn).
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#17becf", "#bcbd22", "#e7298a", "#6a3d9a", "#8c1c13", "#404040", "#a6761d", "#1b9e77",
           "#fdbf6f", "#1f3a93"]
DASHES = ["", "6 3", "2 3"]
SILENCE_COLOUR = "#b8b8b8"


def plot_style(i: int) -> tuple[str, str]:
    """(colour, dash pattern) of the i-th genre."""
    return PALETTE[i % len(PALETTE)], DASHES[(i // len(PALETTE)) % len(DASHES)]


def genre_colours(order) -> dict[str, str]:
    """{genre: colour} for the model's genre order (what the network API's `ready` event carries)."""
    return {g: plot_style(i)[0] for i, g in enumerate(order)}
