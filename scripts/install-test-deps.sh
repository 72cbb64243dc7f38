#!/usr/bin/env bash
# Installs what `make test` needs on a fresh Debian machine with a Rust toolchain (rustup).
# Idempotent: installs only what is missing.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if have rustup; then
    for component in rustfmt clippy; do
        if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
            rustup component add "$component"
        fi
    done
fi
have cargo || { echo "cargo is required (install Rust with rustup)" >&2; exit 1; }
# Debian packages: a C compiler, kcat (librdkafka 2.0.2: the old-client compatibility case),
# nftables, and OpenSSL's headers.
apt_packages=()
have cc || apt_packages+=(build-essential)
have kcat || apt_packages+=(kcat)
# nftables: the replication tests cut brokers apart with it.
have nft || apt_packages+=(nftables)
# OpenSSL's headers and pkg-config: librdkafka is built with TLS (the benchmark over TLS).
dpkg -s libssl-dev >/dev/null 2>&1 || apt_packages+=(libssl-dev)
have pkg-config || apt_packages+=(pkg-config)
if ((${#apt_packages[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${apt_packages[@]}"
fi
# Python and JavaScript Kafka clients, the benchmark's peer broker (Tansu) and the offline
# Kubernetes object validator, pinned.
root="$(cd "$(dirname "$0")/.." && pwd)"
have python3 || { echo "python3 is required" >&2; exit 1; }
python3 -m pip install --quiet --disable-pip-version-check -r "$root/tests/clients/requirements.txt" \
    -r "$root/tests/bench/requirements.txt" -r "$root/tests/k8s/requirements.txt" \
    -r "$root/tests/kafka-python/requirements.txt"
# kafka-python's own integration suite, from its source package (the version the clients pin).
kafka_python_sdist="$root/target/kafka-python/kafka_python-3.0.12.tar.gz"
if [ ! -f "$kafka_python_sdist" ]; then
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
        --dest "$root/target/kafka-python" kafka-python==3.0.12
fi
have npm || { echo "npm (Node.js) is required" >&2; exit 1; }
npm ci --silent --no-audit --no-fund --prefix "$root/tests/clients"

echo "test dependencies: ok"
