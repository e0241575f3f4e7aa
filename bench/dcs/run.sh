#!/bin/bash
# The etcd load of a steady 3-node pgha cluster, per node, at Patroni's default timings.
#
#   bench/dcs/run.sh [SECONDS]          (default 120; run as any user, needs ninja -C build)
#
# Starts a 3-member etcd on 127.0.0.1 (free ports, a temporary directory), then three
# `dcs-tool --ttl 30 --loop-wait 10 --retry-timeout 10 CONFIG steady SECONDS ROLE` processes
# (1 leader, 2 replicas; dcs-tool links the production DCS objects, each node runs the watch thread
# like the agent does). Each node counts its own requests and body bytes; the etcd members' /metrics
# (gRPC calls handled, gRPC bytes) are read before and after as a server-side cross-check.
# Prints per node requests/s, bytes/s and requests per loop, compared with Patroni's steady load.
#
# Environment: TTL, LOOP_WAIT, RETRY_TIMEOUT (default 30/10/10), PGHA_BUILD_DIR (default
# <repo>/build), ETCD (default /usr/bin/etcd).
# Everything it starts is stopped, and its directory removed, on exit, Ctrl-C or SIGTERM.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${1:-120}
TTL=${TTL:-30}
LOOP_WAIT=${LOOP_WAIT:-10}
RETRY_TIMEOUT=${RETRY_TIMEOUT:-10}
BUILD=${PGHA_BUILD_DIR:-$ROOT/build}
TOOL=$BUILD/tests/dcs-tool
ETCD=${ETCD:-/usr/bin/etcd}
PORT_LOCK_DIR=${PGHATEST_PORT_LOCK_DIR:-/tmp/pghatest-ports}

case $DURATION in ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
[ -x "$TOOL" ] || { echo "$TOOL not found: build it first (ninja -C build tests/dcs-tool)" >&2; exit 2; }
[ -x "$ETCD" ] || { echo "$ETCD not found (apt-get install etcd-server)" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 2; }

WORK=$(mktemp -d /tmp/pgha-bench-dcs.XXXXXX)
PIDS=()

# true if PID is one of our background jobs still running (an exited one may have been reaped and
# its PID reused by another process: never signal it)
ours() { case " $(jobs -pr | tr '\n' ' ') " in *" $1 "*) return 0 ;; esac; return 1; }

