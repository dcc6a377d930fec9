#!/usr/bin/env bash
# Set up edge in this checkout: system packages where missing, a virtual environment with
# the package, and the models. `scripts/setup.sh --help` says how.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: scripts/setup.sh [OPTIONS]

Set up edge in this checkout: the system packages it lacks, a virtual environment
(.venv) with edge installed, and the default models. Safe to run again: a step
that is already done is skipped, and only what was installed is reported.

Options:
  --test                 also the test tools, Mosquitto, Chromium with its driver (the
                         live page's browser test) and the models the tests use
  --plot                 also matplotlib, for 'edge classify --plot'
  --web                  also the live page's server (aiohttp), for 'web.enabled: true'
  --demo                 also Mosquitto and its clients (scripts/demo.sh)
  --models-from DIR|URL  copy the models from a mirror (a USB stick, a local server)
                         instead of downloading them (default: $EDGE_MODEL_MIRROR)
  --no-models            install no models
  --models-only          only the models step (the environment is set up already)
  --debian-packages      take numpy, OpenCV and PyYAML from the system's packages
                         (automatic on a Raspberry Pi and on 32-bit ARM)
  --venv DIR             the virtual environment to create or use (default: .venv)
  -h, --help             this text

Environment:
  EDGE_MODEL_MIRROR      a model mirror folder or URL, as --models-from
  EDGE_MODELS_DIR        where models are installed (default ~/.local/share/edge/models)
  PYTHON                 the Python to build the environment with (default python3)

Where it runs: 64-bit Linux (x86-64, aarch64) with Python 3.10-3.14 from PyPI's
wheels; Raspberry Pi OS with Debian's numpy, OpenCV and PyYAML (picamera2 needs
them); 32-bit Raspberry Pi OS with Python 3.10 or 3.11 and tflite-runtime;
Android in Termux through proot-distro Debian (see README.md, "Android").
EOF
}

want_test=0 want_demo=0 want_plot=0 want_web=0 want_models=1 want_env=1 debian_pkgs=0 venv=.venv
models_from="${EDGE_MODEL_MIRROR:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --test) want_test=1 ;;
    --demo) want_demo=1 ;;
    --plot) want_plot=1 ;;
    --web) want_web=1 ;;
    --no-models) want_models=0 ;;
    --models-only) want_env=0 ;;
    --debian-packages) debian_pkgs=1 ;;
    --models-from|--venv)
      [ $# -ge 2 ] || { echo "setup.sh: $1 needs a value (see --help)" >&2; exit 2; }
      if [ "$1" = --venv ]; then venv="$2"; else models_from="$2"; fi
      shift ;;
    --models-from=*) models_from="${1#*=}" ;;
    --venv=*) venv="${1#*=}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf 'setup: %s\n' "$*" >&2; }

