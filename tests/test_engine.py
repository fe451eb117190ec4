import logging
import threading
import time
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
from support.models import BandModel, tone
from support.polling import wait_for

from stream import EngineClosedError, EngineConfig, StreamEngine


def feed_chunks(engine, x, rate, chunk_s=0.1):
    n = int(rate * chunk_s)
    for i in range(0, len(x), n):
        engine.feed(x[i:i + n], rate)



def test_window_every_hop_after_min_window(band_model):
    got = []
    cfg = EngineConfig(window_s=2.0, hop_s=0.5, min_window_s=1.0, smoothing_s=0)
    with StreamEngine(band_model, cfg, background=False, on_result=got.append) as e:
        feed_chunks(e, tone(300, 5.0, 48000), 48000, chunk_s=0.037)
        e.flush()
    times = np.array([r.time_s for r in got])
    # one window per hop boundary, stamped with the boundary's stream time (1.0, 1.5, ... 5.0 s)
    assert times == pytest.approx(np.arange(1.0, 5.01, 0.5), abs=1e-9)
    assert got[0].window_s == pytest.approx(1.0, abs=0.04) and got[4].window_s == pytest.approx(2.0)
    assert all(r.label == "low" for r in got)


@pytest.mark.parametrize("dtype,channels,rate", [
    (np.int16, 1, 48000), (np.int16, 2, 44100), (np.int32, 2, 96000), (np.uint8, 1, 8000),
    (np.float64, 6, 22050), (np.float32, 1, 16000)])
def test_any_input_format_classifies_the_same(dtype, channels, rate):
    x = tone(2000, 3.0, rate, amp=0.4)
    x = np.repeat(x[:, None], channels, axis=1) if channels > 1 else x
    if dtype == np.int16:
        x = (x * 32767).astype(np.int16)
    elif dtype == np.int32:
        x = (x * 2**31).astype(np.int32)
    elif dtype == np.uint8:
        x = (x * 127 + 128).astype(np.uint8)
    else:
        x = x.astype(dtype)
    with StreamEngine(BandModel(), EngineConfig(hop_s=1.0, min_window_s=2.0), background=False) as e:
        feed_chunks(e, x, rate, chunk_s=0.05)
        assert e.latest.label == "mid"
        assert e.latest.level_dbfs == pytest.approx(20 * np.log10(0.4 / np.sqrt(2)), abs=0.3)
        assert e.stats.samples_received == len(x)


def test_silence_gate_skips_inference_and_claims_no_genre():
    m = BandModel()
    with StreamEngine(m, EngineConfig(hop_s=0.5, min_window_s=1.0, silence_dbfs=-50), background=False) as e:
        rng = np.random.default_rng(0)
        e.feed((rng.standard_normal(16000 * 3) * 1e-4).astype(np.float32), 16000)  # -80 dBFS noise
        assert m.calls == 0
        assert e.latest.silent and e.latest.label is None and e.latest.scores == {}
        e.feed(tone(200, 3, 16000), 16000)
        assert not e.latest.silent and e.latest.label == "low" and m.calls > 0
        assert e.stats.windows_silent >= 3


def test_nan_replaced_and_does_not_poison_later_windows(band_model):
    with StreamEngine(band_model, EngineConfig(window_s=1.0, hop_s=0.5, min_window_s=1.0), background=False) as e:
        x = tone(4000, 2.0, 44100)
        x[1000:1100] = np.nan
        x[5000] = np.inf
        e.feed(x, 44100)
        e.feed(tone(4000, 2.0, 44100), 44100)
        assert e.stats.bad_samples_replaced == 101
        assert all(np.isfinite(v) for v in e.latest.scores.values())
        assert e.latest.label == "high"


def test_empty_chunk_is_noop(band_model):
    with StreamEngine(band_model, background=False) as e:
        e.feed(np.zeros(0, np.int16), 48000)
        e.feed(np.zeros((0, 2), np.float32), 44100)
        assert e.latest is None and e.stats.samples_received == 0


@pytest.mark.parametrize("samples,rate,match", [
    (np.zeros((10, 2, 2), np.float32), 16000, "dimensions"),
    (np.array(["x"] * 10), 16000, "dtype"),
    (np.zeros(10, np.float32), 0, "sample_rate"),
    (np.zeros(10, np.float32), 22050.5, "sample_rate"),
])
def test_bad_input_raises_and_keeps_stream(band_model, samples, rate, match):
    with StreamEngine(band_model, EngineConfig(hop_s=0.5, min_window_s=1.0), background=False) as e:
        e.feed(tone(200, 1.0, 16000), 16000)
        before = e.stats.samples_received
        with pytest.raises(ValueError, match=match):
            e.feed(samples, rate)
        assert e.stats.samples_received == before
        e.feed(tone(200, 1.0, 16000), 16000)
        assert e.latest.label == "low"