# stop PIDs of ours: SIGTERM, up to $1 tenths of a second to exit, then SIGKILL
stop_pids() {
    local tenths=$1 pid alive
    shift
    for pid in "$@"; do ours "$pid" && kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq "$tenths"); do
        alive=0
        for pid in "$@"; do ours "$pid" && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in "$@"; do ours "$pid" && kill -KILL "$pid" 2>/dev/null; done
    return 0
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # the nodes first, while etcd still answers (the leader releases its key), then the etcd members
    # one by one (stopped together, a leader waits seconds to hand over to a member that is going too)
    [ ${#PIDS[@]} -gt 3 ] && stop_pids 30 "${PIDS[@]:3}"
    for pid in "${PIDS[@]:0:3}"; do stop_pids 50 "$pid"; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Ports below the ephemeral range, each claimed with a lock file shared with the test harness
# (tests/integration/pghatest/ports.py), held until this script exits, and checked free.
{ mkdir -p "$PORT_LOCK_DIR" && chmod 1777 "$PORT_LOCK_DIR"; } 2>/dev/null || true
PORTS=()
pick_port() {
    local p fd
    for _ in $(seq 2000); do
        p=$((15000 + RANDOM % 17000))
        case " ${PORTS[*]} " in *" $p "*) continue ;; esac
        { exec {fd}>>"$PORT_LOCK_DIR/$p.lock"; } 2>/dev/null || continue
        if flock -n "$fd" && [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]; then
            PORTS+=("$p")
            return 0
        fi
        exec {fd}>&-
    done
    echo "no free port found" >&2
    exit 1
}
for _ in 1 2 3 4 5 6; do pick_port; done

CLUSTER="" ENDPOINTS=()
for i in 0 1 2; do
    CLUSTER+="${CLUSTER:+,}b$i=http://127.0.0.1:${PORTS[$((2 * i + 1))]}"
    ENDPOINTS+=("127.0.0.1:${PORTS[$((2 * i))]}")
done
TOKEN="pgha-bench-dcs-$$-$RANDOM"
for i in 0 1 2; do
    c=${PORTS[$((2 * i))]} p=${PORTS[$((2 * i + 1))]}
    "$ETCD" --name "b$i" --data-dir "$WORK/b$i" \
        --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
        --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
        --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token "$TOKEN" \
        --logger zap --log-outputs stderr >"$WORK/b$i.log" 2>&1 &
    PIDS+=($!)
done
for e in "${ENDPOINTS[@]}"; do
    for _ in $(seq 300); do
        curl -sf --noproxy '*' "http://$e/health" 2>/dev/null | grep -q '"health":"true"' && continue 2
        sleep 0.1
    done
    echo "etcd on $e did not become healthy; its log:" >&2
    tail -30 "$WORK"/b*.log >&2
    exit 1
done

# One node config per member, each listing a different member first (Patroni shuffles the list).
for i in 0 1 2; do
    hosts=("${ENDPOINTS[@]:$i}" "${ENDPOINTS[@]:0:$i}")
    cat >"$WORK/node$i.yml" <<EOF
scope: bench
namespace: /service/
name: node$i
etcd3:
  hosts: [$(IFS=,; echo "${hosts[*]}")]
restapi:
  listen: 127.0.0.1:$((8008 + i))
  connect_address: 127.0.0.1:$((8008 + i))
postgresql:
  listen: 127.0.0.1:$((5432 + i))
  connect_address: 127.0.0.1:$((5432 + i))
  data_dir: $WORK/node$i-data
  authentication:
    superuser: {username: postgres, password: unused}
    replication: {username: replicator, password: unused}
EOF
done

metrics() { for e in "${ENDPOINTS[@]}"; do curl -sf --noproxy '*' "http://$e/metrics"; done; }
# sleep that a signal interrupts at once (bash runs traps only between foreground commands)
pause_for() {
    sleep "$1" &
    PIDS+=($!)
    wait $!
}
metrics >"$WORK/metrics.before"

echo "3 etcd members on ${ENDPOINTS[*]}; 3 nodes, ttl $TTL, loop_wait $LOOP_WAIT," \
     "retry_timeout $RETRY_TIMEOUT, for $DURATION s ..." >&2
NODE_PIDS=()
for i in 0 1 2; do
    role=replica
    [ $i = 0 ] && role=leader
    "$TOOL" --ttl "$TTL" --loop-wait "$LOOP_WAIT" --retry-timeout "$RETRY_TIMEOUT" "$WORK/node$i.yml" \
        steady "$DURATION" "$role" >"$WORK/node$i.out" 2>"$WORK/node$i.err" &
    PIDS+=($!) NODE_PIDS+=($!)
    [ $i = 0 ] && pause_for 0.5 # the leader takes the leader key first
done
# A steady-state window for the server-side figures: from 1.5 loops after the start (lease grants,
# watch set-up done) to half a loop before the end (before the leader releases its key).
T0=$(date +%s.%N)
WIN_START=$(awk -v l="$LOOP_WAIT" 'BEGIN { print 1.5 * l }')
WIN_END=$(awk -v d="$DURATION" -v l="$LOOP_WAIT" 'BEGIN { print d - 0.5 * l }')
WINDOW=""
if awk -v s="$WIN_START" -v e="$WIN_END" -v l="$LOOP_WAIT" 'BEGIN { exit !(e - s >= l) }'; then
    pause_for "$WIN_START"
    metrics >"$WORK/metrics.win1"
    W1=$(date +%s.%N)
    pause_for "$(awk -v t0="$T0" -v e="$WIN_END" -v now="$(date +%s.%N)" 'BEGIN { x = t0 + e - now; print (x > 0 ? x : 0) }')"
    metrics >"$WORK/metrics.win2"
    W2=$(date +%s.%N)
    WINDOW="--window-seconds $(awk -v a="$W1" -v b="$W2" 'BEGIN { print b - a }')
        --window-before $WORK/metrics.win1 --window-after $WORK/metrics.win2"
fi
fail=0
for pid in "${NODE_PIDS[@]}"; do wait "$pid" || fail=1; done
metrics >"$WORK/metrics.after"
if [ $fail = 1 ]; then
    echo "a node failed:" >&2
    tail -n 20 "$WORK"/node*.err >&2
    exit 1
fi

# shellcheck disable=SC2086 # WINDOW is a list of options
python3 "$HERE/report.py" --ttl "$TTL" --loop-wait "$LOOP_WAIT" --retry-timeout "$RETRY_TIMEOUT" \
    --metrics-before "$WORK/metrics.before" --metrics-after "$WORK/metrics.after" $WINDOW "$WORK"/node{0,1,2}.out
echo
echo "reproduce: TTL=$TTL LOOP_WAIT=$LOOP_WAIT RETRY_TIMEOUT=$RETRY_TIMEOUT bench/dcs/run.sh $DURATION" \
     "(etcd $("$ETCD" --version | sed -n 's/^etcd Version: //p'), $(nproc) CPUs)"
