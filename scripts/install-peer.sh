#!/usr/bin/env bash
# Installs the benchmark's peer, the Python `eventsourcing` library, into a
# virtual environment of its own and prints that environment's python, for
# `ticket-bench --peer-python`. Idempotent: a second run installs nothing.
set -euo pipefail

version="9.5.6"
venv="${PEER_VENV:-$HOME/.cache/tickets/peer-venv}"
python="$venv/bin/python"

if ! "$python" -c "import eventsourcing, importlib.metadata as m; assert m.version('eventsourcing') == '$version'" 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$python" -m pip install --quiet --disable-pip-version-check "eventsourcing==$version" >&2
fi
echo "$python"
