#!/usr/bin/env bash
# Property-based fuzzing of the HTTP API against the OpenAPI document it
# serves: schemathesis (PyPI) generates requests from the spec, valid and
# invalid, and checks every answer for server errors, conformance to the
# documented response schemas and to the documented status codes. Zero
# failures, or this exits non-zero.
#
# Runs the debug `ticketd` that `cargo test --workspace` built, on a fresh
# SQLite file, with authentication on (`--auth token`) and an admin token,
# as a production server runs. `GET /tickets/stream` is left out: it is a Server-Sent Events
# stream that stays open until the client leaves, which schemathesis would
# wait on forever; its own black-box tests cover it.
#
# Knobs: SCHEMATHESIS_MAX_EXAMPLES (default 100 per operation),
# SCHEMATHESIS_VENV (where schemathesis is installed; reused between runs).
set -euo pipefail
cd "$(dirname "$0")/.."

version="4.32.5"
target="${CARGO_TARGET_DIR:-target}"
venv="${SCHEMATHESIS_VENV:-$target/schemathesis-venv}"
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

cargo build --quiet --bin ticketd
work="$(mktemp -d)"
store="sqlite://$work/tickets.db"
token="$("$target/debug/ticketd" token create --role admin --name fuzz --store "$store" \
    2>"$work/token.log" | tail -n 1)"
"$target/debug/ticketd" --listen 127.0.0.1:0 --auth token --store "$store" \
    >"$work/stdout" 2>"$work/ticketd.log" &
pid=$!
cleanup() {
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

url=""
for _ in $(seq 200); do
    url="$(sed -n 's/^listening on //p' "$work/stdout")"
    [[ -n "$url" ]] && break
    sleep 0.05
done
if [[ -z "$url" ]]; then
    echo "ticketd did not start; its log:" >&2
    cat "$work/ticketd.log" >&2
    exit 1
fi

status=0
"$venv/bin/st" run "$url/openapi.json" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" \
    --header "Authorization: Bearer $token" \
    --exclude-path /tickets/stream \
    --report-dir "$work/report" \
    --no-color || status=$?
if [[ $status -ne 0 ]]; then
    echo "schemathesis found failures; ticketd's log ends:" >&2
    tail -n 50 "$work/ticketd.log" >&2
fi
exit "$status"
