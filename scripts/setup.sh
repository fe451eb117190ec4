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
  pkgs+=(chromium pulseaudio pulseaudio-utils libasound2-plugins asc-music)
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${pkgs[@]}"
if [ "${1:-}" = "--dev" ]; then
  python3 -m pip install -q -r requirements-dev.txt
else
  python3 -m pip install -q -r requirements.txt
fi
