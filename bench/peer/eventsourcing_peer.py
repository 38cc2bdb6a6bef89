"""The peer of ticket-bench's `commands` workload: the same ticket commands
run by the Python `eventsourcing` library on its SQLite recorder.

Each command loads the ticket from its events, checks the rule, and saves one
new event in its own transaction, as ticketd does: open, triage, assign an
agent, add a note, close. It runs in-process, with no HTTP in between, on one
thread (the library's SQLite recorder writes under one lock, and Python's GIL
gives threads nothing to add). It prints one JSON object:
{"commands", "errors", "seconds", "synchronous", "journal_mode", "version"}.

Usage: python3 eventsourcing_peer.py --db FILE --seconds N
"""

import argparse
import json
import os
import sys
import time
from importlib.metadata import version


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True, help="SQLite file to create")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument(
        "--check", action="store_true", help="only check the library imports"
    )
    args = parser.parse_args()

    try:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event
    except ImportError as error:
        print(f"eventsourcing is not importable: {error}", file=sys.stderr)
        return 2
    if args.check:
        print(json.dumps({"version": version("eventsourcing")}))
        return 0

    class Ticket(Aggregate):
        @event("Opened")
        def __init__(self, customer: str, subject: str, message: str):
            self.customer = customer
            self.subject = subject
            self.message = message
            self.status = "open"
            self.agent = None
            self.notes = []

        @event("StatusChanged")
        def change_status(self, status: str):
            self.status = status

        @event("AgentAssigned")
        def assign(self, agent: str):
            self.agent = agent

        @event("NoteAdded")
        def add_note(self, text: str):
            self.notes.append(text)

    class Tickets(Application):
        def open(self, customer: str, subject: str, message: str):
            ticket = Ticket(customer, subject, message)
            self.save(ticket)
            return ticket.id

        def set_status(self, ticket_id, status: str):
            ticket = self.repository.get(ticket_id)
            allowed = {"open": {"triaged", "closed"}, "triaged": {"closed"}}
            if status not in allowed.get(ticket.status, set()):
                raise ValueError(f"{ticket.status} -> {status}")
            ticket.change_status(status)
            self.save(ticket)

        def assign(self, ticket_id, agent: str):
            ticket = self.repository.get(ticket_id)
            if ticket.status == "closed":
                raise ValueError("closed")
            ticket.assign(agent)
            self.save(ticket)

        def add_note(self, ticket_id, text: str):
            ticket = self.repository.get(ticket_id)
            if ticket.status == "closed":
                raise ValueError("closed")
            ticket.add_note(text)
            self.save(ticket)

    os.environ["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
    os.environ["SQLITE_DBNAME"] = args.db
    app = Tickets()
    with app.recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute("PRAGMA synchronous")
        synchronous = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
            cursor.fetchone()[0], "?"
        )
        cursor.execute("PRAGMA journal_mode")
        journal_mode = cursor.fetchone()[0]

    commands = errors = 0
    n = 0
    started = time.perf_counter()
    deadline = started + args.seconds
    while time.perf_counter() < deadline:
        steps = [
            lambda: app.open(
                f"customer-{n // 10:04}",
                f"Benchmark ticket {n}",
                "The printer on the third floor is on fire again. Please help.",
            ),
            lambda: app.set_status(ticket_id, "triaged"),
            lambda: app.assign(ticket_id, f"agent-{n % 50:02}"),
            lambda: app.add_note(ticket_id, "Called back; a technician is on the way."),
            lambda: app.set_status(ticket_id, "closed"),
        ]
        ticket_id = None
        for step in steps:
            if time.perf_counter() >= deadline:
                break
            commands += 1
            try:
                result = step()
            except Exception:  # noqa: BLE001 - counted, as ticketd's errors are
                errors += 1
                break
            if ticket_id is None:
                ticket_id = result
        n += 1
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "commands": commands,
                "errors": errors,
                "seconds": seconds,
                "synchronous": synchronous,
                "journal_mode": journal_mode,
                "version": version("eventsourcing"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
