"""Checks docker-compose.yml without a Docker engine (CI has none): it parses,
and names the services, ports and replica set that the README describes; the
healthcheck waits for a writable primary; ports are published on the host's
loopback only; the docs and the justfile give host connection strings that
reach the replica set member directly."""

import pathlib
import sys

import yaml

root = pathlib.Path(__file__).resolve().parent.parent
compose = yaml.safe_load((root / "docker-compose.yml").read_text())
readme = (root / "README.md").read_text()
mongodb_doc = root / "docs" / "mongodb.md"
mongodb_docs = mongodb_doc.read_text() if mongodb_doc.is_file() else ""
justfile = (root / "justfile").read_text()
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
healthcheck = str(mongo.get("healthcheck", {}).get("test", ""))
expect("rs.initiate" in healthcheck, "mongo's healthcheck must initiate the replica set")
expect("isWritablePrimary" in healthcheck and "quit(" in healthcheck,
       "mongo's healthcheck must fail until the member is a writable primary "
       "(exit non-zero unless db.hello().isWritablePrimary)")
expect(any("/data/db" in v for v in mongo.get("volumes", [])), "mongo data must be on a volume")

for name in ("ticketd", "projector"):
    service = services.get(name, {})
    store = service.get("environment", {}).get("TICKETS_STORE", "")
    expect(store.startswith("mongodb://mongo:27017/") and "replicaSet=rs0" in store,
           f"{name} must use the replica set through TICKETS_STORE")
    expect(service.get("depends_on", {}).get("mongo", {}).get("condition") == "service_healthy",
           f"{name} must wait for a healthy mongo")
    expect("build" in service, f"{name} must be built from the Dockerfile")



def published(port):
    """(host ip, container port) of a published port, short or long syntax."""
    if isinstance(port, dict):
        return str(port.get("host_ip", "")), str(port.get("target", ""))
    parts = str(port).split(":")
    # "ip:host:container", "host:container" or "container" (no host ip: all
    # interfaces).
    host_ip = parts[0] if len(parts) == 3 else ""
    return host_ip, parts[-1].split("/")[0]


for name, service in services.items():
    for port in service.get("ports", []):
        host_ip, _ = published(port)
        expect(host_ip == "127.0.0.1",
               f"{name} publishes {port!r} beyond the host's loopback: bind it to 127.0.0.1")
expect(any(published(p) == ("127.0.0.1", "8080") for p in services.get("ticketd", {}).get("ports", [])),
       "ticketd must publish port 8080 on 127.0.0.1")
expect(any(published(p) == ("127.0.0.1", "27017") for p in mongo.get("ports", [])),
       "mongo must publish port 27017 on 127.0.0.1 for host tools")
expect("--no-projector" in services.get("ticketd", {}).get("command", []),
       "ticketd must leave projecting to the projector service")
expect(services.get("projector", {}).get("command", [])[:2] == ["ticket-projector", "run"],
       "projector must run `ticket-projector run`")
expect((root / "Dockerfile").is_file(), "Dockerfile is missing")

for phrase in ("docker compose up", "rs0", "8080"):
    expect(phrase in readme or phrase in mongodb_docs,
           f"neither README nor docs/mongodb.md mentions `{phrase}`")

# The member advertises `mongo:27017`, which the host cannot resolve: a host
# connection string must connect directly, or the driver's replica-set
# discovery chases that name and fails.
host_uri = "mongodb://127.0.0.1:27017/"
for where, text in (("README.md", readme), ("docs/mongodb.md", mongodb_docs), ("justfile", justfile)):
    expect(host_uri in text and "directConnection=true" in text,
           f"{where} must give the compose server's host connection string "
           f"({host_uri}...?directConnection=true)")

if problems:
    print("docker-compose.yml check failed:", *problems, sep="\n  ")
    sys.exit(1)
print(f"docker-compose.yml: services {', '.join(sorted(services))} as the README describes")