def test_rate_change_mid_stream(band_model):
    got = []
    with StreamEngine(band_model, EngineConfig(window_s=1.0, hop_s=0.5, min_window_s=1.0), background=False,
                      on_result=got.append) as e:
        feed_chunks(e, tone(4000, 2.0, 48000), 48000)
        feed_chunks(e, tone(4000, 2.0, 22050), 22050)
        feed_chunks(e, tone(4000, 2.0, 8000 * 2), 16000)
    assert got[-1].time_s == pytest.approx(6.0, abs=0.02)  # no audio lost across the switches
    assert {r.label for r in got} == {"high"}


def test_feed_after_close_raises(band_model):
    e = StreamEngine(band_model)
    e.close()
    e.close()  # idempotent
    with pytest.raises(EngineClosedError, match="after close"):
        e.feed(np.zeros(100, np.float32), 16000)


def test_close_lets_go_of_the_audio_and_the_callback(band_model):
    """An owner whose callback is its own method (a server's per-connection object) makes a
    cycle with the engine; CPython frees a cycle only at a full collection, which a busy server
    may not run for hours: after close() the engine holds no audio and the cycle is broken."""
    import gc
    import weakref

    class Owner:
        def __init__(self):
            self.results = []
            self.engine = StreamEngine(band_model, EngineConfig(window_s=2.0, hop_s=0.5), on_result=self.on_result)

        def on_result(self, res):
            self.results.append(res)

    gc.collect()
    gc.disable()  # only reference counting may free them
    try:
        owner = Owner()
        e = owner.engine
        feed_chunks(e, tone(300, 3.0, 48000), 48000)
        e.flush()
        assert e.drain(30) and owner.results
        ring = e._ring
        assert ring._data.nbytes >= 2 * 2.0 * band_model.sample_rate * 4
        e.close()
        assert ring._data.nbytes == 0 and not e._patch_scores  # the audio went with close()
        assert e.summary().genre_shares and e.stats.windows_classified == len(owner.results)  # still readable
        gone = weakref.ref(owner), weakref.ref(e)
        del owner, e
        assert [r() for r in gone] == [None, None]  # freed without the garbage collector
    finally:
        gc.enable()


@pytest.mark.slow
def test_ten_minute_chunk_bounded_memory():
    m = BandModel()
    x = np.zeros((48000 * 600, 2), np.int16)
    x[:, 0] = (tone(200, 600, 48000) * 20000).astype(np.int16)
    with StreamEngine(m, EngineConfig(window_s=10, hop_s=1), background=True) as e:
        tracemalloc.start()
        e.feed(x, 48000)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 20e6, f"feed of a 10-minute chunk ({x.nbytes / 1e6:.0f} MB) allocated {peak / 1e6:.1f} MB"
        assert e.stats.seconds_received == pytest.approx(600)
        assert wait_for(lambda: e.latest is not None and e.latest.time_s >= 599)
        assert e.latest.label == "low"
        st = e.stats  # every hop from 3 s (min window) to ~600 s was either classified or skipped as stale, none queued
        assert 595 <= st.windows_classified + st.windows_skipped <= 598 and st.windows_skipped > 0


