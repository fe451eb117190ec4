"""cli_listen.py end to end: a real PulseAudio null sink is the microphone, real music is
played into it with paplay, and the CLI runs as a subprocess reading ALSA 'default'
through PortAudio. Assertions are on its JSON lines, exit codes and messages."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from support.music import MACHINE_WARS
from support.pulse import GHOST_PCM, NULL_PCM, PACKAGES, PulseServer, missing_tools
from support.server import parse_json_lines

ROOT = Path(__file__).resolve().parents[1]
CLI = str(ROOT / "cli_listen.py")
# Tags of the bundled MusiCNN that count as a plausible reading of electronic music.
ELECTRONIC = {"electronic", "techno", "electronica", "electro", "dance", "house"}
MODEL = "musicnn"  # the bundled offline model: no network, loads in ~1 s


# ---------------------------------------------------------------- fixtures --------------
@pytest.fixture(scope="session")
def pulse(tmp_path_factory):
    missing = missing_tools()
    if missing:
        pytest.skip(f"PulseAudio tools not installed ({', '.join(missing)}): apt-get install {PACKAGES}")
    server = PulseServer(tmp_path_factory.mktemp("pulse")).start()
    yield server
    server.stop()


@pytest.fixture
def sink(pulse):
    """The server, with nothing left playing after the test."""
    yield pulse
    pulse.stop_playing()


@pytest.fixture(scope="session")
def music_wav(tmp_path_factory):
    """40 s of real electronic music (from 18 s into the track, where it is clearly
    electronic/techno), as a WAV for paplay."""
    if not MACHINE_WARS.is_file():
        pytest.skip(f"{MACHINE_WARS} missing: apt-get install asc-music")
    import soundfile as sf

    with sf.SoundFile(str(MACHINE_WARS)) as f:
        f.seek(18 * f.samplerate)
        data = f.read(40 * f.samplerate, dtype="int16")
        rate = f.samplerate
    path = tmp_path_factory.mktemp("music") / "machine_wars_18s.wav"
    sf.write(str(path), data, rate, subtype="PCM_16")
    return path


# ---------------------------------------------------------------- helpers ---------------
def run_cli(args, env, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, CLI, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


class LiveRun:
    """The CLI as a subprocess; stdout lines are collected with their arrival times."""

    def __init__(self, args, env):
        env = {**env, "PYTHONFAULTHANDLER": "1"}  # SIGABRT dumps every thread's stack (see wait)
        self.proc = subprocess.Popen([sys.executable, CLI, *args], env=env, cwd=ROOT, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[tuple[float, str]] = []
        self.stderr = ""
        self._out = threading.Thread(target=self._read_out, daemon=True)
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._out.start()
        self._err.start()

    def _read_out(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def _read_err(self):
        self.stderr = self.proc.stderr.read()

    def wait_for_lines(self, n, timeout):
        deadline = time.monotonic() + timeout
        while len(self.lines) < n and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        return len(self.lines) >= n

    def wait(self, timeout):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # where is it stuck? the stacks go to stderr
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._err.join(5)
            raise AssertionError(f"cli_listen.py did not exit within {timeout} s; stderr:\n{self.stderr}")
        self._out.join(5)
        self._err.join(5)
        return rc

    def json(self):
        objs = [(t, json.loads(line)) for t, line in self.lines]
        results = [(t, o) for t, o in objs if o["event"] == "result"]
        summaries = [o for _, o in objs if o["event"] == "summary"]
        return results, summaries


# ---------------------------------------------------------------- live device -----------
def test_list_devices_shows_the_virtual_mic(pulse):
    r = run_cli(["--list-devices"], pulse.env(), timeout=180)
    assert r.returncode == 0, r.stderr
    assert "default" in r.stdout and "pulse" in r.stdout
    inputs = r.stdout.split("Input devices")[1]
    assert "> " in inputs and "default" in inputs  # the default input is marked
    # the list only: no PortAudio table of every device (outputs too) before it
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert lines[0].startswith("Input devices") and "-d" in lines[0], r.stdout
    assert all(re.match(r"[> ] +\d+ \S", l) and " in, " in l and " out" not in l for l in lines[1:]), r.stdout


def test_live_music_results_every_hop_with_plausible_tags(sink, music_wav):
    sink.play(music_wav)
    hop, duration = 0.5, 10.0
    run = LiveRun(["--duration", str(duration), "--json", "--hop", str(hop), "--model", MODEL], sink.env())
    rc = run.wait(timeout=180)
    assert rc == 0, run.stderr
    results, summaries = run.json()
    assert len(summaries) == 1 and summaries[0]["reason"] == "duration reached"
    # the first readout comes after min_window_s (3 s), then one per hop until --duration
    # seconds of audio were heard, plus possibly the flushed tail. Under CPU load the engine
    # may skip a window (a newer one replaced it while the model was busy): by design, and
    # counted, so results + skipped must account for every hop.
    times = [o["time_s"] for _, o in results]
    on_grid = [t for t in times if abs((t - 3.0) / hop - round((t - 3.0) / hop)) < 0.02]
    assert len(on_grid) >= len(times) - 1 and times == sorted(times), times  # all but the tail
    n_hops = (duration - 3.0) / hop + 1
    skipped = summaries[0]["windows_skipped"]
    assert n_hops <= len(results) + skipped <= n_hops + 2, (len(results), skipped, run.stderr)
    assert len(results) >= 0.6 * n_hops and abs(times[-1] - duration) < 0.3, times
    # ... and they arrive live: wall-clock time between readouts follows the stream time
    # between them (not a burst at the end), with one per hop when nothing is skipped
    (t_a, first), (t_b, last) = results[0], results[-2]
    assert 0.6 < (t_b - t_a) / (last["time_s"] - first["time_s"]) < 1.6, (t_b - t_a, last["time_s"] - first["time_s"])
    if skipped == 0:
        steps = [b - a for a, b in zip(times, times[1:])][:-1]
        assert all(abs(s - hop) < 0.02 for s in steps), steps
    # music is playing: never silent, a real level, a leading genre, electronic tags on top
    assert not any(o["silent"] for _, o in results), [o["level_dbfs"] for _, o in results]
    assert all(o["level_dbfs"] is not None and o["level_dbfs"] > -40 for _, o in results)
    assert all(o["label"] for _, o in results)
    plausible = [bool(ELECTRONIC & set(o["scores"])) for _, o in results]
    assert sum(plausible) >= 0.8 * len(results), [list(o["scores"]) for _, o in results]
    assert summaries[0]["dominant"] in ELECTRONIC | {"experimental", "ambient"}, summaries[0]
    assert all(len(o["scores"]) == 5 for _, o in results)  # top-k default
    assert all(o["latency_ms"] is not None and o["latency_ms"] >= 0 for _, o in results)
    assert summaries[0]["overflows"] == 0 and summaries[0]["windows_classified"] >= len(results) - 1


def test_live_silence_is_reported_as_silent(sink):
    # nothing plays into the sink: its monitor delivers digital silence
    r = run_cli(["--duration", "5", "--json", "--hop", "0.5", "--model", MODEL], sink.env(), timeout=180)
    assert r.returncode == 0, r.stderr
    results, summaries = parse_json_lines(r.stdout)
    assert len(results) >= 5
    assert all(o["silent"] and o["label"] is None and o["scores"] == {} for o in results), results
    assert summaries[0]["dominant"] is None and summaries[0]["windows_classified"] == 0
    assert summaries[0]["windows_silent"] == len(results)


def test_ctrl_c_exits_cleanly_with_summary(sink, music_wav):
    sink.play(music_wav)
    # stdout is a pipe and no --json: plain lines, one per result. A short hop keeps the
    # inference thread busy, so the signal usually lands during a forward pass (which used
    # to abort the interpreter at exit: SIGABRT instead of exit code 0).
    run = LiveRun(["--hop", "0.25", "--model", MODEL], sink.env())
    got = run.wait_for_lines(4, timeout=120)
    assert got, f"no readouts before Ctrl-C; stderr:\n{run.stderr}"
    run.proc.send_signal(signal.SIGINT)
    rc = run.wait(timeout=180)
    assert rc == 0, run.stderr
    out = "\n".join(line for _, line in run.lines)
    assert "Traceback" not in run.stderr
    assert "Session summary (interrupted)" in out
    dominant = out.split("Dominant genre: ")[1].split(".")[0]
    assert dominant == "Electronic", out  # the genre of electronic, techno, ambient, experimental, ...
    readouts = [line for _, line in run.lines if "dBFS" in line]
    assert len(readouts) >= 4 and all("overflows 0" in line for line in readouts)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stop_signal_during_file_replay(pulse, music_wav, sig):
    run = LiveRun(["--file", str(music_wav), "--hop", "0.25", "--json", "--model", MODEL], pulse.env())
    assert run.wait_for_lines(4, timeout=120), run.stderr
    run.proc.send_signal(sig)
    rc = run.wait(timeout=180)
    assert rc == 0, (rc, run.stderr)
    results, summaries = run.json()
    assert len(results) >= 4 and summaries and summaries[0]["reason"] == "interrupted"
    assert summaries[0]["dominant"] is not None and "Session summary (interrupted)" in run.stderr


def test_device_substring_selects_the_pulse_device(sink, music_wav):
    sink.play(music_wav)
    r = run_cli(["-d", "puls", "--duration", "4", "--json", "--hop", "1", "--model", MODEL], sink.env())
    assert r.returncode == 0, r.stderr
    assert "Listening on [" in r.stderr and "] pulse at" in r.stderr
    results, _ = parse_json_lines(r.stdout)
    assert len(results) >= 2 and not any(o["silent"] for o in results)


# ---------------------------------------------------------------- file replay -----------
def test_file_replay_fast_is_deterministic_and_plausible(pulse):
    hop, duration = 1.0, 30.0
    r = run_cli(["--file", str(MACHINE_WARS), "--fast", "--duration", str(duration), "--hop", str(hop),
                 "--json", "--model", MODEL], pulse.env(), timeout=120)
    assert r.returncode == 0, r.stderr
    results, summaries = parse_json_lines(r.stdout)
    times = [o["time_s"] for o in results]
    # inline engine: every hop classified, from the 3 s minimum window to the 30 s limit
    assert times[:3] == [3.0, 4.0, 5.0] and abs(times[-1] - duration) < 0.05, times
    assert all(abs(b - a - hop) < 1e-3 for a, b in zip(times, times[1:])), times
    assert summaries[0]["reason"] == "duration reached" and summaries[0]["windows_skipped"] == 0
    # (not in real time: every hop classified, none skipped and the same readout twice say the engine
    # ran inline; a wall-clock bound would fail on a loaded machine, where start-up alone takes seconds)
    assert summaries[0]["dominant"] in ELECTRONIC | {"experimental", "ambient"}, summaries[0]
    assert sum(bool(ELECTRONIC & set(o["scores"])) for o in results) >= 0.8 * len(results)
    # the same file gives the same readout twice
    r2 = run_cli(["--file", str(MACHINE_WARS), "--fast", "--duration", "6", "--hop", str(hop), "--json",
                  "--model", MODEL], pulse.env(), timeout=120)
    again = {o["time_s"]: o["scores"] for o in parse_json_lines(r2.stdout)[0]}
    first = {o["time_s"]: o["scores"] for o in results}
    common = sorted(set(again) & set(first))
    assert common[:4] == [3.0, 4.0, 5.0, 6.0]
    assert all(again[t] == first[t] for t in common)


def wall_clock(rec) -> float:
    """A record's `at` (ISO-8601 UTC, "...Z") as Unix seconds."""
    from datetime import datetime

    assert rec["at"].endswith("Z") and "T" in rec["at"], rec["at"]
    return datetime.fromisoformat(rec["at"].replace("Z", "+00:00")).timestamp()


