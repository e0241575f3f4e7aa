#!/usr/bin/env bash
# Source checks that need no build: formatting, static analysis, banned C library functions.
# scripts/test.sh runs them all (after the builds, before the unit tests); each takes seconds.
#
#   scripts/check.sh                  all checks; every one runs, the exit status is 1 if any failed
#   scripts/check.sh format           clang-format --dry-run --Werror on every .c/.h under src/ and tests/
#   scripts/check.sh format --fix     reformat those files in place
#   scripts/check.sh cppcheck         cppcheck (configuration and suppressions: scripts/cppcheck/)
#   scripts/check.sh banned           calls to banned C library functions in src/ and tests/
#
# Tools (Debian packages clang-format, cppcheck; scripts/install-deps.sh installs them):
#   CLANG_FORMAT=clang-format-14   which clang-format to run (default: clang-format). .clang-format
#                                  is tuned for clang-format 14 (Debian 12); other versions format
#                                  some constructs differently.
#   CPPCHECK=/path/to/cppcheck
set -euo pipefail
cd "$(dirname "$0")/.."

CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
CPPCHECK=${CPPCHECK:-cppcheck}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# The C sources and headers under the given directories: in a git checkout the tracked files and
# the untracked ones that .gitignore does not exclude (so build directories never count), else every
# .c/.h except those below a build*/ directory.
sources() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        local f
        git ls-files --cached --others --exclude-standard -- "${@/%//*.c}" "${@/%//*.h}" | sort -u |
            while IFS= read -r f; do [ -f "$f" ] && printf '%s\n' "$f"; done
    else
        find "$@" -type d -name 'build*' -prune -o -type f \( -name '*.c' -o -name '*.h' \) -print | sort
    fi
}

need() { # tool package
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "check: $1 not found (Debian package $2; scripts/install-deps.sh installs it)" >&2
        return 1
    fi
}

# ---- format ----