# --- where this is --------------------------------------------------------
# Termux's own environment cannot take PyPI's manylinux wheels (its libc is Android's);
# proot-distro's Debian can. proot-distro passes ANDROID_ROOT/ANDROID_DATA into its
# login shell but not Termux's TERMUX_VERSION, and reports a "-PRoot-Distro" kernel.
android=none
if [ -n "${TERMUX_VERSION:-}" ] || [[ "${PREFIX:-}" == /data/data/com.termux/* ]]; then
  android=termux
elif [ -n "${ANDROID_ROOT:-}${ANDROID_DATA:-}" ] || [[ "$(uname -r)" == *PRoot* ]]; then
  android=proot
fi
if [ $android = termux ]; then
  say "this is Termux's own environment, where LiteRT and OpenCV wheels do not install; run edge in a Debian userland instead:"
  say "  pkg install proot-distro && proot-distro install debian && proot-distro login debian"
  say "then, inside it, clone the project and run scripts/setup.sh again (README.md, \"Android\")"
  exit 2
fi

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  say "python3 not found: install Python 3.10 or newer (apt-get install python3 python3-venv)"; exit 2
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  say "$("$PYTHON" --version 2>&1) is too old: edge needs Python 3.10 or newer"; exit 2
fi
pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

is_pi=0
if grep -qs "Raspberry Pi" /proc/device-tree/model; then is_pi=1; fi

# A 32-bit userland on a 64-bit kernel (a Pi 4/5 with 32-bit Raspberry Pi OS) says aarch64
# in uname -m and in pip's platform_machine, so the pointer size decides, not the machine.
bits="$("$PYTHON" -c 'import struct; print(struct.calcsize("P") * 8)')"
runtime=ai-edge-litert
if [ "$bits" = 32 ]; then
  case "$(uname -m)" in
    arm*|aarch64) ;;
    *) say "a 32-bit Python on $(uname -m): no TFLite runtime is published for it; use a 64-bit system"; exit 2 ;;
  esac
  # LiteRT has no 32-bit wheels; tflite-runtime 2.14 (the last) has armv7l ones for cp310/cp311.
  case "$pyver" in
    3.10|3.11) runtime="tflite-runtime==2.14.0" ;;
    *) say "32-bit ARM with Python $pyver: the only TFLite runtime for 32-bit ARM (tflite-runtime 2.14) supports Python 3.10 and 3.11; use a 64-bit OS (64-bit Raspberry Pi OS) or Python 3.11"; exit 2 ;;
  esac
  debian_pkgs=1  # PyPI has no 32-bit ARM wheels of numpy, OpenCV or PyYAML
fi
# picamera2 comes from Raspberry Pi OS, built against Debian's numpy: a newer numpy from PyPI
# in the venv would break its import, so on a Pi the whole numeric stack is Debian's.
if [ $is_pi = 1 ]; then debian_pkgs=1; fi

# --- system packages, only those missing ---------------------------------
system_packages() {
  apt_missing=()
  need_cmd() { command -v "$1" >/dev/null 2>&1 || apt_missing+=("$2"); }
  need_module() { "$PYTHON" -c "import $1" >/dev/null 2>&1 || apt_missing+=("$2"); }
  if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then apt_missing+=(python3-venv); fi
  if [ $want_test = 1 ] || [ $want_demo = 1 ]; then
    need_cmd mosquitto mosquitto
    need_cmd mosquitto_sub mosquitto-clients
    need_cmd openssl openssl
  fi
  if [ $want_test = 1 ]; then need_cmd nats-server nats-server; fi  # the tests' second broker
  if [ $want_test = 1 ]; then
    need_cmd chromium chromium
    need_cmd chromedriver chromium-driver
  fi
  if [ $is_pi = 1 ]; then need_module picamera2 python3-picamera2; fi
  if [ $debian_pkgs = 1 ]; then
    need_module numpy python3-numpy
    need_module cv2 python3-opencv
    need_module yaml python3-yaml
    if [ $want_test = 1 ]; then need_module psutil python3-psutil; fi
    if [ $want_test = 1 ] || [ $want_plot = 1 ]; then need_module matplotlib python3-matplotlib; fi
  fi
  if [ ${#apt_missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then sudo_=""; elif sudo -n true 2>/dev/null; then sudo_="sudo -n"; else sudo_=none; fi
    if [ "$sudo_" = none ] || ! command -v apt-get >/dev/null 2>&1; then
      say "please install: ${apt_missing[*]} (with your system's package manager), then run this again"; exit 2
    fi
    say "installing system packages: ${apt_missing[*]}"
    changed=1
    $sudo_ apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
  fi
  # A broker installed from Debian starts itself; the tests and the demo run their own.
}

# --- virtual environment and package --------------------------------------
environment() {
  extras=()
  if [ $want_test = 1 ]; then extras+=(test); fi
  if [ $want_plot = 1 ]; then extras+=(plot); fi
  if [ $want_web = 1 ]; then extras+=(web); fi
  # setuptools' notice about editable installs (a folder named edge in the working directory
  # could shadow the package) is noise for a user, who runs edge from .venv/bin.
  pip() {
    PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:Editable installation" \
      "$venv/bin/python" -m pip -q --disable-pip-version-check "$@"
  }

  if [ -x "$venv/bin/python" ] && [ $debian_pkgs = 1 ] && \
     ! "$venv/bin/python" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix or not any(p.endswith("dist-packages") for p in sys.path))'; then
    say "recreating $venv so that it sees the system's packages"
    rm -rf "$venv"
  fi
  if [ ! -x "$venv/bin/python" ]; then
    venv_opts=()
    if [ $debian_pkgs = 1 ]; then venv_opts+=(--system-site-packages); fi
    say "creating virtual environment $venv"
    "$PYTHON" -m venv "${venv_opts[@]}" "$venv"
  fi

  # The stamp lists what was installed; it is stale when pyproject.toml is newer.
  stamp="$venv/.edge-installed"
  installed_ok=1
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then installed_ok=0; fi
  for x in "${extras[@]}"; do grep -qx "$x" "$stamp" 2>/dev/null || installed_ok=0; done
  if [ $installed_ok = 0 ]; then
    all_extras=("${extras[@]}")
    if [ -f "$stamp" ] && [ ! pyproject.toml -nt "$stamp" ]; then
      while read -r x; do [ -n "$x" ] && [ "$x" != base ] && all_extras+=("$x"); done < "$stamp"
    fi
    spec="."
    if [ ${#all_extras[@]} -gt 0 ]; then
      spec=".[$(printf '%s\n' "${all_extras[@]}" | sort -u | paste -sd, -)]"
    fi
    say "installing edge${spec#.} into $venv"
    pip install --upgrade pip
    if [ $debian_pkgs = 0 ]; then
      pip install -e "$spec"
    else
      # edge itself without its dependencies, then those the system does not provide, with
      # numpy held at the system's version so nothing replaces the one picamera2 was built for.
      pip install --no-deps -e .
      reqs=()
      reqs_out="$("$venv/bin/python" scripts/unprovided-requirements.py "${all_extras[@]}")"
      if [ -n "$reqs_out" ]; then mapfile -t reqs <<< "$reqs_out"; fi
      numpy_pin="$("$venv/bin/python" -c 'import numpy; print(numpy.__version__)')"
      constraints="$(mktemp)"
      trap 'rm -f "$constraints"' EXIT
      printf 'numpy==%s\n' "$numpy_pin" > "$constraints"
      # Debian's OpenCV carries no pip metadata, so pip would report edge's opencv-python-headless
      # requirement as broken; the import check below is what tells whether it works.
      pip install --no-warn-conflicts -c "$constraints" "${reqs[@]}" "$runtime"
    fi
    check='import cv2, numpy, paho.mqtt.client, pydantic, yaml; from edge.runtime import backend_name; print(backend_name())'
    if ! rt="$("$venv/bin/python" -c "$check" 2>&1)"; then
      say "installed edge into $venv, but it does not load there: ${rt##*$'\n'}"; exit 2
    fi
    { echo base; printf '%s\n' "${all_extras[@]}"; } | sort -u > "$stamp"
    say "installed edge into $venv (Python $pyver, $rt)"
    changed=1
  fi
}

changed=0
if [ $want_env = 1 ]; then system_packages; environment; fi

# --- models ---------------------------------------------------------------
# Only what was installed is reported (and then what was skipped); models already in place
# pass quietly, so a ready machine goes straight to the job.
edge_models() {
  local out status=0
  out="$("$venv/bin/edge" models "$@")" || status=$?
  if grep -q ': installed ' <<< "$out"; then
    changed=1
    grep -v ': already installed in ' <<< "$out" || true
  fi
  return $status
}
if [ $want_models = 1 ]; then
  needed=(movinet-a0-stream-int8 mobilenet-v2-quant)
  if [ $want_test = 1 ]; then needed+=(customvision-fruits); fi
  mirror="$models_from"
  if [ -n "$mirror" ] && [[ "$mirror" != http://* && "$mirror" != https://* ]] && [ ! -d "$mirror" ]; then
    say "the model mirror $mirror is not there (no such folder): keeping the installed models"
    mirror=""
  fi
  if [ -n "$mirror" ]; then
    all=(fetch --all-available --from "$mirror")
    if [ $want_test = 1 ]; then all+=(--test-models); fi
    edge_models "${all[@]}"
  fi
  # The default models, from the mirror when it holds them, else from their addresses.
  EDGE_MODEL_MIRROR="$mirror" edge_models fetch "${needed[@]}"
fi

if [ $changed = 0 ]; then exit 0; fi
say "ready: $venv/bin/edge --help"
if [ $android = proot ]; then
  say "Android (proot-distro): there is no systemd here, so no service; run edge from Termux in the background:"
  say "  termux-wake-lock"
  say "  nohup proot-distro login debian -- sh -c 'cd $(pwd) && scripts/run.sh --source http://127.0.0.1:8080/video' > ~/edge.log 2>&1 &"
fi