def test_json_records_say_when_in_wall_clock_time(pulse):
    """Every result and the summary carry `at` (ISO-8601 UTC) beside `time_s`: when, in the
    day, that readout was ready, so a kiosk's log says what played when."""
    before = time.time()
    r = run_cli(["--file", str(MACHINE_WARS), "--fast", "--duration", "6", "--hop", "1", "--json", "--model", MODEL],
                pulse.env(), timeout=120)
    after = time.time()
    assert r.returncode == 0, r.stderr
    results, summaries = parse_json_lines(r.stdout)
    assert len(results) >= 3 and summaries, r.stdout
    ats = [wall_clock(o) for o in results]
    assert all(before <= t <= after for t in ats) and ats == sorted(ats), (before, ats, after)
    assert ats[-1] <= wall_clock(summaries[0]) <= after


def test_file_replay_real_time_paces_results(pulse, music_wav):
    run = LiveRun(["--file", str(music_wav), "--duration", "7", "--hop", "1", "--json", "--model", MODEL],
                  pulse.env())
    rc = run.wait(timeout=180)
    assert rc == 0, run.stderr
    results, summaries = run.json()
    times = [o["time_s"] for _, o in results]
    assert times[0] in (3.0, 4.0) and abs(times[-1] - 7.0) < 0.05, times  # 3.0 unless skipped under load
    assert all(abs(t - round(t)) < 1e-3 for t in times), times
    # real time: results 1 s of audio apart arrive ~1 s of wall clock apart
    span_audio = times[-1] - times[0]
    span_wall = results[-1][0] - results[0][0]
    assert span_wall > 0.7 * span_audio, (span_wall, span_audio)
    assert summaries[0]["reason"] == "duration reached"