check_format() {
    local fix=0
    case "${1:-}" in
    --fix) fix=1 ;;
    '') ;;
    *) echo "check format: unknown option $1" >&2; return 2 ;;
    esac
    need "$CLANG_FORMAT" clang-format || return 1
    local major
    major=$("$CLANG_FORMAT" --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p')
    if [ "$major" != 14 ]; then
        echo "check format: warning: $CLANG_FORMAT is version ${major:-unknown}, .clang-format is tuned for 14" >&2
    fi
    local files
    mapfile -t files < <(sources src tests)
    if [ "$fix" = 1 ]; then
        "$CLANG_FORMAT" -i --style=file "${files[@]}"
        echo "check format: reformatted ${#files[@]} files"
        return 0
    fi
    # --Werror makes every would-be change an error; clang-format names file:line:column of each.
    local out rc=0
    out=$("$CLANG_FORMAT" --dry-run --Werror --style=file "${files[@]}" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf '%s\n' "$out" | grep -E '^[^ ].*: (error|warning):' | head -n 40 >&2 || true
        local nfiles
        nfiles=$(printf '%s\n' "$out" | grep -E ': (error|warning): code should be clang-formatted' |
                 cut -d: -f1 | sort -u | wc -l)
        echo "check format: FAILED: $nfiles of ${#files[@]} files are not formatted (first findings above);" \
             "run scripts/check.sh format --fix" >&2
        return 1
    fi
    echo "check format: ok (${#files[@]} files)"
}

# ---- cppcheck ----

check_cppcheck() {
    need "$CPPCHECK" cppcheck || return 1
    local files
    mapfile -t files < <(sources src tests | grep '\.c$')
    # The system headers are not given to cppcheck: parsing them is slow and it chokes on some
    # (curl.h); it models libc/POSIX/libcurl with its own library files instead, and what it cannot
    # know (cJSON's loop macro, pgha's NULL-safe xstrdup) is in scripts/cppcheck/pgha.cfg. gnu.cfg is
    # not loaded: it describes libiberty's x* allocators, whose contract differs from pgha's.
    # The -D values mirror meson.build's add_project_arguments (one configuration: the real build).
    # "information" is enabled for missingInclude and unmatchedSuppression: a suppression that no
    # longer matches anything must be removed.
    local jobs
    jobs=$(nproc 2>/dev/null || echo 2)
    "$CPPCHECK" --std=c11 -I src \
        -D_GNU_SOURCE -DPGHA_VERSION='"0"' -DPGHA_PATRONI_VERSION='"0"' -DPGHA_HAVE_LIBSSH2 -DSOURCE_ROOT='"."' \
        --library=posix,libcurl,scripts/cppcheck/pgha.cfg \
        --enable=warning,style,performance,portability,information \
        --inline-suppr --suppress-xml=scripts/cppcheck/suppressions.xml \
        --error-exitcode=1 --quiet -j "$jobs" \
        --template='{file}:{line}:{column}: {severity}/{id}: {message}' \
        "${files[@]}" || {
        echo "check cppcheck: FAILED: fix the findings above, or suppress a false positive inline" \
             "(/* cppcheck-suppress <id> */ on the line above, with the reason); see scripts/cppcheck/suppressions.xml" >&2
        return 1
    }
    echo "check cppcheck: ok (${#files[@]} files)"
}

# ---- banned functions ----

# name: what to use instead. Unsafe with buffers, without error reporting, or with hidden static state
# (pgha is multi-threaded). Same spirit as git's banned.h.
BANNED=(
    "strtok: strtok_r (strtok keeps hidden state between calls: not thread-safe)"
    "atoi: parse_ll() (common/util.h) or strtol with end/errno checks (no error, UB on overflow)"
    "atol: parse_ll() or strtol with end/errno checks"
    "atoll: parse_ll(), pg_value_ll() for a libpq column, or strtoll with end/errno checks"
    "atof: parse_double() (common/util.h), pg_value_double(), or strtod with end/errno checks"
    "sprintf: snprintf, xasprintf or a StrBuf (no bound)"
    "vsprintf: vsnprintf or xvasprintf (no bound)"
    "strcpy: snprintf(dst, size, \"%s\", src) or xstrdup (no bound)"
    "strcat: a StrBuf or snprintf (no bound)"
    "strncpy: snprintf(dst, size, \"%s\", src) (may not NUL-terminate, zero-fills)"
    "strncat: a StrBuf or snprintf (its bound is the space left, an easy off-by-one)"
    "gets: fgets or getline (no bound; removed from C11)"
    "tmpnam: mkstemp or mkdtemp (race between naming and creating)"
    "tempnam: mkstemp or mkdtemp (race between naming and creating)"
    "mktemp: mkstemp or mkdtemp (race between naming and creating)"
    "gmtime: gmtime_r (static result: not thread-safe)"
    "localtime: localtime_r (static result: not thread-safe)"
    "ctime: strftime with localtime_r (static result, fixed format)"
    "asctime: strftime (static result, fixed format)"
    "alloca: a fixed-size array or the heap (unbounded stack use; the build already has -Wvla)"
)

# TEMPORARY allowances, one per line: "path function count  reason". The file may contain up to
# `count` calls of `function`: a new call still fails, as does the allowance once the code moves.
# Only for files that could not be edited when the check was introduced; remove when fixed.
ALLOW=(
)

# C source with comments, string and character literals blanked (lines and columns kept), so that
# a banned name in a comment or a message does not count.
strip_c() {
    perl -0777 -pe '
        s{ (/\*.*?\*/) | (//[^\n]*) | ("(?:\\.|[^"\\\n])*") | (\x27(?:\\.|[^\x27\\\n])*\x27) }
         { (my $m = $&) =~ s/[^\n]/ /g; $m }gsex' "$1"
}

check_banned() {
    need perl perl || return 1
    local names=() entry
    for entry in "${BANNED[@]}"; do names+=("${entry%%:*}"); done
    local alt
    alt=$(IFS='|'; echo "${names[*]}")
    local files f hits=0 line fn
    mapfile -t files < <(sources src tests)
    declare -A count=()
    local report=()
    for f in "${files[@]}"; do
        # a call: the name, not preceded by an identifier character, '.' or '->', then '('
        while IFS=: read -r line fn; do
            count["$f $fn"]=$(( ${count["$f $fn"]:-0} + 1 ))
            report+=("$f:$line: $fn")
        done < <(strip_c "$f" | ALT=$alt perl -ne 'while (/(?<![\w.>])($ENV{ALT})\s*\(/g) { print "$.:$1\n" }')
    done
    local allowed=() a key max
    for a in "${ALLOW[@]}"; do
        read -r f fn max _ <<<"$a"
        key="$f $fn"
        if [ "${count[$key]:-0}" -gt "$max" ]; then
            echo "check banned: $f has ${count[$key]} calls of $fn, more than the temporary allowance of $max" >&2
        elif [ "${count[$key]:-0}" -lt "$max" ]; then
            echo "check banned: $f has ${count[$key]:-0} calls of $fn, fewer than its temporary allowance of" \
                 "$max: lower or remove the allowance in scripts/check.sh" >&2
            hits=$((hits + 1))
            allowed+=("$key")
        else
            allowed+=("$key")
        fi
    done
    local r what
    for r in "${report[@]}"; do
        f=${r%%:*}
        fn=${r##*: }
        key="$f $fn"
        if printf '%s\n' "${allowed[@]}" | grep -qxF -- "$key"; then
            continue
        fi
        for entry in "${BANNED[@]}"; do
            [ "${entry%%:*}" = "$fn" ] && what=${entry#*: }
        done
        echo "$r() is banned: use $what" >&2
        hits=$((hits + 1))
    done
    if [ "$hits" -gt 0 ]; then
        echo "check banned: FAILED ($hits)" >&2
        return 1
    fi
    echo "check banned: ok (${#files[@]} files)"
}

# ---- main ----

run_all() {
    local failed=()
    check_format || failed+=(format)
    check_cppcheck || failed+=(cppcheck)
    check_banned || failed+=(banned)
    if [ "${#failed[@]}" -gt 0 ]; then
        echo "check: FAILED: ${failed[*]}" >&2
        return 1
    fi
}

cmd=${1:-all}
[ "$#" -gt 0 ] && shift
case "$cmd" in
all) run_all ;;
format) check_format "$@" ;;
cppcheck) check_cppcheck ;;
banned) check_banned ;;
-h | --help | help) usage ;;
*) usage >&2; exit 2 ;;
esac
