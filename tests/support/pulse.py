"""A private PulseAudio server with a null sink whose monitor is the default source: a
virtual microphone for tests. Whatever `play()` sends into the sink is what a program
recording from ALSA 'default' (PortAudio -> ALSA pulse plugin -> this server) hears.

Needs the Debian packages pulseaudio, pulseaudio-utils (pactl, paplay) and
libasound2-plugins (the ALSA 'pulse' PCM), plus libportaudio2 for sounddevice.
Everything lives in a temporary directory (own XDG_RUNTIME_DIR and HOME), so a desktop
sound server of the user is never touched; every wait has a timeout.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from harness.proc import stop_process

SINK = "v"
REQUIRED_TOOLS = ("pulseaudio", "pactl", "paplay")
PACKAGES = "pulseaudio pulseaudio-utils libasound2-plugins libportaudio2"

# Extra ALSA PCMs for error-path tests, visible to PortAudio through ~/.asoundrc:
#   NULL_PCM: a capture device that delivers silence as fast as it is read (no clock), so a
#             reader falls behind and must drop blocks.
#   GHOST_PCM: listed by PortAudio but cannot be opened (its PulseAudio source does not exist),
#             like a device that disappeared or is held by someone else.
NULL_PCM = "cli_test_null"
GHOST_PCM = "cli_test_ghost"
ASOUNDRC = f"""pcm.{NULL_PCM} {{ type null }}
pcm.{GHOST_PCM} {{ type pulse; device "no_such_source" }}
"""


def missing_tools() -> list[str]:
    return [t for t in REQUIRED_TOOLS if shutil.which(t) is None]


class PulseServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.runtime = self.root / "run"
        self.home = self.root / "home"
        self.log_path = self.root / "pulseaudio.log"
        self.proc: subprocess.Popen | None = None
        self._players: list[subprocess.Popen] = []

    @property
    def socket(self) -> Path:
        return self.runtime / "pulse" / "native"

    def env(self, base: dict | None = None) -> dict:
        """Environment for the server and its clients (pactl, paplay, the CLI)."""
        env = dict(os.environ if base is None else base)
        env.update(XDG_RUNTIME_DIR=str(self.runtime), HOME=str(self.home),
                   PULSE_SERVER=f"unix:{self.socket}", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        env.pop("PULSE_SINK", None)
        env.pop("PULSE_SOURCE", None)
        return env

    def pactl(self, *args, timeout=10.0) -> subprocess.CompletedProcess:
        return subprocess.run(["pactl", *args], env=self.env(), capture_output=True, text=True, timeout=timeout)

    def start(self, timeout: float = 15.0) -> "PulseServer":
        self.runtime.mkdir(parents=True, exist_ok=True)
        self.runtime.chmod(0o700)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / ".asoundrc").write_text(ASOUNDRC)
        log = open(self.log_path, "wb")
        # -n: no default.pa (only the modules named here); never exit when idle. As root
        # pulseaudio warns ("not intended to be run as root") but runs.
        self.proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--log-target=stderr",
             "-L", "module-native-protocol-unix", "-L", f"module-null-sink sink_name={SINK}"],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pulseaudio exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.pactl("info", timeout=3).returncode == 0:
                    break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pulseaudio did not answer within {timeout} s:\n{self.log()}")
            time.sleep(0.1)
        r = self.pactl("set-default-source", f"{SINK}.monitor")
        if r.returncode != 0:
            self.stop()
            raise RuntimeError(f"pactl set-default-source failed: {r.stderr}")
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def play(self, wav_path) -> subprocess.Popen:
        """Start playing a WAV into the null sink (returns at once)."""
        p = subprocess.Popen(["paplay", "-d", SINK, str(wav_path)], env=self.env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._players.append(p)
        return p

    def stop_playing(self) -> None:
        for p in self._players:
            stop_process(p)
        self._players.clear()

    def stop(self) -> None:
        self.stop_playing()
        stop_process(self.proc)
        self.proc = None