def test_file_replay_missing_file(pulse):
    r = run_cli(["--file", "/nonexistent/song.mp3", "--model", MODEL], pulse.env(), timeout=180)
    assert r.returncode == 3 and "no such file" in r.stderr


# ---------------------------------------------------------------- error paths -----------
def _no_portaudio_env(pulse, tmp_path):
    """An environment where ctypes cannot find libportaudio, so sounddevice's own import
    code raises its real OSError('PortAudio library not found')."""
    (tmp_path / "sitecustomize.py").write_text(
        "import ctypes.util\n"
        "_real = ctypes.util.find_library\n"
        "def find_library(name):\n"
        "    return None if 'portaudio' in name else _real(name)\n"
        "ctypes.util.find_library = find_library\n")
    env = pulse.env()
    env["PYTHONPATH"] = str(tmp_path)
    return env


def test_portaudio_missing_names_the_package(pulse, tmp_path):
    env = _no_portaudio_env(pulse, tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import sounddevice"], env=env, capture_output=True,
                           text=True, timeout=180)
    assert "PortAudio library not found" in probe.stderr  # the simulation is effective
    for args in (["--duration", "2"], ["--list-devices"]):
        r = run_cli(args, env, timeout=180)
        assert r.returncode == 3, r.stderr
        assert "libportaudio2" in r.stderr and "Traceback" not in r.stderr
    # replaying a file does not need PortAudio
    r = run_cli(["--file", str(MACHINE_WARS), "--fast", "--duration", "4", "--hop", "1", "--json", "--model", MODEL],
                env, timeout=180)
    assert r.returncode == 0, r.stderr
    assert parse_json_lines(r.stdout)[0]


