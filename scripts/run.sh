#!/usr/bin/env bash
# Set up edge if needed (scripts/setup.sh), then run the sensor daemon.
#   scripts/run.sh [edge run options]      e.g.  scripts/run.sh --source rtsp://phone.local:8080/h264
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >&2
exec .venv/bin/edge run "$@"
