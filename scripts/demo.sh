#!/usr/bin/env bash
# See edge work in a minute: a local Mosquitto on a free loopback port, the
# daemon classifying a sample clip in a loop, and every message it publishes.
#   scripts/demo.sh [CLIP] [SECONDS]        (default: samples/carving_ice.mp4, 40 s)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --demo >&2
clip="${1:-samples/carving_ice.mp4}"
secs="${2:-40}"
tmp="$(mktemp -d)"
port="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" > "$tmp/mosquitto.conf"
cat > "$tmp/config.yaml" <<EOC
device_id: demo
state_dir: $tmp/state
source: {kind: opencv, uri: "$clip", loop: true}
model: {name: movinet-a0-stream-int8, fps: 5, horizon_s: 4}
mqtt: {host: 127.0.0.1, port: $port, stats_interval_s: 10, predictions_max_hz: 1, heartbeat_s: 15}
EOC
mosquitto -c "$tmp/mosquitto.conf" > "$tmp/broker.log" 2>&1 &
broker=$!
sub=""
cleanup() { [ -n "$sub" ] && kill "$sub" 2>/dev/null; kill "$broker" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
for _ in $(seq 50); do mosquitto_sub -h 127.0.0.1 -p "$port" -t x -E -W 1 >/dev/null 2>&1 && break; sleep 0.1; done
echo "demo: broker on 127.0.0.1:$port; showing edge/demo/# for $secs s (Ctrl-C stops)" >&2
mosquitto_sub -h 127.0.0.1 -p "$port" -v -t 'edge/demo/#' -t 'homeassistant/#' &
sub=$!
.venv/bin/edge run --config "$tmp/config.yaml" --duration "$secs"
sleep 0.5
