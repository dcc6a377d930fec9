#!/bin/bash
# Runs inside the booted root (edge-test.service, at boot; see scripts/test-service.sh):
# installs the service as README.md documents and checks it, then powers off.
# /root/out/log: everything; /root/out/summary: one "PASS|FAIL name: detail" line per check.
set -u
OUT=/root/out
mkdir -p $OUT
exec > $OUT/log 2>&1
export SYSTEMD_PAGER= SYSTEMD_COLORS=0 PATH=/usr/sbin:/usr/bin:/sbin:/bin
: > $OUT/summary
T0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
step() { echo; echo "=== [$(since $T0)s] $*"; }
check() { # check NAME OK DETAIL
  local verdict=FAIL; [ "$2" = 1 ] && verdict=PASS
  echo "$verdict $1: $3" | tee -a $OUT/summary; }
prop() { systemctl show -P "$1" edge; }
show() { systemctl show -p ActiveState,SubState,Result,ExecMainStatus,NRestarts,StatusText edge | tr '\n' ' '; }
journal_count() { journalctl -u edge -b --no-pager -o cat | grep -c -- "$1"; }
wait_for() { # wait_for SECONDS COMMAND...: until COMMAND succeeds
  local end=$(( $(date +%s) + $1 )); shift
  until "$@"; do [ $(date +%s) -ge $end ] && return 1; sleep 0.5; done; }
CFG=/etc/edge/config.yaml
EDGE=/opt/edge/.venv/bin/edge
set_source() { # set_source URI true|false
  sed -i -e "s|^  kind: .*|  kind: opencv|" -e "s|^  #\? \?uri: .*|  uri: $1|" \
         -e "s|^  #\? \?loop: .*|  loop: $2|" $CFG; }

step "environment"
echo "$(systemd-detect-virt) $(systemctl --version | head -1) cgroup $(stat -fc %T /sys/fs/cgroup)"
systemctl is-system-running; systemctl --failed --no-legend; systemctl is-active mosquitto

step "fresh install without a camera: EDGE_MODEL_MIRROR=/root/models-mirror scripts/install-service.sh"
cd /root/edge-src
t=$(date +%s.%N)
EDGE_MODEL_MIRROR=/root/models-mirror scripts/install-service.sh; rc=$?
took=$(since $t); show; echo
status=$(prop StatusText)
ok=0; [ $rc = 0 ] && [ "$(prop ActiveState)" = active ] && [[ "$status" == *"waiting for a camera"* ]] && ok=1
check install-without-camera $ok "install rc=$rc in ${took}s; $(prop ActiveState); StatusText=$status"
sleep 12  # longer than RestartSec: a restart storm would show by now
n=$(prop NRestarts); lines=$(journal_count "waiting for a camera")
ok=0; [ "$n" = 0 ] && [ "$lines" = 1 ] && [ "$(prop ActiveState)" = active ] && ok=1
check waiting-no-restarts $ok "after 12 s: NRestarts=$n, $lines journal line(s) 'waiting for a camera', $(prop ActiveState)"
journalctl -u edge -b --no-pager | tail -5

step "a configuration mistake (source.loop with a stream) is refused by check-config: exit 2, no restarts"
cp $CFG /root/config.installed.yaml
set_source http://127.0.0.1:8090/video true
$EDGE check-config $CFG; cc=$?
systemctl restart edge; rc=$?
sleep 12
n=$(prop NRestarts)
ok=0; [ $cc = 2 ] && [ $rc != 0 ] && [ "$n" = 0 ] && [ "$(prop ActiveState)" = failed ] && ok=1
check config-mistake $ok "check-config rc=$cc; systemctl restart rc=$rc; after 12 s NRestarts=$n, $(prop ActiveState) ($(prop Result))"
journalctl -u edge -b --no-pager | tail -4
cp /root/config.installed.yaml $CFG
systemctl reset-failed edge; systemctl start edge

step "the waiting service takes a clip named by a reload"
# The clip is readable through group video only: supplementary groups survive PrivateUsers.
chown root:video /srv/clips/carving_ice.mp4; chmod 0640 /srv/clips/carving_ice.mp4
set_source /srv/clips/carving_ice.mp4 true
sed -i -e 's|^  stats_interval_s: .*|  stats_interval_s: 5|' -e 's|^  heartbeat_s: .*|  heartbeat_s: 5|' $CFG
systemctl reload edge; rc=$?
wait_for 60 bash -c '[[ "$(systemctl show -P StatusText edge)" == video:* ]]'
ok=0; [ $rc = 0 ] && [[ "$(prop StatusText)" == video:* ]] && ok=1
check reload-ends-wait $ok "reload rc=$rc; StatusText=$(prop StatusText)"
systemctl stop edge

step "start returns at READY"
mosquitto_sub -v -t 'edge/#' > $OUT/mqtt.log 2>&1 & SUB=$!
t=$(date +%s.%N); systemctl start edge; rc=$?; took=$(since $t)
status=$(prop StatusText)
ok=0; [ $rc = 0 ] && [ "$(prop SubState)" = running ] && [[ "$status" == video:* ]] && ok=1
check start-ready $ok "systemctl start rc=$rc after ${took}s; StatusText=$status"

