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
)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
