#!/usr/bin/env bash
# Runs the libFuzzer targets of a fuzz build (see `make fuzz`).
#
#   tests/fuzz/run.sh run BUILD SECONDS [TARGET...]   fuzz each target for SECONDS
#   tests/fuzz/run.sh test BUILD SECONDS [TARGET...]  the same from the seeds alone
#   tests/fuzz/run.sh merge BUILD [TARGET...]         add what the runs found to the seeds
#
# BUILD is a build directory configured with -DSB_FUZZ=ON (build-fuzz). With
# `run`, each target fuzzes its working corpus BUILD/corpus/<target>, a copy
# of the checked-in seeds in tests/fuzz/corpus/<target> that keeps what it
# finds from run to run. `test` (what `make test` runs) starts each time from
# a fresh copy of the seeds in BUILD/corpus-test/<target>, so its time goes
# to fuzzing, not to replaying a corpus that grows. The checked-in corpus
# only changes through `merge` (libFuzzer -merge=1: only inputs of the
# working corpus that add coverage). Crash inputs go to
# BUILD/artifacts/<target>/, the full output to BUILD/logs/<target>.log.
#
# `run` and `test` print one line per target, "PASS fuzz_x: ..." or "FAIL
# fuzz_x: ...", and exit non-zero when any failed (a crash, a leak, a
# timeout, an out-of-memory, or the target could not run).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SEEDS=$ROOT/tests/fuzz/corpus

usage() {
    echo "usage: tests/fuzz/run.sh run|test BUILD SECONDS [TARGET...]" >&2
    echo "       tests/fuzz/run.sh merge BUILD [TARGET...]" >&2
    exit 2
}

(($# >= 2)) || usage
mode=$1
build=$2
shift 2
[[ $build == /* ]] || build=$ROOT/$build
seconds=0
if [[ $mode == run || $mode == test ]]; then
    (($# >= 1)) || usage
    seconds=$1
    shift
    [[ $seconds =~ ^[1-9][0-9]*$ ]] || {
        echo "fuzz: SECONDS must be a positive number, not '$seconds'" >&2
        exit 2
    }
elif [[ $mode != merge ]]; then
    usage
fi

targets=("$@")
if ((${#targets[@]} == 0)); then
    for bin in "$build"/fuzz/fuzz_*; do
        [[ -x $bin ]] && targets+=("$(basename "$bin")")
    done
fi
if ((${#targets[@]} == 0)); then
    echo "fuzz: no fuzz targets in $build/fuzz: build them with 'make fuzz'" >&2
    exit 1
fi

# libFuzzer's own exit code says whether it found anything; LeakSanitizer
# and UBSan report through it (UBSan halts on the first error).
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

failed=0
for t in "${targets[@]}"; do
    bin=$build/fuzz/$t
    work=$build/corpus/$t
    if [[ $mode == test ]]; then
        work=$build/corpus-test/$t
        rm -rf "$work"
    fi
    artifacts=$build/artifacts/$t
    log=$build/logs/$t.log
    if [[ ! -x $bin ]]; then
        echo "FAIL $t: no binary $bin (build it with 'make fuzz')"
        failed=1
        continue
    fi
    mkdir -p "$work" "$artifacts" "$(dirname "$log")"
    flags=(-rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "-artifact_prefix=$artifacts/")
    [[ -f $ROOT/tests/fuzz/$t.dict ]] && flags+=("-dict=$ROOT/tests/fuzz/$t.dict")

    if [[ $mode == merge ]]; then
        # Inputs of the working corpus that add coverage to the seeds are
        # copied into the seeds (named by their SHA-1).
        mkdir -p "$SEEDS/$t"
        before=$(find "$SEEDS/$t" -type f | wc -l)
        "$bin" -merge=1 "${flags[@]}" "$SEEDS/$t" "$work" >"$log" 2>&1 || {
            echo "FAIL $t: merge failed; see $log"
            failed=1
            continue
        }
        after=$(find "$SEEDS/$t" -type f | wc -l)
        echo "merged $t: $((after - before)) new seed(s) in tests/fuzz/corpus/$t"
        continue
    fi

    # The working corpus starts as (and always includes) the seeds.
    [[ -d $SEEDS/$t ]] && cp -n "$SEEDS/$t"/* "$work"/ 2>/dev/null
    start=$(date +%s)
    "$bin" "${flags[@]}" -max_total_time="$seconds" "$work" >"$log" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    runs=$(awk '/^stat::number_of_executed_units:/ { print $2 }' "$log")
    rate=$(awk '/^stat::average_exec_per_sec:/ { print $2 }' "$log")
    corpus=$(find "$work" -type f | wc -l)
    crash=$(grep -o "Test unit written to .*" "$log" | tail -1 | sed 's/^Test unit written to //')
    if ((rc == 0)) && [[ -z $crash ]]; then
        echo "PASS $t: ${runs:-?} runs in ${took}s, ${rate:-?} exec/s, corpus $corpus"
    else
        failed=1
        echo "--- $t: the end of $log"
        tail -n 60 "$log"
        echo "FAIL $t: libFuzzer exited $rc after ${took}s${crash:+; input: $crash}" \
            "(reproduce: $bin ${crash:-INPUT})"
    fi
done
exit $failed
