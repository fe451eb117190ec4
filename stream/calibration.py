"""A confidence that means something: the chance that the headline is the track's genre.

A tagger's score ("Electronic 24 %") is no probability: read under a headline it says "24 % sure"
of a readout that is right most of the time. `Calibrator` maps the smoothed genre scores to the
chance that the headline equals the genre of the track as a whole (the teacher's verdict over
the whole track; tools/calibrate_confidence.py fits it on one half of the validation tracks and
checks it on the other; bench/README.md holds the reliability table):

    1. temperature: p = softmax(log(scores) / T) over the genres, T fitted by likelihood;
    2. isotonic: a score of the readout through a monotone map fitted to "headline was right";
       the score is the headline's p ("prob") or its lead over the runner-up in the smoothed
       scores ("margin"); which one is chosen on held-out packages (tools/calibrate_confidence.py).

Shown as words (`words`: sure / likely / unsure) or as a percentage, with a runner-up
(`Confidence.alternative`) when two genres are close: "Electronic or Rock".
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TABLE = Path(__file__).resolve().parent / "models" / "musicnn" / "calibration.json"
SURE, LIKELY = 0.8, 0.5
CLOSE = 0.6  # a runner-up whose tempered probability is at least this share of the headline's


def words(confidence: float | None) -> str | None:
    """"sure" (>= 80 %), "likely" (>= 50 %) or "unsure"; None without a confidence."""
    if confidence is None:
        return None
    return "sure" if confidence >= SURE else "likely" if confidence >= LIKELY else "unsure"


@dataclass(frozen=True)
class Confidence:
    value: float  # calibrated chance the headline is the track's genre
    words: str
    alternative: str | None  # a close runner-up genre ("X or Y"), else None


def _tempered(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = np.log(np.clip(np.asarray(scores, np.float64), 1e-6, 1.0)) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _pav(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic (non-decreasing) fit of y on x by pool-adjacent-violators: (knots x, values)."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order].astype(np.float64)
    vals, wts, xlo, xhi = [], [], [], []
    for xi, yi in zip(xs, ys):
        vals.append(yi), wts.append(1.0), xlo.append(xi), xhi.append(xi)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w
            lo = xlo[-2]
            for lst in (vals, wts, xlo, xhi):
                lst.pop()
            vals[-1], wts[-1], xlo[-1] = v, w, lo
    knots, values = [], []
    for v, lo, hi in zip(vals, xlo, xhi):
        knots += [lo, hi]
        values += [v, v]
    return np.array(knots), np.array(values)


SCORES = ("prob", "margin")


def _margin(scores: np.ndarray, headline) -> np.ndarray:
    """The headline's smoothed score minus the best other genre's (negative: it trails)."""
    s = np.atleast_2d(np.asarray(scores, np.float64))
    h = np.broadcast_to(np.asarray(headline), (len(s),))
    rows = np.arange(len(s))
    other = s.copy()
    other[rows, h] = -np.inf
    return s[rows, h] - other.max(axis=1)


@dataclass(frozen=True)
class Calibrator:
    temperature: float
    knots: tuple  # isotonic map: the readout's score -> chance the headline is right
    values: tuple
    score: str = "prob"  # what the map reads: "prob" (tempered probability) or "margin"

    def tempered(self, scores: np.ndarray) -> np.ndarray:
        return _tempered(scores, self.temperature)

    def scores_of(self, scores: np.ndarray, headline) -> np.ndarray:
        """The map's input for rows of smoothed `scores` and their `headline` indices."""
        s = np.atleast_2d(np.asarray(scores))
        if self.score == "margin":
            return _margin(s, headline)
        return self.tempered(s)[np.arange(len(s)), np.broadcast_to(np.asarray(headline), (len(s),))]

    def confidences(self, scores: np.ndarray, headline) -> np.ndarray:
        return np.interp(self.scores_of(scores, headline), self.knots, self.values)

    def confidence(self, scores: np.ndarray, headline: int) -> float:
        return float(self.confidences(scores, headline)[0])

    def __call__(self, scores: np.ndarray, headline: int, genres) -> Confidence:
        """The headline's calibrated confidence (and a close runner-up) from the smoothed
        scores of every genre (`scores[i]` is genre `genres[i]`)."""
        p = self.tempered(scores)
        c = self.confidence(scores, headline)
        rest = np.argsort(-p, kind="stable")
        second = next(int(i) for i in rest if i != headline) if len(p) > 1 else None
        alt = None
        if second is not None and c < SURE and p[second] >= CLOSE * p[headline]:
            alt = genres[second]
        return Confidence(c, words(c), alt)

    def to_json(self) -> dict:
        return {"temperature": round(self.temperature, 4), "score": self.score,
                "knots": [round(float(k), 5) for k in self.knots], "values": [round(float(v), 5) for v in self.values]}

    @classmethod
    def from_json(cls, d: dict) -> Calibrator:
        score = d.get("score", "prob")
        if score not in SCORES:
            raise ValueError(f"calibration score {score!r}: one of {SCORES}")
        return cls(float(d["temperature"]), tuple(d["knots"]), tuple(d["values"]), score)