class GatedModel(BandModel):
    """Blocks every forward until released: makes overload deterministic."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.seen = []

    def predict(self, windows):
        self.entered.set()
        self.gate.wait(10)
        out = super().predict(windows)
        self.seen.append([int(np.argmax(p)) for p in out])
        return out


def test_overload_skips_stale_windows_and_feed_never_blocks():
    m = GatedModel()
    m.max_batch = 1
    with StreamEngine(m, EngineConfig(window_s=1.0, hop_s=0.25, min_window_s=1.0, smoothing_s=0)) as e:
        feed_chunks(e, tone(200, 1.0, 16000), 16000)
        assert m.entered.wait(5)  # the worker is stuck inside the model now
        feed_chunks(e, tone(200, 10.0, 16000), 16000)  # 40 more hops while it is stuck
        assert e.stats.windows_skipped >= 38  # only the newest window waits
        m.gate.set()
        assert wait_for(lambda: e.latest is not None and e.latest.time_s == pytest.approx(11.0))
        assert e.stats.windows_classified == 2


def test_engines_share_worker_fairly_and_batch():
    m = GatedModel()
    m.max_batch = 1
    cfg = EngineConfig(window_s=1.0, hop_s=0.25, min_window_s=1.0)
    a, b = StreamEngine(m, cfg), StreamEngine(m, cfg)
    feed_chunks(a, tone(200, 1.0, 16000), 16000)
    assert m.entered.wait(5)
    feed_chunks(a, tone(200, 5.0, 16000), 16000)  # a floods
    feed_chunks(b, tone(5000, 1.0, 16000), 16000)  # b asks once
    m.gate.set()
    assert wait_for(lambda: b.latest is not None)
    # b's window ("high" = 2) ran no later than the second forward: a could not starve it
    assert 2 in [c[0] for c in m.seen[:3]]
    a.close(), b.close()

    m2 = GatedModel()
    m2.max_batch = 8
    engines = [StreamEngine(m2, cfg) for _ in range(3)]
    feed_chunks(engines[0], tone(200, 1.0, 16000), 16000)
    assert m2.entered.wait(5)
    for e in engines:
        feed_chunks(e, tone(300, 1.0, 16000), 16000)
    m2.gate.set()
    assert wait_for(lambda: all(e.latest is not None for e in engines))
    assert max(m2.batch_sizes) == 3  # the three pending windows ran in one forward
    for e in engines:
        e.close()


def test_allow_deny_top_k(band_model):
    with pytest.raises(ValueError, match="unknown label.*jazz"):
        StreamEngine(band_model, EngineConfig(allow=["jazz"]))
    with pytest.raises(ValueError, match="no label"):
        StreamEngine(band_model, EngineConfig(deny=["low", "mid", "high"]))
    with StreamEngine(band_model, EngineConfig(deny=["LOW"], top_k=1, min_window_s=1), background=False) as e:
        e.feed(tone(200, 2.0, 16000) + tone(2000, 2.0, 16000, amp=0.1), 16000)
        assert list(e.latest.scores) == ["mid"] and e.latest.label == "mid"
        assert set(e.latest.raw_scores) == {"mid", "high"}
    with StreamEngine(band_model, EngineConfig(allow=["*"], top_k=0, min_window_s=1), background=False) as e:
        e.feed(tone(200, 2.0, 16000), 16000)
        assert set(e.latest.scores) == {"low", "mid", "high"}


def test_config_validation(band_model):
    with pytest.raises(ValueError, match="hop_s"):
        StreamEngine(band_model, EngineConfig(hop_s=0))
    with pytest.raises(ValueError, match="smoothing_s"):
        StreamEngine(band_model, EngineConfig(smoothing_s=-1))


def test_model_error_is_counted_and_stream_survives():
    class Flaky(BandModel):
        def predict(self, windows):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("boom")
            return super().predict(windows)

    m = Flaky()
    with StreamEngine(m, EngineConfig(window_s=1, hop_s=0.5, min_window_s=1)) as e:
        e.feed(tone(200, 1.0, 16000), 16000)
        assert wait_for(lambda: e.stats.errors == 1)
        assert "boom" in e.stats.last_error
        e.feed(tone(200, 0.5, 16000), 16000)
        assert wait_for(lambda: e.latest is not None and e.latest.label == "low")


def test_broken_callback_does_not_break_stream(band_model):
    def cb(r):
        raise ValueError("callback bug")

    with StreamEngine(band_model, EngineConfig(min_window_s=1), background=False, on_result=cb) as e:
        e.feed(tone(200, 3.0, 16000), 16000)
        assert e.latest.label == "low"


def test_smoothing_hysteresis_and_summary(band_model):
    cfg = EngineConfig(window_s=1.0, hop_s=0.5, min_window_s=1.0, smoothing_s=2.0, switch_margin=0.05)
    labels = []
    with StreamEngine(band_model, cfg, background=False, on_result=lambda r: labels.append(r.label)) as e:
        e.feed(tone(200, 6.0, 16000), 16000)
        e.feed(tone(5000, 6.0, 16000), 16000)
        s = e.summary()
        assert labels[0] == "low" and labels[-1] == "high"
        # smoothing delays the switch past the change at 6 s; it never flips back
        switch = labels.index("high")
        assert switch > 10 and "low" not in labels[switch:]
        assert s.dominant in ("low", "high") and sum(s.shares.values()) == pytest.approx(1.0)
        assert s.duration_s == pytest.approx(12.0, abs=0.6)
        e.reset()
        assert e.latest is None and e.summary().shares == {}


def test_stats_fields(band_model):
    with StreamEngine(band_model, EngineConfig(window_s=1.0, hop_s=0.5, min_window_s=1.0), background=False) as e:
        e.feed(tone(200, 4.0, 16000), 16000)
        st = e.stats
        assert st.windows_classified == 7 and st.windows_skipped == 0
        assert st.inference_ms_p95 >= st.inference_ms_mean * 0.5 > 0
        assert st.real_time_factor == pytest.approx(st.inference_ms_mean / 500)
        assert st.samples_received == 64000 and st.lag_s == pytest.approx(0.0)


def test_process_exit_waits_for_running_forward(tmp_path):
    """At exit the shared worker finishes its forward before the interpreter tears down
    (a daemon thread inside torch during teardown can abort the process)."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "exit_mid_forward.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path(__file__).parent.parent)!r}]\n"
        "from support.models import BandModel, tone\n"
        "from stream import EngineConfig, StreamEngine\n"
        "class Slow(BandModel):\n"
        "    def predict(self, w):\n"
        "        print('forward start', flush=True); time.sleep(1.0); print('forward end', flush=True)\n"
        "        return super().predict(w)\n"
        "e = StreamEngine(Slow(), EngineConfig(window_s=1, hop_s=0.5, min_window_s=1))\n"
        "e.feed(tone(200, 1.0, 16000), 16000)\n"
        "time.sleep(0.3)\n"
        "e.feed(tone(200, 1.0, 16000), 16000)  # pending window: dropped at exit, not run\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["forward", "start", "forward", "end"]


