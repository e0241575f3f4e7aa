#!/usr/bin/env bash
# Build the libFuzzer targets of tests/fuzz (clang, ASan + UBSan) and run each for a while, starting
# from its seed corpus in the repository. Fails when a target crashes, leaks, trips a sanitizer, times
# out or runs out of memory; the input that did it is kept (see below). tests/fuzz/README.md has more.
#
#   scripts/fuzz.sh                   every target for 30 s (scripts/test.sh runs this)
#   scripts/fuzz.sh -t 600 rest       one target for 10 min
#   scripts/fuzz.sh -r                replay the seed corpora only (a quick regression run)
#
# Options:
#   -t SECONDS   run time per target (default 30)
#   -r           replay the seed corpus of each target and stop (no fuzzing)
#   -b DIR       build directory (default build-fuzz); its fuzz/ holds, per target, the corpus the run
#                grew (fuzz/corpus/<target>, kept between runs, never written to the repository), the
#                log (fuzz/<target>.log) and what failed (fuzz/artifacts/<target>/crash-*, leak-*, ...)
#   -n NICE      niceness of the fuzzers (default 10: CPU-heavy, they share the machine)
#   targets      rest, dcs_values, config, etcd (default: all)
#
# Environment: CC (default clang). Extra libFuzzer flags can follow "--": scripts/fuzz.sh -t 60 -- -jobs=2
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

ALL_TARGETS=(rest dcs_values config etcd)
seconds=30
replay=0
build=build-fuzz
niceness=10

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while getopts ":t:rb:n:h" opt; do
    case "$opt" in
    t) seconds=$OPTARG ;;
    r) replay=1 ;;
    b) build=$OPTARG ;;
    n) niceness=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
targets=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    targets+=("$1")
    shift
done
[ "${1:-}" = "--" ] && shift
extra=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
    case " ${ALL_TARGETS[*]} " in
    *" $t "*) ;;
    *) echo "fuzz: unknown target '$t' (known: ${ALL_TARGETS[*]})" >&2; exit 2 ;;
    esac
done

export CC=${CC:-clang}
if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz: $CC not found (Debian packages clang and libclang-rt-14-dev; scripts/install-deps.sh installs them)" >&2
    exit 1
fi
if [ -f "$build/build.ninja" ]; then
    meson setup --reconfigure "$build" -Dfuzz=true -Dtests=false >/dev/null
else
    meson setup "$build" -Dfuzz=true -Dtests=false >/dev/null
fi
if ! ninja -C "$build" >"$build/ninja.log" 2>&1; then
    tail -n 40 "$build/ninja.log" >&2
    echo "fuzz: building the fuzz targets failed ($build/ninja.log)" >&2
    exit 1
fi

# abort_on_error: a report ends the process at once, and libFuzzer writes the input; leaks are checked
# after every input that allocated more than it freed.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:print_summary=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:print_summary=1"
if [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ] && ! command -v llvm-symbolizer >/dev/null 2>&1; then
    export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi

out="$build/fuzz"
failed=()
for t in "${targets[@]}"; do
    bin="$build/tests/fuzz/fuzz_$t"
    seeds="$root/tests/fuzz/corpus/$t"
    dict="$root/tests/fuzz/dict/${t%_values}.dict"
    work="$out/corpus/$t"
    artifacts="$out/artifacts/$t"
    log="$out/$t.log"
    mkdir -p "$work" "$artifacts"
    args=(-print_final_stats=1 -print_funcs=0 -timeout=25 -rss_limit_mb=2048 -max_len=65536
          -artifact_prefix="$artifacts/" -dict="$dict")
    if [ "$replay" = 1 ]; then
        args+=(-runs=0)
        dirs=("$seeds")
    else
        args+=(-max_total_time="$seconds")
        dirs=("$work" "$seeds") # new inputs go to the first directory: never the repository's
    fi
    rc=0
    nice -n "$niceness" "$bin" "${args[@]}" "${extra[@]}" "${dirs[@]}" >"$log" 2>&1 || rc=$?
    # libFuzzer's closing statistics
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    cov=$(grep -E '^#[0-9]+[[:space:]]+(DONE|INITED)' "$log" | tail -n1 |
          sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\) corp: \([^ ]*\).*/cov \1, ft \2, corpus \3/p' || true)
    if [ "$rc" -ne 0 ] || grep -qE '^==[0-9]+==ERROR|runtime error:|^SUMMARY: ' "$log"; then
        echo "fuzz $t: FAILED (exit $rc); log: $log; input: $(ls -t "$artifacts" 2>/dev/null | head -n1)" >&2
        grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$log" | head -n 8 >&2 || true
        failed+=("$t")
    else
        echo "fuzz $t: ok, ${execs:-?} executions${cov:+, $cov}$([ "$replay" = 1 ] || echo " in $seconds s")"
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
