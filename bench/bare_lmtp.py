"""The yardstick the intake target is set against: a bare aiosmtpd LMTP server
that only commits each raw message to SQLite (no Switchboard code), fed by the
same client as bench/ingest.py. The machine is shared and its speed varies
from hour to hour; run this beside bench/ingest.py and compare the two.

    .venv/bin/python bench/bare_lmtp.py [--count 5000] [--connections 32] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import _cpu_seconds, _deliver, _free_port, make_messages  # noqa: E402


def _serve(path: str, port: int, ready) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.lmtp import LMTP

    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS message (id INTEGER PRIMARY KEY, mail_from TEXT, raw BLOB)")

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            conn.execute("INSERT INTO message (mail_from, raw) VALUES (?, ?)", (envelope.mail_from, envelope.content))
            conn.commit()
            return "\r\n".join(["250 2.0.0 stored"] * len(envelope.rcpt_tos))

    class Bare(Controller):
        def factory(self):
            return LMTP(self.handler, data_size_limit=50 * 1024 * 1024)

    controller = Bare(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


def one_run(messages: list[bytes], connections: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        port = _free_port()
        ready = multiprocessing.Event()
        server = multiprocessing.Process(target=_serve, args=(f"{tmp}/bare.db", port, ready), daemon=True)
        server.start()
        ready.wait(30)
        try:
            started, cpu_started = time.perf_counter(), _cpu_seconds(server.pid)
            latencies, failures = asyncio.run(_deliver(port, messages, connections))
            elapsed, cpu = time.perf_counter() - started, _cpu_seconds(server.pid) - cpu_started
        finally:
            server.terminate()
            server.join()
        if failures:
            raise SystemExit(f"{len(failures)} deliveries failed, e.g. {failures[0]!r}")
        latencies.sort()
        return {"accepted": len(messages) / elapsed, "p50": latencies[len(latencies) // 2] * 1000,
                "p99": latencies[int(len(latencies) * 0.99)] * 1000, "cpu": cpu * 1000 / len(messages)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    messages = make_messages(args.count)
    results = []
    for run in range(args.runs):
        result = one_run(messages, args.connections)
        results.append(result)
        print(f"  bare run {run + 1}: accepted {result['accepted']:.0f} msg/s, ack p50 {result['p50']:.1f} ms, "
              f"p99 {result['p99']:.1f} ms, server CPU {result['cpu']:.2f} ms/msg", flush=True)
    med = {k: statistics.median(r[k] for r in results) for k in ("accepted", "p50", "p99")}
    print(f"bare aiosmtpd + SQLite (median of {len(results)}): accepted {med['accepted']:.0f} msg/s, "
          f"ack p50 {med['p50']:.1f} ms, p99 {med['p99']:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