def test_unknown_device_lists_inputs(pulse):
    r = run_cli(["-d", "no-such-mic", "--duration", "2"], pulse.env(), timeout=180)
    assert r.returncode == 3
    assert "unknown input device 'no-such-mic'" in r.stderr
    assert "Available input devices" in r.stderr and "default" in r.stderr and "pulse" in r.stderr
    r = run_cli(["-d", "987", "--duration", "2"], pulse.env(), timeout=180)
    assert r.returncode == 3 and "Available input devices" in r.stderr


def test_no_input_device_at_all(pulse, tmp_path):
    env = pulse.env()
    (tmp_path / "run").mkdir()
    env.update(PULSE_SERVER=f"unix:{tmp_path}/no-server", XDG_RUNTIME_DIR=str(tmp_path / "run"),
               HOME=str(tmp_path))  # no sound server, no ~/.asoundrc: PortAudio finds no inputs
    r = run_cli(["--duration", "2"], env, timeout=180)
    assert r.returncode == 3, r.stderr
    assert "there is no default input device" in r.stderr and "none: no microphone" in r.stderr


def test_device_that_cannot_be_opened(pulse):
    r = run_cli(["-d", GHOST_PCM, "--duration", "2", "--model", MODEL], pulse.env(), timeout=180)
    assert r.returncode == 3, r.stderr
    assert f"could not open input device '{GHOST_PCM}'" in r.stderr and "busy" in r.stderr
    assert "Traceback" not in r.stderr