def load(model_name: str, genres=None, path: Path = TABLE) -> Calibrator | None:
    """The calibration fitted for `model_name` (None when there is none, or when it was fitted
    for other genres than `genres`: a confidence for another mapping would mean nothing)."""
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    d = table.get(model_name)
    if not d or (genres is not None and list(d.get("genres", genres)) != list(genres)):
        return None
    try:
        return Calibrator.from_json(d)
    except (KeyError, TypeError, ValueError):
        return None  # a table this version cannot read: no confidence rather than a wrong one


def fit(scores: np.ndarray, headline: np.ndarray, truth: np.ndarray, method: str = "isotonic") -> Calibrator:
    """scores: (n, genres) smoothed scores; headline, truth: genre indices.

    "isotonic": a temperature by likelihood of the track genres, then isotonic regression of the
    headline's tempered probability against "the headline was right" (flexible; needs data).
    "margin": the same temperature (for the runner-up), isotonic regression of the headline's
    lead over the runner-up in the smoothed scores.
    "temperature": one temperature by likelihood of "the headline was right" itself, no map
    (one parameter: steadier on few tracks)."""
    scores, headline, truth = np.asarray(scores), np.asarray(headline), np.asarray(truth)
    rows, right = np.arange(len(headline)), (headline == truth).astype(np.float64)
    best = None
    for t in np.exp(np.linspace(np.log(0.02), np.log(5.0), 161)):
        p = _tempered(scores, t)
        if method == "temperature":
            q = np.clip(p[rows, headline], 1e-9, 1 - 1e-9)
            nll = -np.mean(right * np.log(q) + (1 - right) * np.log(1 - q))
        else:
            nll = -np.mean(np.log(np.clip(p[rows, truth], 1e-9, 1)))
        if best is None or nll < best[0]:
            best = (nll, float(t))
    t = best[1]
    if method == "temperature":
        return Calibrator(t, (0.0, 1.0), (0.0, 1.0))
    if method not in ("isotonic", "margin"):
        raise ValueError(f"method {method!r}: 'isotonic', 'margin' or 'temperature'")
    score = "margin" if method == "margin" else "prob"
    knots, values = _pav(Calibrator(t, (0.0, 1.0), (0.0, 1.0), score).scores_of(scores, headline), right)
    return Calibrator(t, tuple(knots), tuple(values), score)


def reliability_of(conf: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of confidences `conf` for outcomes `right` (0/1)."""
    which = np.clip(np.digitize(conf, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1)
    return float(sum((which == b).mean() * abs(conf[which == b].mean() - right[which == b].mean())
                     for b in range(bins) if (which == b).any()))


def reliability(cal: Calibrator | None, scores, headline, truth, bins: int = 10) -> dict:
    """Expected calibration error and the per-bin table on (scores, headline, truth); `cal`
    None judges the raw score (the headline's smoothed score) as if it were a confidence."""
    scores, headline, truth = np.asarray(scores), np.asarray(headline), np.asarray(truth)
    rows = np.arange(len(headline))
    if cal is None:
        conf = scores[rows, headline].astype(np.float64)
    else:
        conf = cal.confidences(scores, headline)
    right = (headline == truth).astype(np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if not m.any():
            continue
        c, a = float(conf[m].mean()), float(right[m].mean())
        ece += m.mean() * abs(c - a)
        table.append({"lo": round(float(edges[b]), 2), "hi": round(float(edges[b + 1]), 2), "n": int(m.sum()),
                      "conf": round(c, 4), "acc": round(a, 4)})
    return {"ece": float(ece), "bins": table, "accuracy": float(right.mean()) if len(right) else float("nan")}
