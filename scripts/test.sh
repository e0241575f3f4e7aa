#!/usr/bin/env bash
# Run every test of pgha: installs what it needs (Debian 12, as root), builds the normal and the
# AddressSanitizer+UndefinedBehaviorSanitizer builds, runs the source checks (scripts/check.sh:
# formatting, cppcheck, banned functions; a finding fails the run), the cmocka unit tests in both, a short
# run of each libFuzzer target (scripts/fuzz.sh: 10 s each, clang build in build-fuzz) and the
# integration tests (real etcd, PostgreSQL and pgha processes on loopback) against the sanitizer
# build. Idempotent; safe to run again.
#
#   sudo scripts/test.sh            # everything
#   sudo scripts/test.sh -k smoke   # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash scripts/install-deps.sh

setup() { # dir [meson options...]
    local dir=$1; shift
    if [ -f "$dir/build.ninja" ]; then
        meson setup --reconfigure "$dir" "$@" >/dev/null
    else
        meson setup "$dir" "$@" >/dev/null
    fi
    ninja -C "$dir"
}

echo "== build (normal)"
setup build
echo "== build (ASan + UBSan)"
setup build-san -Dsanitize=true

echo "== source checks (format, cppcheck, banned functions)"
bash scripts/check.sh

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:print_summary=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

echo "== unit tests (normal build)"
meson test -C build --suite unit --print-errorlogs
echo "== unit tests (sanitizer build)"
meson test -C build-san --suite unit --print-errorlogs

echo "== fuzzing (libFuzzer, 10 s per target)"
bash scripts/fuzz.sh -t 10

unit_total=$(grep -c '"result": "OK"' build/meson-logs/testlog.json build-san/meson-logs/testlog.json 2>/dev/null | awk -F: '{s+=$2} END {print s+0}')

# The agents run as the postgres user: when a build directory is not reachable for it (a clone under
# /root, say), run copies of the binaries from a directory it can read.
stages=()
trap 'rm -rf "${stages[@]}"' EXIT
reachable_build() { # build dir -> PGHA_BUILD_DIR: a directory the postgres user can run the binaries from
    local dir=$1
    if setpriv --reuid=postgres --regid=postgres --init-groups test -x "$dir/src/pgha" 2>/dev/null; then
        PGHA_BUILD_DIR=$dir
        return
    fi
    local stage
    stage=$(mktemp -d /tmp/pgha-test-bin.XXXXXX)
    stages+=("$stage")
    mkdir -p "$stage/src" "$stage/tests"
    cp "$dir/src/pgha" "$dir/src/pgha-ctl" "$stage/src/"
    cp "$dir/tests/dcs-tool" "$stage/tests/"
    chmod -R a+rX "$stage"
    echo "the postgres user cannot reach $dir: running copies from $stage"
    PGHA_BUILD_DIR=$stage
}

echo "== integration tests (sanitizer build)"
export PGHA_BUILD_DIR
reachable_build "$root/build-san"
# ASan's leak report at exit goes to the process's stderr, which the harness keeps in the logs;
# a leak makes the process exit non-zero, which the tests check.
set +e
/usr/bin/python3 -m pytest tests/integration -v -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no integration test" >&2
fi

# The chaos suite's short run (tests/chaos: network namespaces, partitions, kill -9, etcd stopped,
# switchovers; lost = 0, two primaries = 0, the lease's timing proof) against the normal build: its
# timing proofs measure the agent, not the sanitizer. Only in a full run (no pytest arguments).
if [ "$#" -eq 0 ]; then
    echo "== chaos suite (short run, normal build)"
    reachable_build "$root/build"
    set +e
    /usr/bin/python3 -m pytest -v -p no:cacheprovider tests/chaos/test_checker.py tests/chaos/test_chaos_short.py
    crc=$?
    set -e
    [ "$rc" -ne 0 ] || rc=$crc
fi
echo "unit test executables passed in both builds: $unit_total"
exit "$rc"