def test_unsupported_sample_rates(pulse):
    r = run_cli(["--samplerate", "400000", "--duration", "2"], pulse.env(), timeout=180)  # the device says no
    assert r.returncode == 3 and "does not support 400000 Hz" in r.stderr, r.stderr
    r = run_cli(["--samplerate", "2000", "--duration", "2"], pulse.env(), timeout=180)  # the engine says no
    assert r.returncode == 2 and "2000 Hz is out of range" in r.stderr, r.stderr
    r = run_cli(["--channels", "99", "--duration", "2"], pulse.env(), timeout=180)
    assert r.returncode == 3 and "too many" in r.stderr, r.stderr


def test_input_faster_than_consumed_is_counted_not_fatal(pulse):
    # the ALSA null PCM has no clock: it delivers silence as fast as PortAudio reads, far faster
    # than real time, so the callback->feeder queue overflows and blocks are dropped
    r = run_cli(["-d", NULL_PCM, "--duration", "600", "--hop", "5", "--json", "--model", MODEL],
                pulse.env(), timeout=180)
    assert r.returncode == 0, r.stderr
    results, summaries = parse_json_lines(r.stdout)
    assert summaries[0]["dropped_blocks"] > 0
    assert results and results[-1]["dropped_blocks"] > 0
    assert "dropped blocks" in r.stderr and "Traceback" not in r.stderr


def test_model_that_cannot_load(pulse, tmp_path):
    r = run_cli(["--model", str(tmp_path / "no-model"), "--duration", "2"], pulse.env(), timeout=180)
    assert r.returncode == 4
    assert "Could not load model" in r.stderr and "Traceback" not in r.stderr


def test_invalid_engine_settings(pulse):
    r = run_cli(["--window", "500", "--duration", "2", "--model", MODEL], pulse.env(), timeout=180)
    assert r.returncode == 2 and "--window 500 is outside 3..30 s" in r.stderr, r.stderr
    r = run_cli(["--hop", "30", "--duration", "2", "--model", MODEL], pulse.env(), timeout=180)
    assert r.returncode == 2 and "--hop 30 is outside 0.25..5 s" in r.stderr, r.stderr
    r = run_cli(["--hop", "-1"], pulse.env(), timeout=180)
    assert r.returncode == 2 and "must be a positive number" in r.stderr
    r = run_cli(["--duration", "0", "--smoothing", "-1"], pulse.env(), timeout=180)  # both named, one exit
    assert r.returncode == 2 and "--duration 0 must be a positive" in r.stderr and "--smoothing -1" in r.stderr
    r = run_cli(["--server", "ws://127.0.0.1:1", "--silence-dbfs", "-40"], pulse.env(), timeout=180)
    assert r.returncode == 2 and "--silence-dbfs does not apply to --server" in r.stderr, r.stderr


