"""The genres' colours: one definition for every picture of genres (the page's live plot and
file timeline, the history day chart of `genre-history`).

A genre's colour is its place in the model's genre order (`StreamEngine.genres`), so it is the
same in every session of the same model and in every picture made later from a recording of it.
"""
from __future__ import annotations

# Distinct colours, most distinct first (Tableau 10, then ten more); beyond 20 genres they
# repeat with another dash pattern.
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#17becf", "#bcbd22", "#e7298a", "#6a3d9a", "#8c1c13", "#404040", "#a6761d", "#1b9e77",
           "#fdbf6f", "#1f3a93"]
DASHES = ["", "6 3", "2 3"]
SILENCE_COLOUR = "#b8b8b8"


def plot_style(i: int) -> tuple[str, str]:
    """(colour, dash pattern) of the i-th genre."""
    return PALETTE[i % len(PALETTE)], DASHES[(i // len(PALETTE)) % len(DASHES)]


def genre_styles(styles: dict, genres, order=()) -> dict:
    """{genre: (colour, dash)}: the genres of `order` (the model's genre order) get the style of
    their place in it, the same in every session; any other genre keeps the style it got
    first (`styles`, updated in place, one per browser tab) and a new one the next unused."""
    for i, g in enumerate(order):
        styles.setdefault(g, plot_style(i))
    for g in genres:
        if g not in styles:
            styles[g] = plot_style(len(styles))
    return styles