def test_flush_adds_no_near_duplicate_window(band_model):
    got = []
    with StreamEngine(band_model, EngineConfig(window_s=2, hop_s=1, min_window_s=1), background=False,
                      on_result=got.append) as e:
        e.feed(tone(200, 6.0, 48000), 48000)  # ends exactly on a hop
        e.flush()
        e.feed(tone(200, 0.5, 48000), 48000)  # half a hop more: worth a final window
        e.flush()
    times = [r.time_s for r in got]
    assert times == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 6.5], abs=1e-9)


def test_drain_waits_for_the_last_window():
    m = GatedModel()
    with StreamEngine(m, EngineConfig(window_s=1, hop_s=0.5, min_window_s=1)) as e:
        e.feed(tone(200, 1.0, 16000), 16000)
        assert m.entered.wait(5)
        assert e.drain(timeout=0.2) is False  # the model is still stuck
        threading.Timer(0.3, m.gate.set).start()
        assert e.drain(timeout=10) is True
        assert e.latest is not None and e.latest.time_s == pytest.approx(1.0)
        e.reset()
        assert e.drain(timeout=0.1) is True


def test_resampler_delay_does_not_postpone_a_readout(band_model):
    """Browser-sized chunks ending exactly on a hop: the readout comes with that chunk, not
    with the next one (the resampler holds back ~20-40 ms)."""
    got = []
    with StreamEngine(band_model, EngineConfig(window_s=2, hop_s=1, min_window_s=2), background=False,
                      on_result=got.append) as e:
        x = (tone(300, 4.0, 48000) * 32767).astype(np.int16)
        for i in range(0, len(x), 12000):  # 0.25 s chunks
            e.feed(x[i:i + 12000], 48000)
            fed = (i + 12000) / 48000
            if fed in (2.0, 3.0, 4.0):
                assert got and got[-1].time_s == pytest.approx(fed), (fed, [r.time_s for r in got])
        e.flush()
    assert len(got) == 3  # the held-back tail completed the last hop: no extra window


def test_callback_may_call_engine_methods_from_silent_and_inline_results(band_model):
    """Silent and inline results are announced after feed() releases its lock."""
    seen = []

    def cb(res):
        seen.append(res.silent)
        if len(seen) == 2:
            e.reset()  # would deadlock if called under the feed lock

    e = StreamEngine(band_model, EngineConfig(window_s=1, hop_s=0.5, min_window_s=1), background=False,
                     on_result=cb)
    e.feed(np.zeros(16000 * 2, np.float32), 16000)
    e.feed(tone(200, 2.0, 16000), 16000)
    assert seen[:2] == [True, True] and len(seen) >= 4
    e.close()


def test_errors_of_discarded_windows_are_not_counted():
    class Failing(GatedModel):
        def predict(self, windows):
            super().predict(windows)
            raise RuntimeError("late failure")

    m = Failing()
    e = StreamEngine(m, EngineConfig(window_s=1, hop_s=0.5, min_window_s=1))
    e.feed(tone(200, 1.0, 16000), 16000)
    assert m.entered.wait(5)
    e.reset()  # the running window's audio is discarded
    m.gate.set()
    time.sleep(0.3)
    assert e.stats.errors == 0
    e.close()


