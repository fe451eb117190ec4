"""The engine protocol: what a front end drives, whether the engine runs here (`StreamEngine`) or
behind the network API (`stream.client.RemoteEngine`). A front end written against it holds no
check of which kind it has. Plain Python (typing only): importing it costs nothing."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from .config import EngineConfig
from .records import EngineStats, Result, SessionSummary

if TYPE_CHECKING:
    from .genres import GenreLevel


@runtime_checkable
class Engine(Protocol):
    """Chunks in, readouts out.

    config: the settings it runs with (a remote engine: the server's, once connected).
    latest: the newest readout (None before the first).
    on_result: called with each readout (from another thread; keep it short).
    genres: the genres it ranks, in a fixed order ([] where not known in advance: a remote engine).
    min_audio_s: the least audio that gives a readout (0.0 where not known).
    visible_labels: the model's labels it shows ([] where not known in advance).
    genre_level: how labels map to genres (None where not known in advance).
    disconnects, lost_s: connections lost and the seconds of audio dropped meanwhile (0 here).
    """

    config: EngineConfig
    latest: Result | None
    on_result: Callable[[Result], None] | None
    disconnects: int
    lost_s: float

    def feed(self, samples, sample_rate) -> None:
        """Add a chunk ((n,) or (n, channels), any dtype the engine takes); returns at once."""

    def flush(self) -> None:
        """End of input: classify what is left."""

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait for the readouts of the audio fed so far; False on timeout."""

    def close(self) -> None:
        """Stop; `stats`, `summary()` and `latest` stay readable. Idempotent."""

    def failed(self) -> str | None:
        """Why the engine cannot go on (a lost connection), None while it can."""

    def summary(self) -> SessionSummary:
        """Where the time went so far."""

    @property
    def stats(self) -> EngineStats: ...

    @property
    def closed(self) -> bool: ...

    @property
    def genres(self) -> list[str]: ...

    @property
    def min_audio_s(self) -> float: ...

    @property
    def visible_labels(self) -> list[str]: ...

    @property
    def genre_level(self) -> GenreLevel | None: ...
