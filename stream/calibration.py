"""A confidence that means something: the chance that the headline is the track's genre.

A tagger's score ("Electronic 24 %") is no probability: read under a headline it says "24 % sure"
of a readout that is right most of the time. `Calibrator` maps the smoothed genre scores to the
chance that the headline equals the genre of the track as a whole (the teacher's verdict over
the whole track; tools/calibrate_confidence.py fits it on some Debian packages and checks it on
others; bench/README.md holds the reliability table):

    1. temperature: p = softmax(log(scores) / T) over the genres, T fitted by likelihood;
    2. isotonic: a score of the readout through a monotone map fitted to "headline was right";
       the score is the headline's p ("prob") or its lead over the runner-up in the smoothed
       scores ("margin");
    3. logistic: a logistic regression on a few numbers the engine has for every readout
       (`FEATURES`: the tempered probability's logit, the readout's age since its smoothed
       state began, the lead over the runner-up, the entropy of the scores).

Which one is chosen on held-out packages (tools/calibrate_confidence.py). Shown as words
(`words`: sure / likely / unsure) or as a percentage, with a runner-up
(`Confidence.alternative`) when two genres are close: "Electronic or Rock".
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TABLE = Path(__file__).resolve().parent / "models" / "musicnn" / "calibration.json"
VERSION = 2  # 1: temperature / isotonic only (no "version" key); 2: adds "logistic"
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


SCORES = ("prob", "margin", "logistic")
# what a logistic calibration may read, per readout: the logit of the headline's tempered
# probability; log(1 + seconds since the smoothed genre state began: a start, silence, music
# after "no music", a detected change) -- a young readout has heard little of the music; the
# headline's log lead over the runner-up in the smoothed scores; the entropy of the scores
FEATURES = ("logit", "age", "margin", "entropy")
RIDGE = 0.01  # per readout, on standardised features (not the logit's, not the bias)


def _margin(scores: np.ndarray, headline) -> np.ndarray:
    """The headline's smoothed score minus the best other genre's (negative: it trails)."""
    s = np.atleast_2d(np.asarray(scores, np.float64))
    h = np.broadcast_to(np.asarray(headline), (len(s),))
    rows = np.arange(len(s))
    other = s.copy()
    other[rows, h] = -np.inf
    return s[rows, h] - other.max(axis=1)


def features(scores: np.ndarray, headline, temperature: float, age_s=None, names=FEATURES,
             age_cap_s: float = np.inf) -> np.ndarray:
    """(n, len(names)) of `FEATURES` for rows of smoothed `scores`, their `headline` indices and
    their age in seconds (`age_s`; needed only where "age" is named), read as at most
    `age_cap_s` (the oldest readout the fit saw: no extrapolation to a kiosk's hours)."""
    s = np.atleast_2d(np.asarray(scores, np.float64))
    h = np.broadcast_to(np.asarray(headline), (len(s),))
    rows = np.arange(len(s))
    cols = []
    for name in names:
        if name == "logit":
            p = np.clip(_tempered(s, temperature)[rows, h], 1e-6, 1 - 1e-6)
            cols.append(np.log(p / (1 - p)))
        elif name == "age":
            if age_s is None:
                raise ValueError("this calibration reads the readout's age: pass age_s (seconds since the "
                                 "smoothed genre state began)")
            age = np.broadcast_to(np.asarray(age_s, np.float64), (len(s),))
            cols.append(np.log1p(np.clip(age, 0.0, age_cap_s)))
        elif name == "margin":
            ls = np.log(np.clip(s, 1e-6, 1.0))
            other = ls.copy()
            other[rows, h] = -np.inf
            cols.append(ls[rows, h] - other.max(axis=1))
        elif name == "entropy":
            q = np.clip(s, 1e-9, None)
            q = q / q.sum(axis=1, keepdims=True)
            cols.append(-(q * np.log(q)).sum(axis=1))
        else:
            raise ValueError(f"calibration feature {name!r}: one of {FEATURES}")
    return np.stack(cols, axis=1) if cols else np.zeros((len(s), 0))


@dataclass(frozen=True)
class Calibrator:
    temperature: float
    knots: tuple  # isotonic map: the readout's score -> chance the headline is right
    values: tuple
    score: str = "prob"  # what it reads: "prob" (tempered probability), "margin", or "logistic"
    names: tuple = ()  # "logistic": the `FEATURES` it reads, their coefficients and the bias
    coef: tuple = ()
    bias: float = 0.0
    age_cap_s: float = float("inf")  # older readouts are read as this old (the fit's oldest)

    def tempered(self, scores: np.ndarray) -> np.ndarray:
        return _tempered(scores, self.temperature)

    def scores_of(self, scores: np.ndarray, headline) -> np.ndarray:
        """The isotonic map's input for rows of smoothed `scores` and their `headline` indices."""
        s = np.atleast_2d(np.asarray(scores))
        if self.score == "margin":
            return _margin(s, headline)
        return self.tempered(s)[np.arange(len(s)), np.broadcast_to(np.asarray(headline), (len(s),))]

    def confidences(self, scores: np.ndarray, headline, age_s=None) -> np.ndarray:
        """`age_s`: seconds since the smoothed genre state began (the engine passes it; a
        calibration that reads it raises ValueError without it)."""
        if self.score == "logistic":
            x = features(scores, headline, self.temperature, age_s, self.names, self.age_cap_s)
            z = x @ np.asarray(self.coef) + self.bias
            return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))
        return np.interp(self.scores_of(scores, headline), self.knots, self.values)

    def confidence(self, scores: np.ndarray, headline: int, age_s: float | None = None) -> float:
        return float(self.confidences(scores, headline, age_s)[0])

    def __call__(self, scores: np.ndarray, headline: int, genres, age_s: float | None = None) -> Confidence:
        """The headline's calibrated confidence (and a close runner-up) from the smoothed
        scores of every genre (`scores[i]` is genre `genres[i]`) and the readout's age."""
        p = self.tempered(scores)
        c = self.confidence(scores, headline, age_s)
        rest = np.argsort(-p, kind="stable")
        second = next(int(i) for i in rest if i != headline) if len(p) > 1 else None
        alt = None
        if second is not None and c < SURE and p[second] >= CLOSE * p[headline]:
            alt = genres[second]
        return Confidence(c, words(c), alt)

    def to_json(self) -> dict:
        d = {"version": VERSION, "temperature": round(self.temperature, 4), "score": self.score}
        if self.score == "logistic":
            d.update(features=list(self.names), coef=[round(float(c), 6) for c in self.coef],
                     bias=round(float(self.bias), 6))
            if np.isfinite(self.age_cap_s):
                d["age_cap_s"] = round(float(self.age_cap_s), 3)
            return d
        return {**d, "knots": [round(float(k), 5) for k in self.knots],
                "values": [round(float(v), 5) for v in self.values]}

    @classmethod
    def from_json(cls, d: dict) -> Calibrator:
        """Version 1 (no "version": temperature / isotonic) and 2 (adds "logistic")."""
        version = int(d.get("version", 1))
        if version > VERSION:
            raise ValueError(f"calibration version {version} is newer than this engine reads ({VERSION}): "
                             f"update the engine, or refit with python -m tools.calibrate_confidence")
        score = d.get("score", "prob")
        if score not in SCORES:
            raise ValueError(f"calibration score {score!r}: one of {SCORES}")
        if score == "logistic":
            names, coef = tuple(d["features"]), tuple(float(c) for c in d["coef"])
            if len(names) != len(coef) or not set(names) <= set(FEATURES):
                raise ValueError(f"logistic calibration: features {names} (of {FEATURES}) and {len(coef)} coefficients")
            return cls(float(d["temperature"]), (0.0, 1.0), (0.0, 1.0), score, names, coef, float(d["bias"]),
                       float(d.get("age_cap_s", "inf")))
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
    except (KeyError, TypeError, ValueError) as exc:
        # no confidence rather than a wrong one, but say why
        log.warning("calibration for %s in %s not used: %s", model_name, path, exc)
        return None


