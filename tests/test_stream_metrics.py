"""Per named stream, the time of its last readout and of the last music it heard in /metrics
(ui/net/metrics.py), for an alert on a screen that went silent: through a real server
subprocess with a real WebSocket client streaming real music then silence, scraped and parsed
with prometheus_client's own parser."""
from __future__ import annotations

import asyncio
import datetime
import time
from types import SimpleNamespace

import numpy as np
import pytest

from support.music import TRACKS, music, needs_music
from support.server import ServerProcess, metric, pcm, scrape, stream
from ui.net.metrics import MAX_NAMED_STREAMS, ServerMetrics, heard_music

LAST_MUSIC = "genre_stream_last_music_timestamp_seconds"
LAST_READOUT = "genre_stream_last_readout_timestamp_seconds"


def _unix(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@needs_music
@pytest.mark.server
def test_named_stream_exports_its_last_readout_and_last_music():
    """8 s of music then 8 s of silence under name=bar: the last music is the `at` of the last
    readout that named a genre, the last readout that of the last (silent) one; an unnamed
    stream adds no series."""
    srv = ServerProcess().wait_ready()
    try:
        audio, sr = music(TRACKS[1], 40, 8.0)
        x = np.concatenate([audio, np.zeros((8 * sr,) + audio.shape[1:], audio.dtype)])
        data = pcm(x, sr, sr, 1, "s16le")
        t0 = time.time()
        run = asyncio.run(stream(srv.url(sample_rate=sr, channels=1, format="s16le", name="bar", window=3, hop=1),
                                 data, sr, 1, "s16le"))
        asyncio.run(stream(srv.url(sample_rate=sr, channels=1, format="s16le"), data[: sr * 2 * 4], sr, 1, "s16le",
                           realtime=False))
        m = scrape(srv)
    finally:
        srv.stop()
    results = [r for _, r in run.results]
    heard = [r for r in results if not r["silent"] and r["genre"]]
    assert heard and results[-1]["silent"], [(r["time_s"], r["silent"]) for r in results]
    last_music, last_readout = metric(m, LAST_MUSIC, stream="bar"), metric(m, LAST_READOUT, stream="bar")
    assert abs(last_music - _unix(heard[-1]["at"])) < 0.002, (last_music, heard[-1]["at"])
    assert abs(last_readout - _unix(results[-1]["at"])) < 0.002, (last_readout, results[-1]["at"])
    assert t0 < last_music < last_readout <= time.time()
    assert {labels for name, labels in m if name == LAST_MUSIC} == {(("stream", "bar"),)}


def test_no_music_readouts_and_silence_do_not_count_as_music_and_names_are_bounded():
    def r(**kw):
        return SimpleNamespace(**{"silent": False, "genre": "Jazz", "label": "bebop", "at": 100.0, **kw})

    assert heard_music(r()) and not heard_music(r(silent=True, genre=None, label=None))
    assert not heard_music(r(no_music=True))  # the engine's music-presence check, where it has one
    m = ServerMetrics("musicnn", "torch")
    m.named_stream("bar", now=50.0)
    m.named_result("bar", r(at=60.0))
    m.named_result("bar", r(at=70.0, no_music=True))
    m.named_result("bar", r(at=80.0, silent=True, genre=None, label=None))
    assert m.last_music.labels("bar")._value.get() == 60.0 and m.last_readout.labels("bar")._value.get() == 80.0
    m.named_stream("quiet", now=90.0)  # connected, no readout yet: both start at the connection
    assert m.last_music.labels("quiet")._value.get() == 90.0
    for i in range(MAX_NAMED_STREAMS + 5):
        m.named_stream(f"s{i}", now=100.0 + i)
    text = m.render()[0].decode()
    assert text.count(f"{LAST_MUSIC}{{") == MAX_NAMED_STREAMS and 'stream="bar"' not in text
