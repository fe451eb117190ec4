"""Engine settings, apart from the engine: front ends read the defaults and the documentation
of each field (for their --help) without importing numpy, torch or the engine itself."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar, Mapping, Sequence


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
        None: on, unless the environment says STREAM_MUSIC_DETECTOR=off (the test suite's toy
        models hear tones, which are no music).
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

    # The settings every front end accepts (the page's sliders, the listener's flags, the
    # network API's query): one set, so a value one face takes no other refuses. Narrower than
    # what the engine itself runs with (tests and benchmarks use shorter windows): a window
    # under 3 s is shorter than the first readout's (`min_window_s`) and MusiCNN's patch, one
    # over 30 s longer than any training clip; a hop over 5 s leaves a listener without a
    # readout for long stretches (over the window, audio goes unheard), one under 0.25 s is
    # shorter than the page's microphone chunks. top_k 0 = every genre.
    RANGES: ClassVar[dict] = {"window_s": (3.0, 30.0), "hop_s": (0.25, 5.0), "smoothing_s": (0.0, 20.0),
                              "top_k": (0, 10)}

    @classmethod
    def out_of_range(cls, **values) -> list[tuple[str, float, tuple]]:
        """(field, value, (low, high)) for each given setting outside `RANGES`; None values
        (the model's default) are not checked. E.g. out_of_range(window_s=100, hop_s=1)."""
        return [(name, v, cls.RANGES[name]) for name, v in values.items()
                if v is not None and not cls.RANGES[name][0] <= v <= cls.RANGES[name][1]]


RANGES = EngineConfig.RANGES

