#!/usr/bin/env bash
# Install the project into a virtualenv .venv beside this script's repo, plus the Debian packages it needs.
#   bash scripts/setup.sh         runtime: PortAudio for the terminal listener, ffmpeg for odd file formats
#   bash scripts/setup.sh --dev   + what the tests use: Chromium, a PulseAudio virtual mic, real music (asc-music)
# Then: .venv/bin/genre-app, .venv/bin/genre-listen (after --dev also: .venv/bin/python -m pytest -q -n 4)
# The venv is made with $PYTHON (default: python3 on PATH). Always using one means the same commands work on a
# Python that allows pip installs and on one managed by the system (PEP 668: Debian's own /usr/bin/python3).
# The project is installed editable: changes to the checkout take effect without reinstalling.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "" | --dev) ;;
  *) echo "usage: bash scripts/setup.sh [--dev]" >&2; exit 2 ;;
esac
PYTHON="${PYTHON:-python3}"
VENV=.venv
if ! command -v "$PYTHON" >/dev/null; then
  echo "setup: $PYTHON not found. Install Python 3.10 or newer (Debian: apt-get install python3 python3-venv)," >&2
  echo "or name one: PYTHON=/path/to/python3 bash scripts/setup.sh $*" >&2
  exit 2
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "setup: $("$PYTHON" -V 2>&1) is too old; Python 3.10 or newer is needed (PYTHON=/path/to/python3 picks one)." >&2
  exit 2
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
pkgs=(libportaudio2 ffmpeg)
# npm fetches onnxruntime-web for the kiosk's device mode (below). A Node.js that brings its own npm (NodeSource's)
# conflicts with Debian's npm package: install it only where no npm is on PATH.
command -v npm >/dev/null || pkgs+=(npm)
if [ "${1:-}" = "--dev" ]; then
  pkgs+=(chromium pulseaudio pulseaudio-utils libasound2-plugins asc-music tmux wesnoth-1.16-music espeak-ng procps)
fi
# Debian ships venv's pip bootstrap (ensurepip) in a separate package, python3.X-venv.
if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
  pkgs+=("python$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv")
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${pkgs[@]}"

# A venv that no longer runs (moved checkout, its Python removed) is made anew; to switch Pythons: rm -r .venv
if [ -e "$VENV" ] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
  echo "setup: $VENV is broken; making it anew" >&2
  rm -rf "$VENV"
fi
if [ ! -e "$VENV" ]; then
  echo "setup: creating $VENV with $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
# requirements*.txt are installed as well as the package: they are what a Space installs and what tests run
# against; tests/test_packaging.py checks that pyproject.toml lists the same.
if [ "${1:-}" = "--dev" ]; then
  "${PIP[@]}" install -q -e ".[dev]" -r requirements-dev.txt
  # The converter tests read the original musicnn checkpoints out of this wheel (no TensorFlow needed).
  "${PIP[@]}" download -q --no-deps musicnn==0.1.0 -d /tmp/musicnn_whl
else
  "${PIP[@]}" install -q -e . -r requirements.txt
fi
# The kiosk's device mode runs onnxruntime-web in the browser: one pinned release, checked against its
# registry integrity, vendored as package data (tools/vendor_ort_web.py; not in git, ~15 MB).
if ! "$VENV/bin/python" tools/vendor_ort_web.py; then
  if [ "${1:-}" = "--dev" ]; then exit 1; fi
  echo "setup: WARNING: onnxruntime-web could not be vendored; the kiosk's device mode (?compute=device) is unavailable" >&2
fi
# The closing advice names only what this mode installed (pytest comes with --dev).
if [ "${1:-}" = "--dev" ]; then
  echo "setup: done (with the test tools). Run the tests: .venv/bin/python -m pytest -q -n 4; the page: .venv/bin/genre-app;" \
    "the terminal listener: .venv/bin/genre-listen"
else
  echo "setup: done. Run .venv/bin/genre-app (page), .venv/bin/genre-listen (terminal), .venv/bin/genre-serve" \
    "--model musicnn (server). For the tests: bash scripts/setup.sh --dev"
fi
