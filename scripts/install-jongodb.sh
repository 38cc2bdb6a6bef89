#!/usr/bin/env bash
# Installs jongodb, the in-memory MongoDB wire-protocol server the store-mongo
# tests run against when MONGODB_URI is not set, and prints its binary path.
# Idempotent: a second run finds the binary and installs nothing.
set -euo pipefail

version="0.1.6"
package="@jongodb/memory-server-bin-linux-x64-gnu"
cache="${JONGODB_CACHE:-$HOME/.cache/tickets/jongodb}"
bin="$cache/node_modules/$package/bin/jongodb"
installed="$cache/node_modules/$package/package.json"

if [[ ! -x "$bin" ]] || ! grep -q "\"version\": \"$version\"" "$installed" 2>/dev/null; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "install-jongodb: npm is required (apt-get install -y npm)" >&2
        exit 1
    fi
    mkdir -p "$cache"
    npm install --prefix "$cache" --no-audit --no-fund --loglevel=error "$package@$version" >&2
fi

if [[ ! -x "$bin" ]]; then
    echo "install-jongodb: $bin is missing after the install" >&2
    exit 1
fi
echo "$bin"
