#!/usr/bin/env bash
# Cross-node delivery rate and latency (issue 7): builds a release
# switchboard and runs bench/cluster.mjs, which starts a redis-server and one,
# two and three nodes on 127.0.0.1 and prints a Markdown table.
#
#   bench/cluster.sh
#
# Environment: BUILD (default build-release), and BENCH_SECONDS, BENCH_SUBS,
# BENCH_WINDOW, BENCH_NODES as bench/cluster.mjs reads them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build-release}
[[ $BUILD = /* ]] || BUILD="$ROOT/$BUILD"
command -v redis-server >/dev/null || { echo "cluster.sh: redis-server is needed (scripts/deps.sh)" >&2; exit 1; }
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target switchboard >/dev/null
SB_BIN="$BUILD/switchboard" exec timeout 600 node "$ROOT/bench/cluster.mjs"