def test_server_gets_only_the_engine_flags_given():
    """--server: flags left out keep the server's own defaults (its operator may have set them)."""
    import cli_listen

    assert cli_listen.parse_args(["--server", "ws://h:1"]).server_options == {}
    args = cli_listen.parse_args(["--server", "ws://h:1", "--hop", "0.5", "-k", "0", "-s", "4"])
    assert args.server_options == {"hop": 0.5, "top_k": 0, "smoothing": 4.0}  # 4: given, though the default
    assert (args.window, args.smoothing, args.top_k) == (None, 4.0, 0)
    named = cli_listen.parse_args(["--server", "ws://h:1", "--name", "shop-floor"])
    assert named.server_options == {"name": "shop-floor"}  # travels as the stream's query parameter


def test_busy_device_message_mapping():
    """PortAudio's 'device unavailable' (EBUSY from ALSA hw) cannot be produced on a virtual
    device; check the mapping with the real exception type."""
    import sounddevice as sd

    from ui.terminal.devices import DeviceError, stream_error

    err = stream_error(sd.PortAudioError("Error opening InputStream: Device unavailable", -9985), "USB Mic", 48000, 1)
    assert isinstance(err, DeviceError) and "busy" in str(err) and "USB Mic" in str(err)  # DeviceError: exit 3


