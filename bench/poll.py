"""Draining a real mailbox: N messages put into a throwaway Dovecot mailbox
(IMAP, then POP3), then one poll as `mail poll` does it (fetch, store, commit,
move or delete, batch by batch, while acting processes act on each stored
batch), until every message is a call or a note. Prints the poll rate (stored
msg/s) and the end-to-end drain rate, on a fresh SQLite file and/or
PostgreSQL database. Needs root and Dovecot (tests/servers).

    .venv/bin/python bench/poll.py [--count 5000] [--runs 1] [--protocol imap|pop3|both]
                                   [--database sqlite|postgresql|both] [--batch-size 200] [--processes 2]

--processes 0 acts after the poll, in the polling process.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import PG_ADMIN_URL, _prepare, make_messages  # noqa: E402


def _database(kind: str, tmp: str):
    import sqlalchemy as sa

    if kind == "sqlite":
        return f"sqlite:///{tmp}/bench.db", None
    import psycopg

    name = f"bench_poll_{os.getpid()}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False), name


def _drop(name: str | None) -> None:
    if name:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def one_run(dovecot, protocol: str, database: str, messages: list[bytes], batch_size: int,
            processes: int) -> dict:
    from receiver.poll import poll_account
    from receiver.worker import ProcessingWorker, WriteGate
    from switchboard.db import db
    from switchboard.inbound.accounts import create_account
    from switchboard.inbound.process import process_pending
    from tests.conftest import make_test_app

    user = f"bench-{protocol}-{database}-{time.monotonic_ns()}@example.test"
    dovecot.add_user(user, "bench-password")
    for raw in messages:
        dovecot.append(user, raw)
    with tempfile.TemporaryDirectory(prefix="bench-poll-") as tmp:
        url, pg_name = _database(database, tmp)
        try:
            _prepare(url)
            app = make_test_app(url)
            with app.app_context():
                ports = dovecot.ports
                account = create_account(
                    "box", protocol, host="127.0.0.1", port=ports.imap if protocol == "imap" else ports.pop3,
                    security="none", username=user, password="bench-password",
                    batch_size=batch_size, max_messages_per_session=len(messages), timeout_seconds=60)
                db.session.commit()
                workers = None
                if processes:  # as `mail poll` does: acting processes act on each batch once stored
                    workers = ProcessingWorker(app, batch=50, sweep_seconds=3600, gate=WriteGate.for_app(app),
                                               processes=processes)
                    workers.start()
                started = time.perf_counter()
                result = poll_account(account.id, gate=workers and workers.gate,
                                      on_stored=workers and workers.submit)
                polled = time.perf_counter()
                if not result.ok or result.stored != len(messages):
                    raise SystemExit(f"poll failed: {result}")
                if workers is None:
                    outcomes = Counter(r.status for r in process_pending(batch=50))
                else:
                    outcomes, failures = workers.finish()
                    if failures:
                        raise SystemExit(f"acting failed: {failures[-1]}")
                drained = time.perf_counter()
                left = len(dovecot.messages(user))
                db.engine.dispose()
        finally:
            _drop(pg_name)
            dovecot.clear(user)
    return {
        "poll": len(messages) / (polled - started),
        "drain": len(messages) / (drained - started),
        "left": left,
        "outcomes": dict(outcomes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--protocol", choices=("imap", "pop3", "both"), default="both")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--batch-size", type=int, default=200, help="the account's fetch batch size")
    parser.add_argument("--processes", type=int, default=2, help="acting processes (0: act after the poll)")
    args = parser.parse_args()

    from tests.servers.dovecot import Dovecot
    from tests.servers.tls import make_certificates

    messages = make_messages(args.count)
    print(f"{len(messages)} messages of 2-20 KB, fetch batches of {args.batch_size}, {os.cpu_count()} cores",
          flush=True)
    dovecot = Dovecot("/usr/sbin/dovecot", make_certificates(Path(tempfile.mkdtemp(prefix="bench-tls-"))))
    dovecot.start()
    try:
        protocols = ["imap", "pop3"] if args.protocol == "both" else [args.protocol]
        databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
        for database in databases:
            for protocol in protocols:
                results = []
                for run in range(args.runs):
                    result = one_run(dovecot, protocol, database, messages, args.batch_size, args.processes)
                    results.append(result)
                    print(f"  {protocol} on {database} run {run + 1}: poll (fetch+store+settle) "
                          f"{result['poll']:.0f} msg/s, drained into calls "
                          f"{result['drain']:.0f} msg/s; left in mailbox {result['left']}; {result['outcomes']}",
                          flush=True)
                med = {k: statistics.median(r[k] for r in results) for k in ("poll", "drain")}
                print(f"{protocol} on {database} (median of {len(results)}): poll {med['poll']:.0f} msg/s, "
                      f"drained {med['drain']:.0f} msg/s", flush=True)
    finally:
        dovecot.remove()


if __name__ == "__main__":
    main()
