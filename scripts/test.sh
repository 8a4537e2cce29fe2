#!/usr/bin/env bash
# Run every test suite against the sanitizer build (ASan + UBSan).
# `make test` builds first and then calls this.
#
# A suite is one test runner invocation: the unit tests (ctest) and the
# integration tests (node --test). The last line is "N passed, N failed",
# counting suites; the exit status is non-zero if any suite failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ASAN_BUILD=${ASAN_BUILD:-build-asan}
[[ $ASAN_BUILD == /* ]] || ASAN_BUILD=$ROOT/$ASAN_BUILD

# Anything the caller already set in these is kept and wins (it comes last).
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

passed=0
failed=0

# suite NAME COMMAND...: run one suite and count its result.
suite() {
    local name=$1
    shift
    echo "=== $name"
    if "$@"; then
        echo "=== $name: passed"
        passed=$((passed + 1))
    else
        echo "=== $name: FAILED"
        failed=$((failed + 1))
    fi
}

unit_tests() {
    if [[ ! -f $ASAN_BUILD/CTestTestfile.cmake ]]; then
        echo "no configured build in $ASAN_BUILD: run 'make test'" >&2
        return 1
    fi
    # --no-tests=error: test sources exist, so finding no test is a build problem.
    ctest --test-dir "$ASAN_BUILD" --output-on-failure --no-tests=error
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

static_analysis() {
    cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
        --std=c11 -D_GNU_SOURCE -DSB_VERSION='"0"' --inline-suppr \
        -I "$ROOT/include" -I "$ROOT/src" "$ROOT/src" "$ROOT/bench" "$ROOT/tools"
}

suite "static analysis (cppcheck)" static_analysis

if compgen -G "$ROOT/tests/unit/test_*.c" >/dev/null; then
    suite "unit tests (ctest, ${ASAN_BUILD#"$ROOT"/})" unit_tests
else
    echo "=== unit tests: none in tests/unit yet"
fi

if compgen -G "$ROOT/tests/integration/*.test.mjs" >/dev/null; then
    suite "integration tests (node --test, tests/integration)" integration_tests
else
    echo "=== integration tests: none in tests/integration yet"
fi

echo "$passed passed, $failed failed"
((failed == 0))
