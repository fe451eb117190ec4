#!/usr/bin/env bash
# Install what the project needs on Debian 12 / Python 3.11.
#   bash scripts/setup.sh         runtime: PortAudio for the terminal listener, ffmpeg for odd file formats
#   bash scripts/setup.sh --dev   + what the tests use: Chromium, a PulseAudio virtual mic, real music (asc-music)
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
pkgs=(libportaudio2 ffmpeg)
if [ "${1:-}" = "--dev" ]; then
  pkgs+=(chromium pulseaudio pulseaudio-utils libasound2-plugins asc-music wesnoth-1.16-music)
fi
# Debian's own python3 refuses system-wide pip installs (PEP 668): use a virtualenv there.
if [ -z "${VIRTUAL_ENV:-}" ] && python3 -c 'import sys, sysconfig, os; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
  echo "This python3 is managed by the system (PEP 668). Create and activate a virtualenv first:" >&2
  echo "  python3 -m venv .venv && . .venv/bin/activate && bash scripts/setup.sh $*" >&2
  exit 2
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${pkgs[@]}"
if [ "${1:-}" = "--dev" ]; then
  python3 -m pip install -q -r requirements-dev.txt
  # The converter tests read the original musicnn checkpoints out of this wheel (no TensorFlow needed).
  python3 -m pip download -q --no-deps musicnn==0.1.0 -d /tmp/musicnn_whl
else
  python3 -m pip install -q -r requirements.txt
fi