# ---------------------------------------------------------------- first-user paths -------
def test_help_does_not_import_the_engine():
    """--help answers at once: argument parsing comes before numpy, torch, PortAudio or rich are imported."""
    r = subprocess.run([sys.executable, "-X", "importtime", CLI, "--help"], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 0 and "--file" in r.stdout
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    # (the shared flags take their help from EngineConfig's docs: stream.config, which needs no numpy)
    forbidden = {"torch", "numpy", "stream.engine", "transformers", "sounddevice", "rich"}
    assert imported and not imported & forbidden, sorted(imported)


def test_unreadable_file_fails_before_the_model_loads(pulse, tmp_path):
    bad = tmp_path / "notes.mp3"
    bad.write_text("this is a text file, not audio\n" * 50)
    r = run_cli(["--file", str(bad), "--json", "--model", "auto"], pulse.env(), timeout=180)
    assert r.returncode == 3, r.stderr
    assert "not a readable audio file: it contains text, not audio" in r.stderr
    assert "Model:" not in r.stderr and r.stdout == ""  # checked before loading, no empty summary
    assert "Note:" not in r.stderr and "mpg123" not in r.stderr.lower() and "possibly a pipe" not in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_too_short_file_says_so_with_the_minimum(pulse, tmp_path):
    import soundfile as sf

    short = tmp_path / "blip.wav"
    sf.write(short, np.sin(np.arange(4410) * 0.1).astype(np.float32) * 0.5, 44100)  # 0.1 s of sound
    r = run_cli(["--file", str(short), "--fast", "--json", "--model", MODEL], pulse.env(), timeout=180)
    assert r.returncode == 3, r.stderr
    assert "0.10 s long: too short to classify; musicnn needs at least 2.98 s" in r.stderr
    assert "silent" not in r.stderr and r.stdout == ""
    # audio cut short by --duration: the summary says why there is no readout
    r = run_cli(["--file", str(MACHINE_WARS), "--fast", "--duration", "1", "--model", MODEL], pulse.env(), timeout=180)
    assert r.returncode == 0, r.stderr
    assert "1.0 s of audio received, too little for a readout (musicnn needs at least 2.98 s)" in r.stdout
    assert "silence" not in r.stdout


def test_unknown_model_advises_cli_flags(pulse):
    r = run_cli(["-m", "nosuchmodel", "--file", str(MACHINE_WARS)], pulse.env(), timeout=180)
    assert r.returncode == 4, r.stderr
    assert "Could not load model 'nosuchmodel'" in r.stderr and "-m musicnn" in r.stderr
    assert "load_model" not in r.stderr and "Traceback" not in r.stderr


def test_json_and_plain_lines_lead_with_the_label(pulse):
    r = run_cli(["--file", str(MACHINE_WARS), "--fast", "--duration", "20", "--json", "--model", MODEL], pulse.env(),
                timeout=120)
    assert r.returncode == 0, r.stderr
    results, summaries = parse_json_lines(r.stdout)
    assert results and all(next(iter(o["scores"])) == o["label"] for o in results)
    assert all(next(iter(o["genre_scores"])) == o["genre"] for o in results)
    assert summaries[0]["dominant"] in {o["label"] for o in results}
    assert summaries[0]["dominant_genre"] in {o["genre"] for o in results}
    r = run_cli(["--file", str(MACHINE_WARS), "--fast", "--duration", "8", "--model", MODEL], pulse.env(), timeout=120)
    lines = [l.split("s  ", 1)[1] for l in r.stdout.splitlines() if "dBFS" in l]
    # "<genre> (<style>)  [likely]  <genre> 0.27  <other genre> 0.15 ...": the genre's own score comes first
    # (the bracketed certainty where the model has a calibration)
    assert lines and all(re.match(r"(\S[^(]*?) \(\S[^)]*\)(\s+\[[^\]]+\])?\s+\1 \d\.\d\d", l) for l in lines), lines


def _tmux(sock, *args, timeout=10):
    return subprocess.run(["tmux", "-S", str(sock), *args], capture_output=True, text=True, timeout=timeout)


def in_tmux(tmp_path, cli_args, size=(80, 14), stderr_to=None, timeout=90, join=False) -> list[list[str]]:
    """cli_listen.py ARGS in a real terminal (tmux) of `size` columns x rows: every screen
    captured until it exits ("CLI-EXIT <code>" is then on the last one). stderr_to: a file for
    its stderr (what is left on screen came through stdout). join: lines the terminal wrapped
    come back joined (tmux capture-pane -J), lines the program broke stay apart."""
    import shutil

    if shutil.which("tmux") is None:
        pytest.skip("tmux not installed: apt-get install tmux")
    sock = tmp_path / "tmux.sock"
    script = tmp_path / "run.sh"
    # (bash may export the LINES it saw before tmux sized the pane; rich would believe it)
    script.write_text(f"cd {tmp_path}\nunset LINES COLUMNS\nexport HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1\n"
                      f"{sys.executable} {CLI} {' '.join(map(str, cli_args))}"
                      + (f" 2>{stderr_to}" if stderr_to else "") + "\necho CLI-EXIT $?\nsleep 120\n")
    r = _tmux(sock, "new-session", "-d", "-s", "t", "-x", str(size[0]), "-y", str(size[1]), f"bash {script}")
    assert r.returncode == 0, r.stderr
    frames = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = _tmux(sock, "capture-pane", "-p", *(["-J"] if join else []), "-t", "t").stdout.splitlines()
            frames.append(screen)
            if any(l.startswith("CLI-EXIT") for l in screen):
                break
            time.sleep(0.2)
    finally:
        _tmux(sock, "kill-server")
    return frames


@pytest.mark.slow
def test_live_panel_in_a_real_terminal_keeps_its_width_and_fits(music_wav, tmp_path):
    """The rich panel in a real 80x14 terminal (tmux): one panel, redrawn in place, the same
    width while listening and with results, and all genres (-k 0: nine) capped to the screen."""
    frames = in_tmux(tmp_path, ["--file", music_wav, "-k", "0", "--duration", "9", "--model", MODEL])
    final = frames[-1]
    assert "CLI-EXIT 0" in final, "\n".join(final)
    widths, seen, complete = set(), set(), 0
    for screen in frames:
        assert len(screen) <= 14
        panel = [i for i, l in enumerate(screen) if l and l[0] in "╭│╰"]
        if not panel:
            continue
        assert panel == list(range(panel[0], panel[-1] + 1)), "\n".join(screen)  # one block, nothing stale
        assert sum(l.startswith("╭") for l in screen) <= 1 and sum(l.startswith("╰") for l in screen) <= 1, \
            "\n".join(screen)
        if not any(l.startswith("╰") for l in screen):
            continue  # captured mid-redraw (a busy machine writes a frame slowly): nothing to measure yet
        complete += 1  # the whole panel fits: its bottom border is on screen
        assert sum(("Leading genre" in l) or ("listening…" in l) for l in screen) <= 1, "\n".join(screen)
        widths |= {len(screen[i].rstrip()) for i in panel}
        seen |= {k for k in ("listening…", "Leading genre", " more (-k N") if any(k in l for l in screen)}
    assert complete >= 3, complete
    assert widths == {80}, widths  # the same width in every frame, listening or showing results
    assert seen == {"listening…", "Leading genre", " more (-k N"}, seen
    assert any("Session summary (duration reached)" in l for l in final)


@pytest.mark.server
def test_server_panel_at_100_columns_fits_names_header_and_summary(music_wav, tmp_path):
    """--server in a 100-column terminal: genre names whole (the server's genres are known only
    from its results), the header on its own line above the panel (even with stderr elsewhere:
    it shares the panel's stream), and a summary wrapped between words."""
    from support.server import ServerProcess

    srv = ServerProcess().wait_ready()
    try:
        frames = in_tmux(tmp_path, ["--server", srv.ws_url, "--file", music_wav, "-k", "0", "--duration", "9"],
                         size=(100, 30), stderr_to=tmp_path / "stderr.txt", timeout=120, join=True)
    finally:
        srv.stop()
    final = frames[-1]
    assert "CLI-EXIT 0" in final, "\n".join(final) + (tmp_path / "stderr.txt").read_text()
    # the header: a line of its own, right above the panel's top border
    top = next(i for i, l in enumerate(final) if l.startswith("╭"))
    assert final[top - 1].rstrip().endswith("Ctrl-C to stop."), "\n".join(final)
    assert "╭" not in final[top - 1], "\n".join(final)
    # every genre name whole: no name in the bars cut with an ellipsis
    bar_row = re.compile(r"^│ +(\S.*?) [█▏▎▍▌▋▊▉ ]+ \d\.\d\d\b")  # name, bar, score
    rows = [m.group(1) for screen in frames for l in screen if (m := bar_row.match(l))]
    assert rows and not any("…" in name for name in rows), rows
    assert "Folk & Country" in rows, set(rows)  # (-k 0: all nine genres)
    # the summary: broken into lines by the listener, between words (rich wraps at spaces); a
    # line the terminal had to wrap, wherever it fell, would come back joined, over 100 columns
    start = next(i for i, l in enumerate(final) if l.startswith("Session summary"))
    end = next(i for i, l in enumerate(final) if l.startswith("CLI-EXIT"))
    summary = [l.rstrip() for l in final[start:end] if l.strip()]
    assert len(summary) >= 2 and all(len(l) <= 100 for l in summary), summary


def test_skipping_is_explained_once_in_cli_terms(pulse, music_wav):
    # the shortest hop (0.25 s) is about a MusiCNN forward on a busy CPU: windows may get skipped
    r = run_cli(["--file", str(music_wav), "--hop", "0.25", "--duration", "5", "--json", "--model", MODEL],
                pulse.env(), timeout=180)
    assert r.returncode == 0, r.stderr
    _, summaries = parse_json_lines(r.stdout)
    notes = [l for l in r.stderr.splitlines() if "windows are skipped" in l]
    if summaries[0]["windows_skipped"]:
        assert len(notes) == 1 and "--hop" in notes[0] and "--fast" in notes[0], r.stderr
    else:  # a CPU fast enough for 20 forwards a second: nothing to explain
        assert not notes
    assert "background=False" not in r.stderr and "analyze_file" not in r.stderr
