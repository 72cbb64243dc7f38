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
have cc || { echo "a C compiler is required"; apt-get update -qq && apt-get install -y -qq build-essential; }
echo "test dependencies: ok"
