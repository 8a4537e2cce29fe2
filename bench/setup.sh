#!/usr/bin/env bash
# Install what the peer servers of bench/ need and build them, on Debian 12.
# Safe to run again and again: it installs only what is missing and rebuilds
# only what changed. Something that cannot be installed or built is reported
# and skipped; bench/run.sh then marks that peer "not available".
#
#   bench/setup.sh          (make bench-setup)
#
# Peers, built into $BUILD/bench/peers/ (BUILD defaults to build):
#   node-ws   bench/peers/node-ws/hub.mjs       Node.js + the `ws` package (npm ci)
#   gorilla   $BUILD/bench/peers/gorilla-hub    Debian's golang + golang-github-gorilla-websocket-dev
#   lws       $BUILD/bench/peers/lws-hub        Debian's libwebsockets-dev + libjansson-dev
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD = /* ]] || BUILD="$ROOT/$BUILD"
OUT="$BUILD/bench/peers"
PEERS="$ROOT/bench/peers"
mkdir -p "$OUT"

problems=()
say() { echo "bench-setup: $*"; }

installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

# ---------------------------------------------------------------- packages
# gnuplot-nox draws the PNGs (pngcairo) without pulling in a desktop.
packages=(golang-go golang-github-gorilla-websocket-dev libwebsockets-dev libjansson-dev
    pkg-config gnuplot-nox python3)
missing=()
for pkg in "${packages[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if ((${#missing[@]})); then
    if ((EUID == 0)); then
        apt=(apt-get)
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        apt=(sudo apt-get)
    else
        apt=()
    fi
    if ((${#apt[@]} == 0)); then
        say "missing ${missing[*]}, and no root or passwordless sudo to install them;"
        say "  run: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
        problems+=("not installed: ${missing[*]}")
    else
        say "installing ${missing[*]}"
        "${apt[@]}" update -qq || say "apt-get update failed; trying with the lists there are"
        if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
            # One at a time, so one missing package does not cost the others.
            for pkg in "${missing[@]}"; do
                DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "$pkg" >/dev/null ||
                    problems+=("apt-get could not install $pkg")
            done
        fi
    fi
else
    say "all system packages present"
fi

# ---------------------------------------------------------------- node-ws
node_dir="$PEERS/node-ws"
stamp="$node_dir/node_modules/.package-lock.json"
if ! command -v npm >/dev/null 2>&1; then
    problems+=("node-ws: no npm")
elif [[ ! -f $stamp || $node_dir/package.json -nt $stamp || $node_dir/package-lock.json -nt $stamp ]]; then
    say "npm ci in bench/peers/node-ws"
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error) || problems+=("node-ws: npm ci failed")
else
    say "node-ws: npm packages up to date"
fi

# ---------------------------------------------------------------- gorilla
# No Go modules can be downloaded here, so build in GOPATH mode against the
# source Debian installs under /usr/share/gocode.
go_bin="$OUT/gorilla-hub"
if ! command -v go >/dev/null 2>&1; then
    problems+=("gorilla: no go toolchain")
elif [[ ! -d /usr/share/gocode/src/github.com/gorilla/websocket ]]; then
    problems+=("gorilla: /usr/share/gocode/src/github.com/gorilla/websocket missing")
elif [[ ! -x $go_bin || $PEERS/gorilla/main.go -nt $go_bin ]]; then
    say "building $go_bin"
    (cd "$PEERS/gorilla" && GO111MODULE=off GOFLAGS='' GOPATH=/usr/share/gocode \
        GOCACHE="$OUT/.gocache" go build -o "$go_bin" main.go) || problems+=("gorilla: go build failed")
else
    say "gorilla: up to date"
fi

# ---------------------------------------------------------------- lws
lws_bin="$OUT/lws-hub"
if ! pkg-config --exists libwebsockets jansson 2>/dev/null; then
    problems+=("lws: pkg-config finds no libwebsockets or jansson")
elif [[ ! -x $lws_bin || $PEERS/lws/hub.c -nt $lws_bin ]]; then
    say "building $lws_bin"
    # shellcheck disable=SC2046 # pkg-config output is meant to split
    ${CC:-cc} -O2 -Wall -Wextra -o "$lws_bin" "$PEERS/lws/hub.c" \
        $(pkg-config --cflags --libs libwebsockets jansson) || problems+=("lws: build failed")
else
    say "lws: up to date"
fi

if ((${#problems[@]})); then
    for p in "${problems[@]}"; do say "NOT AVAILABLE: $p"; done
    say "continuing; bench/run.sh marks what is missing as not available"
else
    say "all peers ready in ${OUT#"$ROOT"/}"
fi
exit 0
