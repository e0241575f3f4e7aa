#!/usr/bin/env bash
# Start a local demo cluster on loopback: 3 etcd members and 3 PostgreSQL nodes, each with its pgha
# agent. Installs what it needs (Debian 12, as root) and builds pgha first. Idempotent.
#
#   sudo scripts/demo.sh           # start (or show) the demo cluster
#   sudo scripts/demo.sh status    # show the cluster
#   sudo scripts/demo.sh stop      # stop everything and remove the demo directory
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-up}
if [ "$cmd" = "up" ]; then
    bash scripts/install-deps.sh
    if [ -f build/build.ninja ]; then meson setup --reconfigure build >/dev/null; else meson setup build >/dev/null; fi
    ninja -C build src/pgha src/pgha-ctl >/dev/null || { echo "demo: the build failed (run: ninja -C build)" >&2; exit 1; }
fi
exec /usr/bin/python3 scripts/demo.py "$cmd"
