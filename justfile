# Recipes for the usual loops. `just --list` shows them.

store := env_var_or_default("TICKETS_STORE", "sqlite://./data/tickets.db")

# The compose server's MongoDB as the host reaches it: directly, since the
# replica set member advertises `mongo:27017`, a name only the containers
# resolve. E.g. `TICKETS_STORE='mongodb://127.0.0.1:27017/tickets?directConnection=true' just projector`.
compose_mongo := "mongodb://127.0.0.1:27017/?directConnection=true"

# Run ticketd with the in-process projector on the embedded store.
run:
    cargo run --release --bin ticketd

# Run ticketd without a projector, for use beside `just projector`.
serve-only:
    cargo run --release --bin ticketd -- --no-projector

# Run the projector as its own daemon on the same store.
projector:
    cargo run --release --bin ticket-projector -- run --store {{store}}

# The whole test suite (what CI runs, minus the gates).
test:
    cargo test --workspace

# The full benchmark set on release builds (minutes): report and SVG plots in
# bench/results/. Extra flags go to ticket-bench, e.g. `just bench --tickets 300000`.
bench *ARGS:
    cargo build --release -p tickets -p bench
    cargo run --release -p bench -- all --peer-python "$(bash scripts/install-peer.sh)" {{ARGS}}

# The benchmark at smoke sizes on debug builds (seconds): proves the tool
# works; its figures mean nothing.
bench-smoke:
    cargo build -p tickets -p bench
    cargo run -p bench -- all --smoke --peer-python "$(bash scripts/install-peer.sh)" --out target/bench-smoke

# Format the code.
fmt:
    cargo fmt --all

# Lint the way CI does.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Fuzz the HTTP API against its own OpenAPI document (schemathesis, as CI does).
fuzz-api:
    bash .ci/api-fuzz.sh

# Everything CI runs.
ci:
    bash .ci/run

# From the host, reach its MongoDB with `compose_mongo` (see above).
# MongoDB replica set + ticketd + projector in containers (API on 127.0.0.1:8080).
compose-up:
    docker compose up --build

compose-down:
    docker compose down

# The whole suite with the MongoDB tests on a real server (your own replica set), e.g.
# MONGODB_URI='mongodb://host:27017/?replicaSet=rs0' just test-mongo
test-mongo:
    @test -n "${MONGODB_URI:-}" || { echo "set MONGODB_URI to a MongoDB replica set" >&2; exit 1; }
    cargo test --workspace

# The whole suite against the compose server (`just compose-up` first).
test-compose:
    MONGODB_URI='{{compose_mongo}}' cargo test --workspace

# Install jongodb, the in-memory MongoDB the tests use without MONGODB_URI.
jongodb:
    bash scripts/install-jongodb.sh