def _logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """Weighted logistic regression by Newton steps; column 0 (the logit) starts at 1 and, like
    the bias, is not shrunk; the others shrink towards 0 (`RIDGE`). Deterministic."""
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
    mu[0], sd[0] = 0.0, 1.0
    x1 = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    w = w / w.mean()
    pen = RIDGE * len(x) * np.eye(x1.shape[1])
    pen[0, 0] = pen[-1, -1] = 0.0
    prior = np.zeros(x1.shape[1])
    prior[0] = 1.0
    b = prior.copy()
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(x1 @ b, -30.0, 30.0)))
        g = x1.T @ (w * (p - y)) + pen @ (b - prior)
        hess = (x1 * (w * p * (1 - p))[:, None]).T @ x1 + pen + 1e-9 * np.eye(len(b))
        step = np.linalg.solve(hess, g)
        b -= step
        if np.abs(step).max() < 1e-9:
            break
    coef = b[:-1] / sd  # back to the raw features
    return coef, float(b[-1] - coef @ mu)


def fit(scores: np.ndarray, headline: np.ndarray, truth: np.ndarray, method: str = "isotonic",
        age_s=None, names=("logit", "age"), weights=None) -> Calibrator:
    """scores: (n, genres) smoothed scores; headline, truth: genre indices; `age_s` (n,): each
    readout's age (for a "logistic" that reads it); `weights` (n,): each readout's weight in
    the fit (e.g. every package alike), None: all alike.

    "isotonic": a temperature by likelihood of the track genres, then isotonic regression of the
    headline's tempered probability against "the headline was right" (flexible; needs data).
    "margin": the same temperature (for the runner-up), isotonic regression of the headline's
    lead over the runner-up in the smoothed scores.
    "temperature": one temperature by likelihood of "the headline was right" itself, no map
    (one parameter: steadier on few tracks).
    "logistic": that temperature, then a logistic regression of "the headline was right" on the
    `FEATURES` in `names` (the first must be "logit": with coefficient 1 and no bias it is the
    temperature alone)."""
    scores, headline, truth = np.asarray(scores), np.asarray(headline), np.asarray(truth)
    rows, right = np.arange(len(headline)), (headline == truth).astype(np.float64)
    w = np.ones(len(right)) if weights is None else np.asarray(weights, np.float64)
    if method not in ("isotonic", "margin", "temperature", "logistic"):
        raise ValueError(f"method {method!r}: 'isotonic', 'margin', 'temperature' or 'logistic'")
    best = None
    for t in np.exp(np.linspace(np.log(0.02), np.log(5.0), 161)):
        p = _tempered(scores, t)
        if method in ("temperature", "logistic"):
            q = np.clip(p[rows, headline], 1e-9, 1 - 1e-9)
            nll = -np.sum(w * (right * np.log(q) + (1 - right) * np.log(1 - q))) / w.sum()
        else:
            nll = -np.sum(w * np.log(np.clip(p[rows, truth], 1e-9, 1))) / w.sum()
        if best is None or nll < best[0]:
            best = (nll, float(t))
    t = best[1]
    if method == "temperature":
        return Calibrator(t, (0.0, 1.0), (0.0, 1.0))
    if method == "logistic":
        names = tuple(names)
        if not names or names[0] != "logit":
            raise ValueError(f"logistic features {names}: the first is 'logit'")
        cap = float(np.max(age_s)) if "age" in names and len(right) else float("inf")
        coef, bias = _logistic(features(scores, headline, t, age_s, names), right, w)
        return Calibrator(t, (0.0, 1.0), (0.0, 1.0), "logistic", names, tuple(float(c) for c in coef), bias, cap)
    score = "margin" if method == "margin" else "prob"
    knots, values = _pav(Calibrator(t, (0.0, 1.0), (0.0, 1.0), score).scores_of(scores, headline), right)
    return Calibrator(t, tuple(knots), tuple(values), score)


def reliability_of(conf: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of confidences `conf` for outcomes `right` (0/1)."""
    which = np.clip(np.digitize(conf, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1)
    return float(sum((which == b).mean() * abs(conf[which == b].mean() - right[which == b].mean())
                     for b in range(bins) if (which == b).any()))


def reliability(cal: Calibrator | None, scores, headline, truth, bins: int = 10, age_s=None) -> dict:
    """Expected calibration error and the per-bin table on (scores, headline, truth) (and the
    readouts' ages, for a calibration that reads them); `cal` None judges the raw score (the
    headline's smoothed score) as if it were a confidence."""
    scores, headline, truth = np.asarray(scores), np.asarray(headline), np.asarray(truth)
    rows = np.arange(len(headline))
    if cal is None:
        conf = scores[rows, headline].astype(np.float64)
    else:
        conf = cal.confidences(scores, headline, age_s)
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
