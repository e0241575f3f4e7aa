#!/usr/bin/env bash
# Install everything pgha needs to build and to run its unit and integration tests on Debian 12.
#
# Idempotent: when every package is already installed it does not touch apt at all (checked with
# dpkg-query), so it is cheap to run at the start of every CI job. Must run as root.
#
# After installing it makes sure the distribution's default services are not left running on the ports
# the tests (or a developer) may expect to be free: the Debian "15/main" PostgreSQL cluster (5432) and
# the packaged etcd service (2379/2380). Only those packaged services are stopped, through their own
# tools (pg_ctlcluster / systemctl / service); no process is killed by name.
#
# Environment:
#   PGHA_DEPS_DRY_RUN=1   only report what would be installed/stopped
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
DRY_RUN="${PGHA_DEPS_DRY_RUN:-0}"

log() { printf 'install-deps: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (apt-get, service control, useradd)"
    exit 1
fi

# clang-format, cppcheck, perl: the source checks of scripts/check.sh (run by scripts/test.sh).
# nftables: the chaos suite's network partitions (tests/chaos, nft rules inside network namespaces).
# clang, libclang-rt-14-dev (libFuzzer and the sanitizer runtimes: only recommended by clang, and recommends
# are not installed here), llvm-14 (llvm-symbolizer, for readable reports): the fuzz targets of
# tests/fuzz (scripts/fuzz.sh, run by scripts/test.sh).
# prometheus: promtool, which the /metrics integration test runs over the exposition, and the server the
# deployment tests run on loopback (policy-rc.d below keeps the packaged service from starting).
# haproxy, keepalived, docker-compose, prometheus-alertmanager: the reference deployment's checks
# (`haproxy -c`, `keepalived --config-test`, `docker-compose config`, `amtool check-config`) and the
# HAProxy end-to-end test; their packaged services are kept from starting the same way.
# libcurl4-gnutls-dev, not -openssl-dev: libmicrohttpd already loads GnuTLS, and one TLS library
# initialised instead of two keeps the agent's resident memory down (bench/failover/README.md).
PACKAGES=(
    build-essential meson ninja-build pkg-config
    libpq-dev libcurl4-gnutls-dev libssh2-1-dev libcjson-dev libyaml-dev libsystemd-dev libmicrohttpd-dev libcmocka-dev
    etcd-server etcd-client
    postgresql-15
    python3-pytest python3-psycopg2 python3-requests python3-yaml
    iproute2 procps openssl curl
    nftables
    patroni stress-ng
    clang-format cppcheck perl
    clang libclang-rt-14-dev llvm-14
    prometheus
    haproxy keepalived docker-compose prometheus-alertmanager
)

is_installed() {
    # "install ok installed" is the only state in which the package's files are really there.
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

missing=()
for p in "${PACKAGES[@]}"; do
    is_installed "$p" || missing+=("$p")
done

# Contrib modules: Debian 12 folds them into postgresql-15, and "postgresql-contrib-15" is only a virtual
# name provided by it; "postgresql-contrib" is the real (meta) package. Either one installed is enough.
contrib_needed=1
if is_installed postgresql-contrib-15 || is_installed postgresql-contrib; then
    contrib_needed=0
fi

apt_updated=0
apt_update_once() {
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        apt-get update
        apt_updated=1
    fi
}

has_candidate() {
    # A real, installable package has a candidate version; a purely virtual name shows "(none)".
    local cand
    cand="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')"
    [ -n "$cand" ] && [ "$cand" != "(none)" ]
}

if [ "${#missing[@]}" -gt 0 ] || [ "$contrib_needed" -eq 1 ]; then
    if [ "$DRY_RUN" = 1 ]; then
        log "dry run: would install: ${missing[*]:-} $([ "$contrib_needed" -eq 1 ] && echo postgresql-contrib)"
    else
        apt_update_once
        if [ "$contrib_needed" -eq 1 ]; then
            if has_candidate postgresql-contrib-15; then
                missing+=(postgresql-contrib-15)
            else
                missing+=(postgresql-contrib)
            fi
        fi
        # Keep package maintainer scripts from starting services (postgresql 15/main, etcd) during the
        # install: policy-rc.d answering 101 is Debian's standard switch for that. Only installed
        # temporarily, and never over an existing one.
        policy=/usr/sbin/policy-rc.d
        created_policy=0
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\n# temporary, written by pgha scripts/install-deps.sh\nexit 101\n' >"$policy"
            chmod 0755 "$policy"
            created_policy=1
            trap 'rm -f "$policy"' EXIT
        fi
        log "apt-get install ${missing[*]}"
        apt-get install -y --no-install-recommends "${missing[@]}"
        if [ "$created_policy" -eq 1 ]; then
            rm -f "$policy"
            trap - EXIT
        fi
    fi
else
    log "all packages already installed"
fi

# The postgres user: created by postgresql-common, but make sure (tests run PostgreSQL as it).
if ! id -u postgres >/dev/null 2>&1; then
    if [ "$DRY_RUN" = 1 ]; then
        log "dry run: would create the postgres user"
    else
        log "creating system user postgres"
        getent group postgres >/dev/null || groupadd --system postgres
        useradd --system --gid postgres --home-dir /var/lib/postgresql --shell /bin/bash \
            --comment "PostgreSQL administrator" postgres
        mkdir -p /var/lib/postgresql
        chown postgres:postgres /var/lib/postgresql
    fi
fi

systemd_running() { [ -d /run/systemd/system ]; }

# Default PostgreSQL cluster(s) created by the package (15/main on port 5432): stop any that is online.
if command -v pg_lsclusters >/dev/null 2>&1; then
    # Columns: Ver Cluster Port Status Owner Datadir Logfile
    pg_lsclusters --no-header 2>/dev/null | while read -r ver cluster port status _rest; do
        case "$status" in
        online*)
            if [ "$DRY_RUN" = 1 ]; then
                log "dry run: would stop PostgreSQL cluster $ver/$cluster (port $port)"
            else
                log "stopping packaged PostgreSQL cluster $ver/$cluster (port $port)"
                if systemd_running; then
                    systemctl stop "postgresql@$ver-$cluster.service" || pg_ctlcluster "$ver" "$cluster" stop
                else
                    pg_ctlcluster "$ver" "$cluster" stop -m fast
                fi
            fi
            ;;
        esac
    done
fi
if systemd_running && [ "$DRY_RUN" != 1 ]; then
    # Do not let the packaged cluster come back on the next boot either.
    systemctl disable postgresql.service >/dev/null 2>&1 || true
fi

# Packaged etcd service (default member on 2379/2380).
if systemd_running; then
    if systemctl is-active --quiet etcd.service 2>/dev/null; then
        if [ "$DRY_RUN" = 1 ]; then
            log "dry run: would stop etcd.service"
        else
            log "stopping packaged etcd.service"
            systemctl stop etcd.service
        fi
    fi
    [ "$DRY_RUN" = 1 ] || systemctl disable etcd.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/etcd ]; then
    # sysvinit (init-d-script) service: it runs etcd as user "etcd" with a pidfile. Judge it by that
    # pidfile only; never by process name, which would also match etcd members started by tests.
    for pidfile in /run/etcd.pid /var/run/etcd.pid; do
        [ -r "$pidfile" ] || continue
        pid="$(head -n1 "$pidfile" 2>/dev/null || true)"
        case "$pid" in '' | *[!0-9]*) continue ;; esac
        [ -d "/proc/$pid" ] || continue
        owner="$(stat -c %U "/proc/$pid" 2>/dev/null || true)"
        exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
        if [ "$owner" = etcd ] && [ "$exe" = /usr/bin/etcd ]; then
            if [ "$DRY_RUN" = 1 ]; then
                log "dry run: would stop the packaged etcd service (pid $pid)"
            else
                log "stopping the packaged etcd service (pid $pid)"
                /etc/init.d/etcd stop || true
            fi
        fi
        break
    done
fi

# Report whoever still listens on the well-known ports: tests never use them, but a developer may wonder.
if command -v ss >/dev/null 2>&1; then
    for port in 5432 2379 2380; do
        if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
            log "note: something still listens on port $port (not started by a package service we manage)"
        fi
    done
fi

log "done"
