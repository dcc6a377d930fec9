#!/usr/bin/env bash
# The service under a real systemd: boot a Debian bookworm root under systemd-nspawn, install
# edge in it exactly as README.md documents (scripts/install-service.sh) and check it.
#
#   sudo EDGE_MODEL_MIRROR=DIR scripts/test-service.sh
#
# Prints one "PASS|FAIL name: detail" line per check and exits 1 if any failed; prints one
# "test-service: skipped: why" line and exits 0 where it cannot run (not root, no apt-get).
# The root (~270 MB, ~1.5 min once; mmdebstrap from Debian's mirror) and a wheelhouse of the
# project's dependencies are cached in $EDGE_SERVICE_TEST_DIR (default
# /var/tmp/edge-service-test); the container runs with --private-network, so pip installs
# from that wheelhouse and nothing inside reaches the network. Models come from
# $EDGE_MODEL_MIRROR. About 4 minutes on two cores once cached.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
D="${EDGE_SERVICE_TEST_DIR:-/var/tmp/edge-service-test}"
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-venv,mosquitto,mosquitto-clients,procps,ca-certificates,libglib2.0-0
skip() { echo "test-service: skipped: $*"; exit 0; }
say() { echo "test-service: $*" >&2; }

[ "$(id -u)" = 0 ] || skip "needs root (systemd-nspawn)"
command -v apt-get >/dev/null || skip "no apt-get to install systemd-nspawn and mmdebstrap"
mirror="${EDGE_MODEL_MIRROR:-}"
if [ -z "$mirror" ] || [ ! -d "$mirror" ]; then
  echo "test-service: set EDGE_MODEL_MIRROR to a models mirror directory (the container has no network)" >&2
  exit 2
fi
missing=()
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mkdir -p "$D"

# --- the root, once per package list ------------------------------------------------------
stamp="$D/root.pristine/.edge-packages"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$PACKAGES" ]; then
  say "building the root in $D/root.pristine (once)"
  rm -rf "$D/root.build" "$D/root.pristine"
  mmdebstrap --quiet --variant=minbase --include="$PACKAGES" bookworm "$D/root.build" >"$D/build.log" 2>&1 \
    || { cat "$D/build.log" >&2; exit 1; }
  # mmdebstrap writes no /etc/hosts; without one "localhost" (the default mqtt.host) does not resolve.
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$D/root.build/etc/hosts"
  echo "$PACKAGES" > "$D/root.build/.edge-packages"
  mv "$D/root.build" "$D/root.pristine"
fi
pyver=$(chroot "$D/root.pristine" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# --- a wheelhouse of the dependencies, once per dependency list ---------------------------
# Downloaded here with this machine's pip configuration, for the root's Python.
reqs=$(cd "$src" && python3 - <<'PY'
import tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print("\n".join(["setuptools>=77", *deps]))
PY
)
key=$(printf '%s\n%s\n' "$pyver" "$reqs" | sha256sum | cut -c1-16)
wheels="$D/wheelhouse-$key"
if [ ! -f "$wheels/.complete" ]; then
  say "downloading the dependencies into $wheels (once)"
  rm -rf "$wheels"; mkdir -p "$wheels"
  printf '%s\n' "$reqs" > "$wheels/requirements.txt"
  hostver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  target=()
  [ "$hostver" = "$pyver" ] || target=(--python-version "$pyver" --only-binary=:all:)
  python3 -m pip download -q --disable-pip-version-check "${target[@]}" -d "$wheels" \
    -r "$wheels/requirements.txt" >"$D/pip.log" 2>&1 || { cat "$D/pip.log" >&2; exit 1; }
  touch "$wheels/.complete"
fi

# --- a fresh copy with the project, the models, the wheelhouse and the boot-time test ------
R="$D/root"
rm -rf "$R"
cp -a --reflink=auto "$D/root.pristine" "$R"
mkdir -p "$R/root/edge-src" "$R/root/models-mirror" "$R/root/wheelhouse" "$R/srv/clips"
(cd "$src" && tar --exclude=./.git --exclude=./.venv --exclude=./var -cf - .) | tar -xf - -C "$R/root/edge-src"
cp -r "$mirror/." "$R/root/models-mirror/"
cp "$wheels"/*.whl "$R/root/wheelhouse/"
install -m 0644 "$src/samples/carving_ice.mp4" "$R/srv/clips/"
cat > "$R/etc/systemd/system/edge-test.service" <<'UNIT'
[Unit]
Description=edge service test (writes /root/out, then powers off)
After=multi-user.target mosquitto.service
[Service]
Type=oneshot
TimeoutStartSec=infinity
Environment=PIP_NO_INDEX=1 PIP_FIND_LINKS=/root/wheelhouse
ExecStart=/bin/bash /root/edge-src/tests/service/inside.sh
UNIT
ln -sf /etc/systemd/system/edge-test.service "$R/etc/systemd/system/multi-user.target.wants/edge-test.service"

# --- boot, wait for the power-off, report -------------------------------------------------
say "booting under systemd-nspawn (log: $D/console.log)"
t=$(date +%s)
set +e
timeout "${EDGE_SERVICE_TEST_LIMIT:-1200}" systemd-nspawn -q --register=no --keep-unit --private-network \
  --console=pipe -b -D "$R" </dev/null >"$D/console.log" 2>&1
rc=$?
set -e
rm -rf "$D/out"; cp -r "$R/root/out" "$D/out" 2>/dev/null || true
say "container exited rc=$rc after $(( $(date +%s) - t )) s; log: $D/out/log"
if [ ! -s "$D/out/summary" ]; then
  echo "FAIL boot: no results (see $D/console.log)"
  exit 1
fi
cat "$D/out/summary"
pass=$(grep -c '^PASS ' "$D/out/summary" || true)
fail=$(grep -c '^FAIL ' "$D/out/summary" || true)
total=$((pass + fail))
if [ "$fail" = 0 ] && [ "$pass" -ge 12 ]; then echo "test-service: all $total checks passed"; exit 0; fi
echo "test-service: $fail of $total checks failed (12 expected)"
exit 1
