"""Engine settings, apart from the engine: `EngineConfig` and `SETTINGS`, the table every front end
derives its flags, sliders, query parameters and checks from (one line per setting: name, type,
ranges, help, flag, query parameter, page control). No numpy, torch or engine here: a front end's
--help reads it at once."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Mapping, Sequence


@dataclass
class EngineConfig:
    """Engine settings. `None` means "the model's own default".

    window_s: seconds of audio per classification (default: the model's; 10 s for the
        DistilHuBERT/GTZAN course model, ~9 s = three 3 s patches for MusiCNN). GTZAN clips
        are 30 s, so longer windows score closer to training conditions, but the readout
        then reacts later to a change of music and each forward costs more; 5-15 s is the
        useful range live.
    hop_s: seconds of new audio between classifications (default: the model's, 1 s). A
        shorter hop updates more often but costs proportionally more compute; the real-time
        factor is inference time / hop.
    min_window_s: the first readout appears once this much audio has arrived (the window
        then grows to `window_s`), so a listener does not wait a full window for a first
        answer. Set it equal to window_s to classify only full windows.
    smoothing_s: EMA time constant in seconds (0 = off). In seconds, not in updates, so it
        means the same whatever the hop; ~tau seconds to move 63 % towards new scores.
        Steadier on steady music the longer it is; a change of music is handled by change_s.
    change_s: change re-anchoring (0 = off; also off with smoothing_s=0, where every readout
        is its own window anyway). Each hop the newest min_window_s of audio is
        classified too; when its scores differ clearly from the smoothed readout for change_s
        seconds (two hops at a 1 s hop), the music has changed: the readout restarts from
        the new music at once, and the windows that follow start at the change (growing
        back to window_s, as at the start of a stream) instead of mixing in the old music
        for a whole window. Shorter = faster, but a few seconds of unusual music within a
        track (a break, a new section) re-anchor more often (the readout then rests on
        shorter windows for a few seconds); one odd window never does. Costs one extra
        forward of min_window_s per hop while windows are longer than twice that, except
        for patch models with patch_reuse (MusiCNN), whose cached newest patch is that evidence. Measured with the bundled model (bench/quality.py,
        real recordings): smoothing_s=4 alone shows a change of track after a median 6.9 s,
        with change_s=1 after 2.8 s, for slightly more label changes on steady music (0.6 ->
        0.8 per minute, mostly the model changing its mind inside a track).
    silence_dbfs: windows whose RMS is below this level are not classified; the result
        says silent (feature extractors normalise each window, so silence would otherwise
        get a confident genre). -55 dBFS sits above a quiet laptop mic's noise floor and
        well below music heard from a metre or two.
    top_k: how many labels `Result.scores` keeps (0 = all visible labels).
    allow / deny: label names to show / hide. allow=None shows the model's default view
        (e.g. the genre tags of a tagger); allow=["*"] shows every label.
    switch_margin: hysteresis, relative: the leading genre (and the leading style inside it)
        changes only when a challenger's smoothed score beats the leader's by this fraction of
        it (0.1 = 10 %). Relative, so it means the same for a softmax (leader ~0.5: 0.1 = the
        former absolute 0.05) and a sigmoid tagger (leader ~0.2, where an absolute 0.05 was a
        25 % margin).
    genres: which genre each label belongs to (`Result.genre`, the headline, above
        `Result.label`, the style). None = the model's own mapping (the bundled model ships
        stream/models/musicnn/genres.json; a checkpoint whose labels are genres, such as
        GTZAN's ten, has none: each label is its own genre). Else {label: genre} or the path of
        a JSON file of that form (or {"genres": [...], "styles": {label: [genre, why]}}, the
        shipped form); a label the model does not have is an error, visible labels left out
        are shown but never lead. Genres hold stiller than labels: on steady music (32
        excerpts, bench/quality.py) the bundled tagger's leading tag changes 1.6 times a
        minute, mostly between neighbours (techno / electronic / ambient), its genre 1.0 times;
        the rest is the model changing its mind inside a track (a piano passage in an
        electronic track reads Classical).
    patch_reuse: for models that score fixed patches and average them (`AudioModel.patch_samples`
        set: the bundled MusiCNN, 3 s patches), score only the hop's new patch and average it
        with the patches earlier hops already scored: one patch per network per hop instead of
        the whole window (3x less compute at the default 9 s window and 1 s hop). The patches
        then sit on a grid of their own: each ends on a hop boundary and they are spaced by the
        patch length rounded to whole hops (3 s for hops of 1 s, 0.5 s, ...), as many as fit in
        the window; whole-window scoring instead cuts them back to back from the newest frame.
        The newest patch is the same audio either way; the older ones lie a few ms apart
        (8 ms for 9 s / 1 s), a shift to which the network itself is as sensitive as to the
        choice of grid (bench/streams.py --quality compares both on real music). Patches
        missed while the machine was overloaded, silent or after `reset()` are scored when a
        window needs them, so every readout is the mean of its own grid patches. Models
        without patches (Hugging Face checkpoints) always score whole windows. False scores
        whole windows every hop (the behaviour before this option).
    music_detector: each hop also asks a small music/speech detector (stream/presence.py)
        whether music plays; without music for ~3 s the headline is "no music" (genre and
        label None; the genre scores are still computed and kept), and it names a genre again
        once music has played ~1.5 s. False names a genre for any sound (a voice, a fan).
        None: what the environment variable STREAM_MUSIC_DETECTOR says (`music_detector_env()`:
        on unless it is off), so a deployment whose input is always music, or a test suite whose
        toy models hear tones, turns it off without a change of code.
    """

    window_s: float | None = None
    hop_s: float | None = None
    min_window_s: float = 3.0
    smoothing_s: float = 4.0
    change_s: float = 1.0
    silence_dbfs: float = -55.0
    top_k: int = 5
    allow: Sequence[str] | None = None
    deny: Sequence[str] = ()
    switch_margin: float = 0.1
    patch_reuse: bool = True
    genres: Mapping[str, str] | str | os.PathLike | None = None
    music_detector: bool | None = None


MUSIC_DETECTOR_ENV = "STREAM_MUSIC_DETECTOR"
_SWITCH = {"on": True, "1": True, "true": True, "yes": True, "off": False, "0": False, "false": False, "no": False}


def music_detector_env() -> bool:
    """EngineConfig.music_detector=None's value: STREAM_MUSIC_DETECTOR (on/off, 1/0, true/false,
    yes/no; unset or empty: on). ValueError for anything else: a typo must not leave it on."""
    value = os.environ.get(MUSIC_DETECTOR_ENV, "").strip().lower()
    if value not in _SWITCH and value:
        raise ValueError(f"{MUSIC_DETECTOR_ENV}={value!r} is neither on nor off (also 1/0, true/false, yes/no)")
    return _SWITCH.get(value, True)


@dataclass(frozen=True)
class Control:
    """How the page shows a setting: a slider with this label and step (its hint is the
    setting's `help`, its range the setting's `span`)."""

    label: str
    step: float
    elem_id: str


@dataclass(frozen=True)
class Setting:
    """One engine setting, defined once for every face: the listener's and the servers' flags
    (`ui/options.py`), the page's sliders (`ui/web`), the network API's query (`ui/net`), and
    the engine's own check (`StreamEngine.resolve`).

    field: the EngineConfig field. key: its name on the faces (argparse dest, query parameter).
    kind: float or int. help: one line, for --help and the page's hint.
    floor / strict / ceiling: the values that mean anything at all (strict: above `floor`);
        `must` says so in a refusal ("must be a positive number of seconds").
    limits: what the engine runs with, when narrower than floor..ceiling (tests and benchmarks
        go beyond what the faces accept).
    span: what every face accepts, narrower still (None: any meaningful value).
    zero: what 0 means ("off", "all"), said with the ranges. unit: "s", "dB" or "".
    flags: its command-line flags (none: not a flag). query: whether a stream sets it per
        connection in the network API. control: the page's slider (None: not on the page).
    """

    field: str
    key: str
    kind: type
    help: str
    must: str
    floor: float = 0.0
    strict: bool = False
    ceiling: float = math.inf
    limits: tuple[float, float] | None = None
    span: tuple[float, float] | None = None
    zero: str | None = None
    unit: str = "s"
    flags: tuple[str, ...] = ()
    metavar: str = "S"
    query: bool = False
    control: Control | None = None

    @property
    def default(self):
        """EngineConfig's default (None: the model's own)."""
        return getattr(EngineConfig, self.field)

    @property
    def noun(self) -> str:
        """What a value is, for a refusal of text that is none: "a number of seconds"."""
        return "an integer" if self.kind is int else "a number of seconds" if self.unit == "s" else "a number"

    def span_text(self, lo: float, hi: float) -> str:
        """A range as the refusals and --help say it: "3..30 s", "0..10 (0 = all)"."""
        unit, zero = f" {self.unit}" if self.unit else "", f" (0 = {self.zero})" if self.zero and lo == 0 else ""
        return f"{lo:g}..{hi:g}{unit}{zero}"

    def meaningful(self, value) -> bool:
        """Within floor..ceiling: whether the value means anything."""
        return (value > self.floor if self.strict else value >= self.floor) and value <= self.ceiling

    def problem(self, value, span: tuple[float, float] | None = ..., name: str | None = None,
                outside: str = "is outside", span_first: bool = False) -> str | None:
        """Why a face refuses `value` (None: accepted), naming it as `name` ("--window 40";
        default "window=40"); `span` defaults to the setting's own (None: no range check).
        A meaningless value (a negative window) is refused with `must`, unless `span_first`:
        then every refusal names the span."""
        shown = name if name is not None else f"{self.key}={value:g}"
        span = self.span if span is ... else span
        out_of_span = span is not None and not span[0] <= value <= span[1]
        if not self.meaningful(value) and not (span_first and out_of_span):
            return f"{shown} {self.must}"
        if out_of_span:
            return f"{shown} {outside} {self.span_text(*span)}"
        return None

    def engine_problem(self, value) -> str | None:
        """Why the engine refuses `value` (None: it runs with it)."""
        if self.limits is not None:
            lo, hi = self.limits
            if not lo <= value <= hi:
                return f"{self.field}={value} (expected {self.span_text(lo, hi)})"
        elif not self.meaningful(value):
            return f"{self.field}={value} ({self.must})"
        return None


# The engine settings the faces offer, and the others the engine checks. The spans are one set,
# so a value one face takes no other refuses. Narrower than what the engine itself runs with:
# a window under 3 s is shorter than the first readout's (`min_window_s`) and MusiCNN's patch, one
# over 30 s longer than any training clip; a hop over 5 s leaves a listener without a readout for
# long stretches (over the window, audio goes unheard), one under 0.25 s is shorter than the
# page's microphone chunks. top_k 0 = every genre.
SETTINGS: tuple[Setting, ...] = (
    Setting("window_s", "window", float, "seconds of audio per classification; longer is steadier but reacts later",
            "must be a positive number of seconds", strict=True, limits=(0.1, 120.0), span=(3.0, 30.0),
            flags=("-w", "--window"), query=True, control=Control("Window (s)", 0.5, "set-window")),
    Setting("hop_s", "hop", float, "seconds between readouts; the compute grows as the hop shrinks",
            "must be a positive number of seconds", strict=True, limits=(0.05, 60.0), span=(0.25, 5.0),
            flags=("--hop",), query=True, control=Control("Hop (s)", 0.25, "set-hop")),
    Setting("smoothing_s", "smoothing", float, "time constant of the readout's smoothing in seconds (0 = off)",
            "must be 0 (off) or more seconds", span=(0.0, 20.0), zero="off",
            flags=("-s", "--smoothing"), query=True, control=Control("Smoothing (s)", 0.5, "set-smoothing")),
    Setting("top_k", "top_k", int, "how many genres a readout lists (0 = all)", "must be 0 (all) or more",
            span=(0, 10), zero="all", unit="", flags=("-k", "--top-k"), metavar="N", query=True,
            control=Control("Genres shown (top-k)", 1, "set-topk")),
    Setting("silence_dbfs", "silence_dbfs", float, "windows quieter than this are reported as silence, not classified",
            "must be a level below 0 dBFS", floor=-math.inf, ceiling=0.0, unit="dBFS", flags=("--silence-dbfs",),
            metavar="DB"),
    Setting("min_window_s", "min_window", float, "the first readout comes once this much audio has arrived",
            "must be 0 or more seconds"),
    Setting("change_s", "change", float, "a change of music re-anchors the readout after this long (0 = off)",
            "must be 0 (off) or more seconds", limits=(0.0, 30.0), zero="off"),
    Setting("switch_margin", "switch_margin", float, "hysteresis: a challenger must beat the leader by this fraction",
            "must be 0 or more", unit=""),
)
BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}
FACE_SETTINGS = tuple(s for s in SETTINGS if s.flags)  # what the command lines offer
QUERY_SETTINGS = tuple(s for s in SETTINGS if s.query)  # what a network stream may set
RANGES: dict[str, tuple] = {s.field: s.span for s in SETTINGS if s.span is not None}


def configure(base: EngineConfig | None = None, **values) -> EngineConfig:
    """`base` (default: EngineConfig()) with the given settings, by key ("window", "hop", ...;
    None = keep `base`'s). The one place a face's values become an EngineConfig: a window
    shorter than the first readout's `min_window_s` also shortens that, so the first readout
    is a full window."""
    cfg = replace(base or EngineConfig())
    for key, value in values.items():
        if value is not None:
            setattr(cfg, BY_KEY[key].field, BY_KEY[key].kind(value))
    if values.get("window") is not None:
        cfg.min_window_s = min(cfg.min_window_s, cfg.window_s)
    return cfg
