#!/usr/bin/env bash
# Install what Switchboard needs to build, run and test, on Debian 12.
# Safe to run again and again: it only installs what is missing.
#
#   scripts/deps.sh               system packages + Node.js/npm + tests/integration npm packages
#   scripts/deps.sh --build-only  only what `make build` / `make run` need (no Node.js)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

build_only=0
case "${1:-}" in
"") ;;
--build-only) build_only=1 ;;
*)
    echo "usage: scripts/deps.sh [--build-only]" >&2
    exit 2
    ;;
esac

# Libraries and tools, checked through dpkg. clang with its runtime
# libraries (libclang-rt-14-dev: libFuzzer, the sanitizers) builds the fuzz
# targets; valgrind runs the leak check of `make test`.
packages=(build-essential cmake pkg-config libuv1-dev libssl-dev zlib1g-dev
    libhttp-parser-dev libjansson-dev libcriterion-dev clang libclang-rt-14-dev cppcheck
    libsqlite3-dev uthash-dev libyaml-dev libjwt-dev libhiredis-dev)
# valgrind: the leak check; chromium: the browser tests; redis-server: the
# cluster tests.
((build_only)) || packages+=(valgrind chromium redis-server)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$pkg")
done
# Node.js and npm may come from outside Debian (e.g. /usr/bin/npm installed by
# hand), so check for the commands, and only fall back to Debian's packages.
if ((!build_only)); then
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
fi

if ((${#missing[@]} == 0)); then
    echo "deps: all system packages present"
else
    install_cmd=(apt-get install -y --no-install-recommends "${missing[@]}")
    if ((EUID == 0)); then
        echo "deps: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${install_cmd[@]}" -qq
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        echo "deps: installing ${missing[*]} (with sudo)"
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive "${install_cmd[@]}" -qq
    else
        echo "deps: missing ${missing[*]}, and no root or passwordless sudo to install them." >&2
        echo "deps: run this, then try again:" >&2
        echo "  sudo apt-get update && sudo ${install_cmd[*]}" >&2
        exit 1
    fi
fi

((build_only)) && exit 0

# npm packages of the integration tests and of the browser tests (e2e:
# playwright-core, which drives Debian's chromium and downloads no browser),
# reinstalled when the manifest or the lock file is newer than what
# node_modules was installed from.
for itest in "$ROOT/tests/integration" "$ROOT/tests/e2e"; do
    [[ -f $itest/package.json ]] || continue
    stamp="$itest/node_modules/.package-lock.json"
    if [[ ! -f $stamp || $itest/package.json -nt $stamp ||
        ( -f $itest/package-lock.json && $itest/package-lock.json -nt $stamp ) ]]; then
        echo "deps: installing npm packages in ${itest#"$ROOT"/}"
        if [[ -f $itest/package-lock.json ]]; then
            (cd "$itest" && npm ci --no-audit --no-fund)
        else
            (cd "$itest" && npm install --no-audit --no-fund)
        fi
    fi
done
