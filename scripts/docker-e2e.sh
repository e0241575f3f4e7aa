#!/usr/bin/env bash
# The seed topology in containers, end to end (docker-compose.test.yml): builds a Debian 12 base image from
# Debian's packages (debootstrap + docker import; no image registry), builds the node image (pgha compiled in
# it), starts 3 etcd + 3 PostgreSQL/pgha + HAProxy + Prometheus, and checks: a leader and two streaming
# replicas, a write through HAProxy's primary port and a read through its replica port, Prometheus scraping
# every agent and etcd member with the shipped configuration, a failover after a SIGKILL of the primary's
# container reached through HAProxy. Then removes the containers and the network and stops the Docker engine it
# started. Needs root; installs docker.io, docker-compose and debootstrap (Debian packages) when missing.
# Takes a few minutes the first time (debootstrap, apt inside the images), about two minutes after.
#
#   sudo scripts/docker-e2e.sh             # PGHA_DOCKER_KEEP_IMAGES=0 removes the images at the end too
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export DEBIAN_FRONTEND=noninteractive
compose=(docker-compose -p pghae2e -f "$root/docker-compose.test.yml")
base=pgha-test/debian:bookworm
run=/run/pgha-e2e-docker
export DOCKER_HOST="unix://$run/docker.sock"
DOCKER=/usr/bin/docker     # Debian's client (not whatever else is first on PATH)