def test_file_analysis_reports_model_failure(tmp_path):
    from stream import analyze_file

    class Broken(BandModel):
        def predict(self, windows):
            raise RuntimeError("weights missing")

    with pytest.raises(RuntimeError, match="failed on every window.*weights missing"):
        analyze_file(tone(200, 5.0, 16000), Broken(), sample_rate=16000, window_s=2, hop_s=1)


def test_scores_list_the_leader_first(band_model):
    """One notion of the leading genre: `label` (with hysteresis) heads `scores`, also while a
    challenger's smoothed score is higher but within the switch margin."""
    # change_s=0: the EMA alone, so the challenger rises slowly and the held-leader case occurs
    cfg = EngineConfig(window_s=1.0, hop_s=0.5, min_window_s=1.0, smoothing_s=2.0, switch_margin=1.0, top_k=2,
                       change_s=0)
    got = []
    with StreamEngine(band_model, cfg, background=False, on_result=got.append) as e:
        e.feed(tone(200, 6.0, 16000), 16000)
        e.feed(tone(5000, 8.0, 16000), 16000)
    assert got[0].label == "low" and got[-1].label == "high"
    assert all(list(r.scores)[0] == r.label for r in got), [(r.label, r.scores) for r in got]
    # the case that matters was exercised: the challenger already scored higher, the leader stayed first
    held = [r for r in got if r.scores[r.label] < max(r.scores.values())]
    assert held, [(r.label, r.scores) for r in got]
    assert all(len(r.scores) == 2 for r in got)
    # after the leader, the others keep the smoothed order (all three labels visible with top_k=0)
    with StreamEngine(band_model, replace(cfg, top_k=0), background=False, on_result=got.append) as e:
        e.feed(tone(200, 6.0, 16000), 16000)
        e.feed(tone(5000, 4.0, 16000), 16000)
        rest = list(e.latest.scores.values())[1:]
        assert list(e.latest.scores)[0] == e.latest.label and rest == sorted(rest, reverse=True)


def test_drain_waits_for_the_on_result_callback(band_model):
    finished = []

    def slow_callback(res):
        time.sleep(0.5)
        finished.append(res.time_s)

    with StreamEngine(band_model, EngineConfig(window_s=1, hop_s=0.5, min_window_s=1),
                      on_result=slow_callback) as e:
        e.feed(tone(200, 2.0, 16000), 16000)
        e.flush()
        assert e.drain(timeout=30) is True
        # the callback of the newest window has returned, not merely its inference
        assert finished and finished[-1] == pytest.approx(2.0) == e.latest.time_s


def test_drain_inside_the_callback_fails_fast(band_model):
    errors = []

    def cb(res):
        try:
            e.drain(timeout=5)
        except RuntimeError as exc:
            errors.append(str(exc))

    e = StreamEngine(band_model, EngineConfig(window_s=1, hop_s=0.5, min_window_s=1), on_result=cb)
    e.feed(tone(200, 1.0, 16000), 16000)
    assert e.drain(timeout=30) is True
    assert errors and "inside on_result" in errors[0]
    e.close()


def test_skipping_is_logged_once_per_engine_with_advice(caplog):
    caplog.set_level(logging.WARNING, logger="stream.engine")
    m = GatedModel()
    m.max_batch = 1
    cfg = EngineConfig(window_s=1.0, hop_s=0.25, min_window_s=1.0)
    with StreamEngine(m, cfg) as e:
        feed_chunks(e, tone(200, 1.0, 16000), 16000)
        assert m.entered.wait(5)
        feed_chunks(e, tone(200, 5.0, 16000), 16000)  # 20 hops while the model is stuck
        assert e.stats.windows_skipped >= 18
        warnings = [r for r in caplog.records if "skipped" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        text = warnings[0].getMessage()
        assert "background=False" in text and "analyze_file" in text and "hop" in text
        # a second engine that skips says so once too
        with StreamEngine(m, cfg) as e2:
            feed_chunks(e2, tone(200, 3.0, 16000), 16000)
            assert e2.stats.windows_skipped > 0
        assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 2
        m.gate.set()
    # an engine that keeps up says nothing
    caplog.clear()
    with StreamEngine(BandModel(), EngineConfig(window_s=1.0, hop_s=0.5, min_window_s=1.0)) as e:
        for i in range(4):
            e.feed(tone(200, 0.5, 16000), 16000)
            assert e.drain(timeout=30)
        assert e.stats.windows_skipped == 0
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]