step "labels on MQTT"
first_label() { # the first non-null label a state message carried
  /opt/edge/.venv/bin/python - "$OUT/mqtt.log" <<'PY'
import json, sys
for line in open(sys.argv[1], errors="replace"):
    topic, _, payload = line.partition(" ")
    if topic == "edge/edge-1/state" and json.loads(payload).get("label"):
        print(json.loads(payload)["label"])
        break
PY
}
label=""; end=$(( $(date +%s) + 60 ))
while [ -z "$label" ] && [ $(date +%s) -lt $end ]; do sleep 1; label=$(first_label); done
ok=0; [ -n "$label" ] && grep -q '^edge/edge-1/availability online' $OUT/mqtt.log && ok=1
check labels $ok "state label '$label'; $(grep -c . $OUT/mqtt.log) messages; $(journal_count 'label: ') label lines in the journal"
ps -o user,group,supgrp,rss,args -C edge --no-headers

step "systemd-analyze security edge"
systemd-analyze security edge --no-pager > $OUT/security.txt 2>&1
cat $OUT/security.txt
score=$(grep -oE 'Overall exposure level for edge.service: [0-9.]+' $OUT/security.txt | grep -oE '[0-9.]+$')
ok=0; [ -n "$score" ] && awk -v s="$score" 'BEGIN{exit !(s <= 1.2)}' && ok=1
check security $ok "systemd-analyze security edge: ${score:-none} (limit 1.2)"

step "reload: a good config, then a bad one, then a broker outside the allowed addresses"
pid=$(prop MainPID); before=$(journal_count 'config reloaded')
sed -i -e 's|^  stats_interval_s: .*|  stats_interval_s: 4|' $CFG
systemctl reload edge; rc=$?
wait_for 20 bash -c "[ \$(journalctl -u edge -b --no-pager -o cat | grep -c 'config reloaded') -gt $before ]"
after=$(journal_count 'config reloaded')
ok=0; [ $rc = 0 ] && [ "$after" -gt "$before" ] && [ "$(prop MainPID)" = "$pid" ] && ok=1
check reload-good $ok "rc=$rc; 'config reloaded' lines $before -> $after; MainPID kept"
cp $CFG /root/config.good.yaml
echo "bogus_key: 1" >> $CFG
systemctl reload edge; rc=$?
journalctl -u edge -b --no-pager -o cat | grep -m1 bogus_key
n0=$(grep -c '^edge/edge-1/' $OUT/mqtt.log); sleep 6; n1=$(grep -c '^edge/edge-1/' $OUT/mqtt.log)
ok=0; [ $rc != 0 ] && [ "$(prop MainPID)" = "$pid" ] && [ "$(prop ActiveState)" = active ] && [ $n1 -gt $n0 ] && ok=1
check reload-bad $ok "rc=$rc; MainPID kept, $(prop ActiveState); still publishing ($n0 -> $n1 messages in 6 s)"
cp /root/config.good.yaml $CFG
sed -i -e 's|^  host: .*|  host: 10.9.9.9|' $CFG
systemctl reload edge; rc=$?
msg=$(journalctl -u edge -b --no-pager -o cat | grep -m1 "10.9.9.9" | cut -c1-150)
ok=0; [ $rc != 0 ] && [ "$(prop MainPID)" = "$pid" ] && ok=1
check reload-blocked-broker $ok "rc=$rc; $msg"
cp /root/config.good.yaml $CFG

step "stop publishes 'stopped' within 2 s"
t=$(date +%s.%N); systemctl stop edge; rc=$?
wait_for 3 grep -q '^edge/edge-1/availability stopped' $OUT/mqtt.log
took=$(since $t)
ok=0; [ $rc = 0 ] && grep -q '^edge/edge-1/availability stopped' $OUT/mqtt.log && awk -v s="$took" 'BEGIN{exit !(s <= 2.0)}' && ok=1
check stop $ok "rc=$rc; 'stopped' seen ${took}s after systemctl stop; $(show)"

step "a stalled camera trips the watchdog and the service restarts"
/opt/edge/.venv/bin/python /root/edge-src/tests/service/stallcam.py /root/edge-src/samples/carving_ice.mp4 8090 20 > $OUT/stallcam.log 2>&1 & CAM=$!
sleep 2
set_source http://127.0.0.1:8090/video false
systemctl reset-failed edge
systemctl start edge; rc=$?
n0=$(prop NRestarts)
wait_for 150 bash -c "[ \"\$(systemctl show -P NRestarts edge)\" != $n0 ]"
n1=$(prop NRestarts)
wd=$(journalctl -u edge -b --no-pager | grep -m1 -i 'watchdog timeout' | sed 's/.*systemd\[1\]: //')
ok=0; [ $rc = 0 ] && [ "$n1" != "$n0" ] && [ -n "$wd" ] && ok=1
check watchdog $ok "start rc=$rc; NRestarts $n0 -> $n1; $wd"
journalctl -u edge -b --no-pager | grep -iE 'watchdog|camera|Scheduled|Main process exited' | tail -8
systemctl stop edge; kill $CAM $SUB 2>/dev/null

step "done"
journalctl -b --no-pager | grep -iE 'edge.*(denied|SIGSYS|audit)' | head -5
echo "total $(since $T0)s"
cat $OUT/summary
sync
systemctl poweroff