log() { printf 'docker-e2e: %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "must run as root"

need=()
for p in docker.io docker-compose debootstrap; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
    log "apt-get install ${need[*]}"
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then    # keep the packaged docker service from starting
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && created_policy=1
    fi
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    [ "$created_policy" -eq 0 ] || rm -f /usr/sbin/policy-rc.d
fi

# Our own Docker engine: its own socket, state and data directories; stopped by its PID at the end.
mkdir -p "$run"
dockerd_pid=
rootfs=
cleanup() {
    local rc=$?
    if [ -n "$dockerd_pid" ]; then
        [ "$rc" -eq 0 ] || "${compose[@]}" logs --no-color --tail=80 >&2 || true
        "${compose[@]}" down -v --remove-orphans -t 20 >/dev/null 2>&1 || true
        if [ "${PGHA_DOCKER_KEEP_IMAGES:-1}" = 0 ]; then
            $DOCKER rmi -f pgha-test/node:bookworm "$base" >/dev/null 2>&1 || true
        fi
        kill "$dockerd_pid" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
        kill -9 "$dockerd_pid" 2>/dev/null || true
    fi
    [ -z "$rootfs" ] || rm -rf "$rootfs"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
dockerd --host "$DOCKER_HOST" --pidfile "$run/dockerd.pid" --exec-root "$run/exec" \
    --data-root /var/lib/pgha-e2e-docker --bridge none --iptables=false --ip-masq=false --ip-forward=false \
    >"$run/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 1 60); do $DOCKER version >/dev/null 2>&1 && break; sleep 1; done
$DOCKER version >/dev/null 2>&1 || { cat "$run/dockerd.log" >&2; fail "the Docker engine did not start"; }
log "dockerd $dockerd_pid up ($($DOCKER version -f '{{.Server.Version}}'), $($DOCKER info -f '{{.Driver}}'))"

if ! $DOCKER image inspect "$base" >/dev/null 2>&1; then
    rootfs=$(mktemp -d /var/tmp/pgha-rootfs.XXXXXX)
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    log "debootstrap bookworm from ${mirror:-http://deb.debian.org/debian}"
    debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >"$run/debootstrap.log" 2>&1 \
        || { tail -20 "$run/debootstrap.log" >&2; fail "debootstrap"; }
    tar -C "$rootfs" -c . | $DOCKER import - "$base" >/dev/null
    rm -rf "$rootfs"
    rootfs=
fi

log "building the node image"
"${compose[@]}" build >"$run/build.log" 2>&1 || { tail -40 "$run/build.log" >&2; fail "image build"; }
"${compose[@]}" up -d >/dev/null 2>&1

ex() { "${compose[@]}" exec -T "$@"; }
list() { ex -u postgres "$1" pgha-ctl -c /etc/pgha list -f json 2>/dev/null; }
wait_for() { # seconds description command...: until the command succeeds
    local end=$((SECONDS + $1)) what=$2; shift 2
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || fail "timed out waiting for $what"
        sleep 1
    done
}
healthy() { # according to $1: a leader running, a synchronous standby (the seed runs synchronous_mode: on) and a
            # replica, both running
    list "$1" | python3 -c 'import json,sys
r=json.load(sys.stdin)
roles=sorted((m["Role"], m["State"] in ("running", "streaming")) for m in r)
sys.exit(0 if roles==[("Leader",True),("Replica",True),("Sync Standby",True)] else 1)'
}
leader() { list "$1" | python3 -c 'import json,sys; print([m["Member"] for m in json.load(sys.stdin) if m["Role"]=="Leader"][0])'; }
psql_via() { # service port sql: through HAProxy (on ptrn-1's address)
    ex -u postgres "$1" psql -Atq "host=192.168.2.96 port=$2 user=postgres password=CHANGE-ME-superuser dbname=postgres connect_timeout=3" -c "$3"
}
replica_reads_row() { [ "$(psql_via ptrn-3 5001 'SELECT pg_is_in_recovery(), count(*) FROM e2e')" = "t|1" ]; }
leader_is() { [ "$(list ptrn-3 | python3 -c 'import json,sys; print([m["Member"] for m in json.load(sys.stdin) if m["Role"]=="Leader" and m["State"]=="running"][0])')" = "$1" ]; }
targets_up() {
    ex prometheus curl -fsS http://127.0.0.1:9090/api/v1/targets | python3 -c 'import json,sys
t=json.load(sys.stdin)["data"]["activeTargets"]
up={(x["labels"]["job"],x["labels"]["instance"]) for x in t if x["health"]=="up"}
nodes=("192.168.2.96","192.168.2.91","192.168.2.98")
want={("pgha",a+":8008") for a in nodes}|{("etcd",a+":2379") for a in nodes}|{("haproxy","192.168.2.96:8404"),("prometheus","127.0.0.1:9090")}
sys.exit(0 if want<=up else 1)'
}
passed=0
check() { log "ok: $*"; passed=$((passed + 1)); }

wait_for 240 "a leader, a synchronous standby and a replica" healthy ptrn-3
check "cluster: $(leader ptrn-3) leads, a synchronous standby and a replica run"
wait_for 60 "HAProxy's primary port" psql_via ptrn-2 5000 "SELECT 1"
psql_via ptrn-2 5000 "CREATE TABLE IF NOT EXISTS e2e (v text); INSERT INTO e2e VALUES ('through haproxy')"
[ "$(psql_via ptrn-2 5000 'SELECT pg_is_in_recovery()')" = f ] || fail "port 5000 is not the primary"
check "a write through HAProxy's primary port"
wait_for 60 "the write on a replica through port 5001" replica_reads_row
check "read back through HAProxy's replica port"
wait_for 90 "Prometheus to scrape every agent, etcd member and HAProxy" targets_up
check "Prometheus scrapes the agents, etcd and HAProxy with the shipped configuration"

# failover: the primary's PostgreSQL + pgha container is killed (its host's etcd member and address stay); the
# synchronous standby takes over (in synchronous mode only a member named in /sync may)
old=$(leader ptrn-3)
obs=ptrn-3                       # a container that stays, to look from
[ "$old" != ptrn-3 ] || obs=ptrn-2
primary_takes_writes() { [ "$(psql_via "$obs" 5000 'INSERT INTO e2e VALUES (1) RETURNING pg_is_in_recovery()')" = f ]; }
"${compose[@]}" kill -s KILL "$old" >/dev/null 2>&1
t0=$(date +%s)
wait_for 90 "a new primary through HAProxy" primary_takes_writes
new=$(leader "$obs")
[ "$new" != "$old" ] || fail "$old still leads"
check "failover after SIGKILL of $old's container: $new writes through HAProxy after $(( $(date +%s) - t0 )) s"
[ "$(psql_via "$obs" 5000 "SELECT count(*) FROM e2e WHERE v = 'through haproxy'")" = 1 ] || fail "the row written before the failover is lost"
check "the row written before the failover is on the new primary"
"${compose[@]}" start "$old" >/dev/null 2>&1
wait_for 180 "$old back as a replica" healthy "$obs"
check "$old rejoined as a replica (and a synchronous standby is named again)"

log "$passed passed, 0 failed"
echo "$passed passed, 0 failed"
