#!/usr/bin/env bash
# Install (or upgrade) edge as a systemd service.
#
#   sudo scripts/install-service.sh [--prefix /opt/edge] [--models-from DIR_OR_URL] [--no-start]
#
# Copies this checkout to PREFIX, sets it up there, creates the unprivileged
# user 'edge' (group video), installs the models into /var/lib/edge/models,
# writes /etc/edge/config.yaml if it does not exist (an existing one is kept),
# checks it, and enables the unit. Run it again after 'git pull' to upgrade.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/edge models_from="${EDGE_MODEL_MIRROR:-}" start=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift ;;
    --models-from) models_from="$2"; shift ;;
    --no-start) start=0 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "install-service.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$(id -u)" != 0 ]; then echo "install-service.sh: run as root (sudo)" >&2; exit 2; fi
say() { printf 'install: %s\n' "$*"; }

if ! id edge >/dev/null 2>&1; then
  say "creating system user edge"
  getent group video >/dev/null || groupadd --system video
  useradd --system --home-dir /var/lib/edge --no-create-home --shell /usr/sbin/nologin \
    --user-group --groups video edge
fi

say "copying $src to $prefix"
mkdir -p "$prefix"
if [ "$src" != "$prefix" ]; then
  (cd "$src" && tar --exclude=./.venv --exclude=./.git --exclude=./var -cf - .) | (cd "$prefix" && tar -xf -)
fi
# The service's interpreter must be one the unprivileged user can run: the
# system Python, not one under root's home (pyenv and the like).
if [ -x /usr/bin/python3 ]; then export PYTHON=/usr/bin/python3; fi
if [ -x "$prefix/.venv/bin/python" ] && ! runuser -u edge -- "$prefix/.venv/bin/python" -c '' 2>/dev/null; then
  say "recreating $prefix/.venv with a Python user edge can run"
  rm -rf "$prefix/.venv"
fi
"$prefix/scripts/setup.sh" --no-models
if ! runuser -u edge -- "$prefix/.venv/bin/python" -c 'import edge' 2>/dev/null; then
  echo "install-service.sh: user edge cannot run $prefix/.venv/bin/python; install python3 system-wide (apt-get install python3 python3-venv) and run this again" >&2
  exit 2
fi

install -d -m 0750 -o edge -g edge /var/lib/edge /var/lib/edge/models
install -d -m 0750 -o root -g edge /etc/edge
fetch=(fetch movinet-a0-stream-int8)
if [ -n "$models_from" ]; then fetch=(fetch --from "$models_from" movinet-a0-stream-int8); fi
EDGE_MODELS_DIR=/var/lib/edge/models "$prefix/.venv/bin/edge" models "${fetch[@]}"
chown -R edge:edge /var/lib/edge

if [ ! -f /etc/edge/config.yaml ]; then
  say "writing /etc/edge/config.yaml"
  sed -e 's|^state_dir: .*|state_dir: /var/lib/edge|' \
      -e 's|^# models_dir: .*|models_dir: /var/lib/edge/models|' \
      "$prefix/config.yaml" > /etc/edge/config.yaml
  chown root:edge /etc/edge/config.yaml; chmod 0640 /etc/edge/config.yaml
fi
"$prefix/.venv/bin/edge" check-config /etc/edge/config.yaml

sed "s|@PREFIX@|$prefix|g" "$prefix/systemd/edge.service" > /etc/systemd/system/edge.service
# The unit denies every IP address but loopback; allow what this config talks to.
allow="$("$prefix/.venv/bin/edge" check-config --ip-allow /etc/edge/config.yaml)"
mkdir -p /etc/systemd/system/edge.service.d
cat > /etc/systemd/system/edge.service.d/ip-allow.conf <<EOF
# Written by scripts/install-service.sh from /etc/edge/config.yaml (mqtt.host, a stream
# source.uri, the DNS servers, service.ip_allow): run it again after changing those.
[Service]
IPAddressAllow=$allow
Environment="EDGE_IP_ALLOW=$allow"
EOF
say "network: the service may reach $allow"
systemctl daemon-reload
if [ $start = 1 ]; then
  systemctl enable edge.service
  systemctl restart edge.service
  say "started: $(systemctl show -P StatusText edge.service)"
  say "follow it with: journalctl -u edge -f"
else
  say "installed; start it with: systemctl enable --now edge"
fi
