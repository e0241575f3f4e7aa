#!/usr/bin/env bash
# The short chaos run, on its own, from a fresh clone (Debian 12, as root): installs what it needs
# (scripts/install-deps.sh: PostgreSQL 15, etcd, nftables, ...), builds pgha, checks the checker on
# hand-made histories, then runs tests/chaos/test_chaos_short.py (about 5 minutes).
#
#   sudo bash tests/chaos/run-short.sh [pytest arguments]
#   CHAOS_SEED=42 sudo bash tests/chaos/run-short.sh       # replay a run
set -euo pipefail
cd "$(dirname "$0")/../.."

bash scripts/install-deps.sh

build="${PGHA_BUILD_DIR:-build}"
if [ -f "$build/build.ninja" ]; then
    ninja -C "$build"
else
    meson setup "$build" >/dev/null
    ninja -C "$build"
fi
export PGHA_BUILD_DIR="$(cd "$build" && pwd)"

/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/chaos/test_checker.py
exec /usr/bin/python3 -m pytest -v -s -p no:cacheprovider tests/chaos/test_chaos_short.py "$@"
