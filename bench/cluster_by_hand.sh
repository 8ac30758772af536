#!/usr/bin/env bash
# By hand, as docs/cluster.md says: one etcd, the recording server, 150 accounts, three workers,
# through a kill -9, a SIGSTOP/SIGCONT and a SIGTERM drain.  Run it in an empty directory:
#   mkdir /tmp/by-hand && cd /tmp/by-hand && PYTHON=.../bin/python bash .../bench/cluster_by_hand.sh
set -u
PY=${PYTHON:-python3}  # a Python with fsm_live[cluster] installed
FSM="$PY -m fsm_live"
etcd --data-dir etcd-data --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
     --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
     --initial-cluster default=http://127.0.0.1:23800 > etcd.log 2>&1 &
ETCD=$!
coproc REC { $PY -m fsm_live.testing.recorder --port 18766; }
read -r line <&"${REC[0]}"; echo "recorder: $line"
mkdir -p cookies; : > fleet.toml
for i in $(seq -w 0 149); do echo "unb=a$i" > cookies/a$i
  printf '[accounts.a%s]\nurl = "ws://127.0.0.1:18766/"\nprotocol = "lwp"\ncookies_file = "cookies/a%s"\n\n' $i $i >> fleet.toml; done
report() { echo report >&"${REC[1]}"; read -r r <&"${REC[0]}"; echo "$r" | $PY -c "
import json,sys; r=json.load(sys.stdin); o=r['open']
print(f\"{r['sessions']} sessions, {sum(n==1 for n in o.values())}/150 accounts with exactly one open session, {sum(n>1 for n in o.values())} with more, {r['stale_frames']} stale frames\")"; }
sleep 1
for w in w1 w2 w3; do $FSM fleet fleet.toml --coordinator etcd://127.0.0.1:23790 --worker-id $w > $w.log 2>&1 & eval "PID_$w=$!"; done
sleep 12; echo "t=12s, three workers:"; report
kill -9 $PID_w1; echo "kill -9 w1"; sleep 12; report
$FSM fleet fleet.toml --coordinator etcd://127.0.0.1:23790 --worker-id w1 > w1b.log 2>&1 & PID_w1=$!
sleep 12; echo "w1 started again:"; report
kill -STOP $PID_w2; echo "SIGSTOP w2 for 9 s"; sleep 9; kill -CONT $PID_w2; sleep 12; report
kill -TERM $PID_w3; wait $PID_w3; echo "SIGTERM w3: exit $?"; sleep 3; report
grep -h "^cluster:" w2.log | tail -1
kill -TERM $PID_w1 $PID_w2; wait $PID_w1 $PID_w2; echo "w1, w2 drained: exit $?"
kill $ETCD; exec {REC[1]}>&-; wait
