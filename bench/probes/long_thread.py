#!/usr/bin/env python3
"""How a note's cost grows with the length of its ticket's thread.

Every note rewrites its ticket's whole detail row (the `notes` array) in the
projector, and the write side answers with the whole detail; this probe
measures what that costs as a thread grows. Against a running `ticketd`
(auth off; its projector in-process, or apart with `--projector-pid`), it adds NOTES notes of SIZE bytes one
at a time to one ticket and, for each block of BLOCK notes, prints the mean
latency of a note and `ticketd`'s CPU per note (its projector included). As
a baseline it first adds one note of the same size to each of BLOCK fresh
tickets.

    python3 bench/probes/long_thread.py --url http://127.0.0.1:8080 --pid PID

Standard library only. CPU is read from /proc/PID/stat (Linux), after each
block has been projected (the detail, list and dashboard reads with `min_position` answer).
"""

import argparse
import http.client
import json
import os
import time
import urllib.parse


def cpu_seconds(pid):
    """The process's user + system CPU time; 0 for no process (`None`)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Client:
    def __init__(self, url):
        parsed = urllib.parse.urlparse(url)
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80)

    def call(self, method, path, body=None, headers=None):
        payload = json.dumps(body) if body is not None else None
        all_headers = {"content-type": "application/json", **(headers or {})}
        self.conn.request(method, path, payload, all_headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise SystemExit(f"{method} {path}: {response.status} {data[:300]!r}")
        return response, data

    def open_ticket(self, n):
        _, data = self.call(
            "POST",
            "/tickets",
            {"customer": f"probe-{n % 50}", "subject": f"thread {n}", "message": "hello"},
        )
        return json.loads(data)["id"]

    def add_note(self, ticket, text):
        response, data = self.call("PATCH", f"/tickets/{ticket}", {"note": text})
        return int(response.getheader("X-Event-Position")), len(data)

    def wait_projected(self, position, small_ticket):
        # Each read answers once its projection has applied `position`.
        for path in (f"/tickets/{small_ticket}", "/tickets", "/dashboard"):
            sep = "&" if "?" in path else "?"
            response, _ = self.call("GET", f"{path}{sep}min_position={position}")
            if response.getheader("X-Read-Stale"):
                raise SystemExit(f"{path} still behind {position} after the read wait")


def block(client, pid, projector_pid, notes, small_ticket):
    """Runs `notes` (callables returning a position) and measures them."""
    cpu_before = cpu_seconds(pid)
    projector_before = cpu_seconds(projector_pid)
    latencies = []
    position = 0
    body = 0
    for note in notes:
        t0 = time.perf_counter()
        position, body = note()
        latencies.append(time.perf_counter() - t0)
    client.wait_projected(position, small_ticket)
    cpu = cpu_seconds(pid) - cpu_before
    projector = cpu_seconds(projector_pid) - projector_before
    return {
        "mean_ms": 1000 * sum(latencies) / len(latencies),
        "cpu_us_per_note": 1e6 * cpu / len(latencies),
        "projector_us_per_note": 1e6 * projector / len(latencies),
        "response_bytes": body,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--pid", type=int, required=True, help="ticketd's process id")
    parser.add_argument(
        "--projector-pid",
        type=int,
        help="a separate ticket-projector's process id (ticketd run with --no-projector)",
    )
    parser.add_argument("--notes", type=int, default=1000)
    parser.add_argument("--size", type=int, default=5000, help="bytes per note")
    parser.add_argument("--block", type=int, default=100)
    args = parser.parse_args()

    client = Client(args.url)
    text = ("x" * (args.size - 1)) + "."

    fresh = [client.open_ticket(n) for n in range(args.block)]
    one_each = [lambda t=t: client.add_note(t, text) for t in fresh]
    base = block(client, args.pid, args.projector_pid, one_each, fresh[0])
    print(
        f"baseline: one note on each of {args.block} fresh tickets: "
        f"{base['mean_ms']:.2f} ms, {base['cpu_us_per_note']:.0f} µs CPU per note"
        f" (projector apart: {base['projector_us_per_note']:.0f} µs)"
    )

    thread = client.open_ticket(10_000)
    print(f"one ticket, notes of {args.size} bytes:")
    print("notes      mean ms  CPU µs/note  projector µs/note  response bytes")
    for start in range(0, args.notes, args.block):
        count = min(args.block, args.notes - start)
        same_thread = [lambda: client.add_note(thread, text)] * count
        figures = block(client, args.pid, args.projector_pid, same_thread, fresh[0])
        print(
            f"{start + 1:>5}–{start + count:<5}{figures['mean_ms']:>8.2f}"
            f"{figures['cpu_us_per_note']:>13.0f}{figures['projector_us_per_note']:>19.0f}"
            f"{figures['response_bytes']:>16,}"
        )


if __name__ == "__main__":
    main()
