#!/usr/bin/env bash
# Run every test suite against the sanitizer build (ASan + UBSan).
# `make test` builds first and then calls this.
#
# Suites: static analysis (cppcheck), the unit tests (Criterion under ctest),
# the integration tests (node --test), the browser tests (node --test driving
# Debian's Chromium through playwright-core), the libFuzzer targets (each run for
# FUZZ_TEST_SECONDS, default 15, from the fuzz build) and a leak check of the
# release server under valgrind. The last line is "N passed, N failed",
# counting tests over every suite; the exit status is non-zero if anything
# failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ASAN_BUILD=${ASAN_BUILD:-build-asan}
[[ $ASAN_BUILD == /* ]] || ASAN_BUILD=$ROOT/$ASAN_BUILD
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$ROOT/$BUILD
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
[[ $FUZZ_BUILD == /* ]] || FUZZ_BUILD=$ROOT/$FUZZ_BUILD
FUZZ_TEST_SECONDS=${FUZZ_TEST_SECONDS:-15}

# Anything the caller already set in these is kept and wins (it comes last).
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT

# Totals over every suite, counted in tests (each Criterion test, each node
# test, the static analysis as one).
passed=0
failed=0

# suite NAME PARSER COMMAND...: runs one suite with its output shown and kept,
# then adds what PARSER reads from the output to the totals. A suite that
# failed without a failing test to show for it (a crash, a sanitizer report
# outside a test, a build problem) counts as one failure.
suite() {
    local name=$1 parser=$2
    shift 2
    echo "=== $name"
    local log="$LOGS/suite.log" rc
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    local p f
    read -r p f < <("$parser" "$log")
    if ((rc != 0 && f == 0)); then
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    echo "=== $name: $p passed, $f failed"
}

# Criterion prints "Synthesis: Tested: N | Passing: N | Failing: N | Crashing: N"
# per test binary.
count_criterion() {
    awk -F'[:|]' '/Synthesis: Tested:/ {
            for (i = 1; i <= NF; i++) {
                gsub(/[^A-Za-z0-9]/, "", $i)
                if ($i == "Passing") p += $(i + 1)
                if ($i == "Failing" || $i == "Crashing") f += $(i + 1)
            }
        } END { print p + 0, f + 0 }' "$1"
}

# node --test (TAP) ends with "# pass N" and "# fail N".
count_tap() {
    awk '/^# pass / { p = $3 } /^# fail / { f = $3 } END { print p + 0, f + 0 }' "$1"
}

# tests/fuzz/run.sh and the valgrind driver print a "PASS name: ..." or
# "FAIL name: ..." line per test.
count_pass_fail() {
    awk '/^PASS [^ ]+:/ { p++ } /^FAIL [^ ]+:/ { f++ } END { print p + 0, f + 0 }' "$1"
}

count_one() {
    if grep -q . "$1"; then echo "0 1"; else echo "1 0"; fi
}

unit_tests() {
    if [[ ! -f $ASAN_BUILD/CTestTestfile.cmake ]]; then
        echo "no configured build in $ASAN_BUILD: run 'make test'" >&2
        return 1
    fi
    # --no-tests=error: test sources exist, so finding no test is a build
    # problem. -V shows every test binary's summary line, which is counted.
    ctest --test-dir "$ASAN_BUILD" --output-on-failure --no-tests=error -V
}

# In a subshell, so the cd stays here.
integration_tests() (
    export SB_BIN=$ASAN_BUILD/switchboard
    if [[ ! -x $SB_BIN ]]; then
        echo "server binary $SB_BIN is missing: run 'make test'" >&2
        return 1
    fi
    cd "$ROOT/tests/integration" || return 1
    # One test file at a time (Node.js >= 20.10 has the flag; older ones lack it).
    local flags=()
    node --test-concurrency=1 -e 0 2>/dev/null && flags+=(--test-concurrency=1)
    node --test "${flags[@]}" .
)

# The chat, the dashboard and switchboard.js in Debian's Chromium (headless,
# through playwright-core) against the sanitizer build. Screenshots go to
# tests/e2e/output/.
browser_tests() (
    export SB_BIN=$ASAN_BUILD/switchboard
    if [[ ! -x $SB_BIN ]]; then
        echo "server binary $SB_BIN is missing: run 'make test'" >&2
        return 1
    fi
    cd "$ROOT/tests/e2e" || return 1
    local flags=()
    node --test-concurrency=1 -e 0 2>/dev/null && flags+=(--test-concurrency=1)
    node --test "${flags[@]}" .
)

static_analysis() {
    cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
        --std=c11 -D_GNU_SOURCE -DSB_VERSION='"0"' --inline-suppr \
        -I "$ROOT/include" -I "$ROOT/src" "$ROOT/src" "$ROOT/bench" "$ROOT/tools"
}

# Each target fuzzes for a bounded time from its seeds: a test passes when
# libFuzzer ends without a crash, leak, timeout or out-of-memory.
fuzz_tests() {
    "$ROOT/tests/fuzz/run.sh" test "$FUZZ_BUILD" "$FUZZ_TEST_SECONDS"
}

# The release binary (no sanitizer) under valgrind, driven through every kind
# of traffic, then stopped with SIGTERM: no memory error, nothing lost.
valgrind_check() {
    if [[ ! -x $BUILD/switchboard ]]; then
        echo "server binary $BUILD/switchboard is missing: run 'make test'" >&2
        return 1
    fi
    node "$ROOT/tests/integration/valgrind/drive.mjs" "$BUILD/switchboard"
}

suite "static analysis (cppcheck)" count_one static_analysis

if compgen -G "$ROOT/tests/unit/test_*.c" >/dev/null; then
    suite "unit tests (ctest, ${ASAN_BUILD#"$ROOT"/})" count_criterion unit_tests
else
    echo "=== unit tests: none in tests/unit yet"
fi

if compgen -G "$ROOT/tests/integration/*.test.mjs" >/dev/null; then
    suite "integration tests (node --test, tests/integration)" count_tap integration_tests
else
    echo "=== integration tests: none in tests/integration yet"
fi

if compgen -G "$ROOT/tests/e2e/*.test.mjs" >/dev/null; then
    suite "browser tests (playwright, tests/e2e)" count_tap browser_tests
fi

if compgen -G "$ROOT/tests/fuzz/fuzz_*.c" >/dev/null; then
    suite "fuzz (libFuzzer, ${FUZZ_TEST_SECONDS}s per target, ${FUZZ_BUILD#"$ROOT"/})" \
        count_pass_fail fuzz_tests
fi

suite "leak check (valgrind, ${BUILD#"$ROOT"/}/switchboard)" count_pass_fail valgrind_check

echo "$passed passed, $failed failed"
((failed == 0))
