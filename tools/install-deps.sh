#!/usr/bin/env bash
# Installs the Debian packages this project builds, tests and runs with.
# It does nothing when they are all present, so `make run` and `make test`
# call it every time. Uses sudo when not root.
set -euo pipefail

PKGS=(
    build-essential pkg-config
    libczmq-dev libzmq3-dev libmsgpack-dev liblmdb-dev libsodium-dev
    libjwt-dev libjansson-dev libmicrohttpd-dev libgnutls28-dev libpq-dev
    libssl-dev libcmocka-dev libcurl4-openssl-dev curl openssl postgresql
    # jq: the README's walk-through reads values out of replies with it
    jq
    # clang and its runtimes (libFuzzer, the sanitizers): make fuzz, and
    # the fuzz smoke of make test
    clang libclang-rt-14-dev
)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
# Node and npm run `make lint` (tools/lint/). Asked for by command, not by
# package: a node from another Debian repository may bring its own npm, and
# Debian's npm package would conflict with it.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    missing+=(nodejs npm)
fi
node_too_old() {
    # @redocly/cli 2 (tools/lint/package.json) runs on node 20.19 or later
    command -v node >/dev/null &&
        ! node -e 'const [a, b] = process.versions.node.split(".").map(Number);
                   process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'
}
if [ ${#missing[@]} -eq 0 ]; then
    if node_too_old; then
        echo "install-deps: node $(node --version) is older than 20.19: make lint will fail" >&2
    fi
    exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
if node_too_old; then
    echo "install-deps: node $(node --version) is older than 20.19: make lint will fail" >&2
fi
