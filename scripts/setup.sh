#!/usr/bin/env bash
# Set up edge in this checkout: system packages where missing, a virtual
# environment (.venv), the package, and the models.
#
#   scripts/setup.sh [--test] [--demo] [--models-from DIR_OR_URL] [--no-models]
#
# --test         also install the test extras and Mosquitto (the tests start their own broker)
# --demo         also install Mosquitto and its clients (scripts/demo.sh)
# --models-from  copy models from a local mirror directory (a USB stick) or a mirror URL
#                instead of downloading each from its catalogue address; defaults to
#                $EDGE_MODEL_MIRROR when set
# --no-models    skip installing models
#
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0 want_demo=0 want_models=1
models_from="${EDGE_MODEL_MIRROR:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --test) want_test=1 ;;
    --demo) want_demo=1 ;;
    --no-models) want_models=0 ;;
    --models-from) models_from="$2"; shift ;;
    --models-from=*) models_from="${1#*=}" ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf 'setup: %s\n' "$*" >&2; }

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  say "python3 not found: install Python 3.10 or newer (apt-get install python3 python3-venv)"; exit 2
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  say "$("$PYTHON" --version 2>&1) is too old: edge needs Python 3.10 or newer"; exit 2
fi

is_pi=0
if grep -qs "Raspberry Pi" /proc/device-tree/model; then is_pi=1; fi

# --- system packages, only those missing ---------------------------------
apt_missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || apt_missing+=("$2"); }
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then apt_missing+=(python3-venv); fi
if [ $want_test = 1 ] || [ $want_demo = 1 ]; then
  need_cmd mosquitto mosquitto
  need_cmd mosquitto_sub mosquitto-clients
  need_cmd openssl openssl
fi
if [ $is_pi = 1 ] && ! "$PYTHON" -c 'import picamera2' >/dev/null 2>&1; then
  apt_missing+=(python3-picamera2)
fi
if [ ${#apt_missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo_=""; elif sudo -n true 2>/dev/null; then sudo_="sudo -n"; else sudo_=none; fi
  if [ "$sudo_" = none ] || ! command -v apt-get >/dev/null 2>&1; then
    say "please install: ${apt_missing[*]} (with your system's package manager), then run this again"; exit 2
  fi
  say "installing system packages: ${apt_missing[*]}"
  $sudo_ apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi
# A broker installed from Debian starts itself; the tests and the demo run their own.

# --- virtual environment and package --------------------------------------
if [ ! -x .venv/bin/python ]; then
  venv_opts=()
  # picamera2 and libcamera come from Raspberry Pi OS packages, not PyPI.
  if [ $is_pi = 1 ]; then venv_opts+=(--system-site-packages); fi
  say "creating virtual environment .venv"
  "$PYTHON" -m venv "${venv_opts[@]}" .venv
fi
extras=""
if [ $want_test = 1 ]; then extras="[test]"; fi
stamp=".venv/.edge-installed${extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing edge${extras} into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
  case "$(uname -m)" in
    armv6l|armv7l)  # no LiteRT wheels for 32-bit ARM: the retired runtime, which needs numpy 1
      .venv/bin/python -m pip install -q --disable-pip-version-check tflite-runtime "numpy<2" ;;
  esac
  touch "$stamp"
  say "ready: .venv/bin/edge --help"
fi

# --- models ---------------------------------------------------------------
# Only what was installed is reported; models already in place are passed over quietly.
fetch() { .venv/bin/edge models fetch "$@" | { grep -v ': already installed in ' || true; }; }
if [ $want_models = 1 ]; then
  if [ -n "$models_from" ]; then
    fetch --all-available --from "$models_from"
  elif [ $want_test = 1 ]; then
    fetch movinet-a0-stream-int8 mobilenet-v2-quant customvision-fruits
  else
    fetch movinet-a0-stream-int8 mobilenet-v2-quant
  fi
fi
