"""Checks docker-compose.yml without a Docker engine (CI has none): it parses,
and names the services, ports and replica set that the README describes."""

import pathlib
import sys

import yaml

root = pathlib.Path(__file__).resolve().parent.parent
compose = yaml.safe_load((root / "docker-compose.yml").read_text())
readme = (root / "README.md").read_text()
problems = []


def expect(condition, message):
    if not condition:
        problems.append(message)


services = compose.get("services", {})
for name in ("mongo", "ticketd", "projector"):
    expect(name in services, f"service `{name}` is missing")

mongo = services.get("mongo", {})
expect("--replSet" in mongo.get("command", []) and "rs0" in mongo.get("command", []),
       "mongo must run as replica set rs0")
expect("rs.initiate" in str(mongo.get("healthcheck", {}).get("test", "")),
       "mongo's healthcheck must initiate the replica set")
expect(any("/data/db" in v for v in mongo.get("volumes", [])), "mongo data must be on a volume")

for name in ("ticketd", "projector"):
    service = services.get(name, {})
    store = service.get("environment", {}).get("TICKETS_STORE", "")
    expect(store.startswith("mongodb://mongo:27017/") and "replicaSet=rs0" in store,
           f"{name} must use the replica set through TICKETS_STORE")
    expect(service.get("depends_on", {}).get("mongo", {}).get("condition") == "service_healthy",
           f"{name} must wait for a healthy mongo")
    expect("build" in service, f"{name} must be built from the Dockerfile")

expect("8080:8080" in services.get("ticketd", {}).get("ports", []), "ticketd must publish port 8080")
expect("--no-projector" in services.get("ticketd", {}).get("command", []),
       "ticketd must leave projecting to the projector service")
expect(services.get("projector", {}).get("command", [])[:2] == ["ticket-projector", "run"],
       "projector must run `ticket-projector run`")
expect((root / "Dockerfile").is_file(), "Dockerfile is missing")

for phrase in ("docker compose up", "rs0", "8080"):
    expect(phrase in readme, f"README does not mention `{phrase}`")

if problems:
    print("docker-compose.yml check failed:", *problems, sep="\n  ")
    sys.exit(1)
print(f"docker-compose.yml: services {', '.join(sorted(services))} as the README describes")
