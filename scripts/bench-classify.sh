#!/usr/bin/env bash
# End-to-end speed of `edge classify --fps 1000` (every frame, start-up included) against
# the lean loop of `edge bench` run the same way, interleaved, on a 1,000-frame clip.
#   scripts/bench-classify.sh [CLIP] [RUNS]     (default: the sample clip looped to 1,000 frames, 5 runs)
# Uses hyperfine when it is installed, else times the runs itself and prints the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RUNS=${2:-5}
CLIP=${1:-}
if [[ -z "$CLIP" ]]; then
    CLIP=$(mktemp -d)/clip1000.mp4
    "$PY" - "$CLIP" <<'PYEOF'
import sys, cv2
src, out = "samples/carving_ice.mp4", sys.argv[1]
writer, n = None, 0
while n < 1000:
    cap = cv2.VideoCapture(src)
    while n < 1000:
        ok, frame = cap.read()
        if not ok:
            break
        if writer is None:
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
        writer.write(frame)
        n += 1
    cap.release()
writer.release()
PYEOF
fi
MODEL=$("$PY" -m edge models path movinet-a0-stream-int8)
LABELS=$(dirname "$MODEL")/kinetics600_label_map.txt
[[ -f "$LABELS" ]] || LABELS=$(ls "$(dirname "$MODEL")"/*.txt | head -1)
EDGE_CMD="$PY -m edge classify $CLIP --fps 1000 --model $MODEL --labels $LABELS"
LEAN_CMD="$PY -m edge.benchloops $CLIP --model $MODEL --labels $LABELS"
echo "clip $CLIP, $RUNS runs each, load $(cut -d' ' -f1-3 /proc/loadavg)"
if command -v hyperfine > /dev/null; then
    exec hyperfine --warmup 1 --runs "$RUNS" -n lean "$LEAN_CMD" -n "edge classify" "$EDGE_CMD"
fi
"$PY" - "$RUNS" "$LEAN_CMD" "$EDGE_CMD" <<'PYEOF'
import shlex, statistics, subprocess, sys, time
runs, commands = int(sys.argv[1]), {"lean": sys.argv[2], "edge classify": sys.argv[3]}
times = {name: [] for name in commands}
for name, cmd in commands.items():  # warm-up: page cache, compiled bytecode
    subprocess.run(shlex.split(cmd), check=True, capture_output=True)
for _ in range(runs):
    for name, cmd in commands.items():
        t0 = time.perf_counter()
        subprocess.run(shlex.split(cmd), check=True, capture_output=True)
        times[name].append(time.perf_counter() - t0)
for name, values in times.items():
    print(f"{name:<14} median {statistics.median(values):6.2f} s  "
          f"(runs {' '.join(f'{v:.2f}' for v in values)})")
lean, edge = (statistics.median(times[k]) for k in ("lean", "edge classify"))
print(f"edge classify is {lean / edge:.2f}x the lean loop, end to end")
PYEOF
