"""End-to-end intake over LMTP: N realistic messages from K concurrent
connections to a receiver (`flask receiver run`, in its own process) on a
fresh, migrated SQLite file and/or PostgreSQL database. Prints accepted
msg/s, processed msg/s (until every message is a call or a note) and the
p50/p99 acknowledgement latency (final "." to the 250).

    .venv/bin/python bench/ingest.py [--count 5000] [--connections 32] [--runs 1] [--rate MSG_PER_S]
                                     [--database sqlite|postgresql|both] [--set NAME=VALUE]
                                     [--profile FILE]  (py-spy on PATH)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
WORDS = ("printer jammed on floor two again laptop will not boot after update vpn drops every few minutes "
         "monitor flickers keyboard missing keys email stuck outbox shared drive full badge reader broken "
         "meeting room screen no signal password expired cannot log in phone has no dial tone").split()
EXISTING_CALLS = 50  # made before timing, so "Update call N" mail has something to update


def _text(rng: random.Random, size: int) -> str:
    lines, total = [], 0
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12)))
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n"


def make_messages(count: int, seed: int = 7) -> list[bytes]:
    """2-20 KB each; about one in five carries an attachment; one in ten updates an existing call."""
    rng = random.Random(seed)
    messages = []
    for i in range(count):
        msg = EmailMessage()
        kind = rng.random()
        # Updates come from the call's own customer (call n belongs to customer n-1).
        customer = rng.randint(1, EXISTING_CALLS) - 1 if kind < 0.1 else i % 300
        msg["From"] = f"Customer {customer} <customer{customer}@example.org>"
        msg["To"] = "help@desk.test"
        msg["Date"] = "Mon, 03 Mar 2025 09:15:00 +0000"
        msg["Message-ID"] = make_msgid(idstring=str(i), domain="example.org")
        if kind < 0.1:
            msg["Subject"] = f"Update call {customer + 1}: more details"
        elif kind < 0.3:
            msg["Subject"] = "Re: " + " ".join(rng.choice(WORDS) for _ in range(5))
        else:
            msg["Subject"] = "Log call: " + " ".join(rng.choice(WORDS) for _ in range(5))
        target = rng.randint(2_000, 20_000)
        if rng.random() < 0.2:
            attachment = rng.randbytes(rng.randint(1_000, max(1_000, target * 3 // 4 - 1_000)))
            msg.set_content(_text(rng, max(500, target - len(attachment) * 4 // 3)))
            msg.add_attachment(attachment, maintype="application", subtype="pdf", filename=f"scan-{i}.pdf")
        else:
            msg.set_content(_text(rng, target))
        messages.append(msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return messages


def _dot_stuffed(raw: bytes) -> bytes:
    lines = raw.split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines) + b".\r\n"


async def _reply(reader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("receiver closed the connection")
        if line[3:4] != b"-":
            return line


async def _connection(port: int, messages: list[bytes], latencies: list[float], failures: list[bytes],
                      interval: float = 0.0) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _reply(reader)
    writer.write(b"LHLO bench.test\r\n")
    await _reply(reader)
    next_at = time.perf_counter() + random.random() * interval
    for raw in messages:
        if interval:  # an offered load (open loop), not as fast as possible
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            next_at += interval
        writer.write(b"MAIL FROM:<customer@example.org>\r\nRCPT TO:<help@desk.test>\r\nDATA\r\n")
        for _ in range(3):
            line = await _reply(reader)
            if line[:1] not in (b"2", b"3"):
                failures.append(line)
        writer.write(_dot_stuffed(raw))
        sent = time.perf_counter()
        await writer.drain()
        line = await _reply(reader)
        latencies.append(time.perf_counter() - sent)
        if not line.startswith(b"250"):
            failures.append(line)
    writer.write(b"QUIT\r\n")
    await _reply(reader)
    writer.close()


async def _deliver(port: int, messages: list[bytes], connections: int, rate: float = 0.0):
    latencies: list[float] = []
    failures: list[bytes] = []
    shares = [messages[i::connections] for i in range(connections)]
    interval = connections / rate if rate else 0.0
    await asyncio.gather(*(_connection(port, share, latencies, failures, interval) for share in shares if share))
    return latencies, failures


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prepare(url: str) -> None:
    from flask_migrate import upgrade

    from switchboard.calls.services import log_call
    from switchboard.db import db
    from switchboard.inbound.accounts import create_account
    from switchboard.people.services import create_person
    from tests.conftest import make_test_app

    app = make_test_app(url)
    with app.app_context():
        upgrade()
        create_account("help", "lmtp", addresses=["help@desk.test"])
        analyst = create_person("analyst@desk.test", "Ann Analyst", analyst=True, customer=False)
        for i in range(EXISTING_CALLS):
            customer = create_person(f"customer{i}@example.org", f"Customer {i}")
            log_call(analyst, f"existing problem {i}", customer=customer)
        db.session.commit()
        db.engine.dispose()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU the receiver process has used so far (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _counts(engine) -> tuple[int, int]:
    import sqlalchemy as sa

    with engine.connect() as conn:
        total, new = conn.execute(sa.text(
            "SELECT count(*), coalesce(sum(CASE WHEN status = 'new' THEN 1 ELSE 0 END), 0) FROM inbound_message"
        )).one()
    return int(total), int(new)


def _outcomes(engine) -> dict:
    import sqlalchemy as sa

    with engine.connect() as conn:
        calls = conn.execute(sa.text("SELECT count(*) FROM inbound_message WHERE outcome LIKE 'Logged %'")).scalar()
        notes = conn.execute(sa.text("SELECT count(*) FROM inbound_message WHERE outcome LIKE 'Added as a note%'")
                             ).scalar()
        other = conn.execute(sa.text("SELECT status, outcome FROM inbound_message WHERE outcome NOT LIKE 'Logged %' "
                                     "AND outcome NOT LIKE 'Added as a note%' LIMIT 3")).all()
    return {"calls": calls, "notes": notes, "other": [tuple(r) for r in other]}


def one_run(database: str, messages: list[bytes], connections: int, env_extra: dict,
            profile: str | None = None, rate: float = 0.0) -> dict:
    import sqlalchemy as sa

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        pg_name = None
        if database == "sqlite":
            url = f"sqlite:///{tmp}/bench.db"
        else:
            import psycopg

            pg_name = f"bench_ingest_{os.getpid()}"
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{pg_name}"')
            url = str(sa.engine.make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg", database=pg_name)
                      .render_as_string(hide_password=False))
        _prepare(url)
        port = _free_port()
        env = dict(os.environ, DATABASE_URL=url, SECRET_KEY="bench", LMTP_PORT=str(port), LMTP_HOST="127.0.0.1",
                   **env_extra)
        log = open(Path(tmp) / "receiver.log", "w")
        receiver = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "receiver", "run"], cwd=ROOT,
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
        engine = sa.create_engine(url.replace("sqlite:///", "sqlite:///file:") + "?mode=ro&uri=true"
                                  if database == "sqlite" else url)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or receiver.poll() is not None:
                        raise SystemExit("the receiver did not start; see " + log.name)
                    time.sleep(0.05)
            spy = None
            if profile:
                # Samples the receiver (all threads) while it works, as collapsed stacks.
                spy = subprocess.Popen(["py-spy", "record", "--pid", str(receiver.pid), "--threads", "--idle",
                                        "--format", "raw", "--rate", "200", "-o", profile],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)
            started = time.perf_counter()
            latencies, failures = asyncio.run(_deliver(port, messages, connections, rate))
            accepted_at = time.perf_counter()
            if failures:
                raise SystemExit(f"{len(failures)} deliveries not accepted, e.g. {failures[0]!r}")
            while True:
                total, new = _counts(engine)
                if total >= len(messages) and new == 0:
                    break
                if time.perf_counter() - accepted_at > 600:
                    raise SystemExit(f"not processed after 10 minutes: {new} of {total} still new")
                time.sleep(0.05)
            processed_at = time.perf_counter()
            cpu = _cpu_seconds(receiver.pid)
            outcomes = _outcomes(engine)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
        finally:
            engine.dispose()
            receiver.send_signal(signal.SIGTERM)
            receiver.wait(60)
            log.close()
            if pg_name:
                import psycopg

                with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
    latencies.sort()
    return {
        "accepted": len(messages) / (accepted_at - started),
        "processed": len(messages) / (processed_at - started),
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "cpu_ms": cpu * 1000 / len(messages),
        "outcomes": outcomes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="offer this many msg/s in total (default: each connection as fast as it can)")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--profile", metavar="FILE",
                        help="record the receiver with py-spy (on PATH) into FILE (collapsed stacks)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a receiver setting for the run, e.g. RECEIVER_PROCESS_BATCH=50")
    args = parser.parse_args()
    env_extra = dict(item.split("=", 1) for item in args.set)
    messages = make_messages(args.count)
    sizes = sorted(len(m) for m in messages)
    print(f"{len(messages)} messages, {sizes[0] // 1024}-{sizes[-1] // 1024} KB (median {sizes[len(sizes) // 2] // 1024} KB), "
          f"{args.connections} connections{f' offering {args.rate:.0f} msg/s' if args.rate else ''}, "
          f"{os.cpu_count()} cores", flush=True)
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    for database in databases:
        results = []
        for run in range(args.runs):
            profile = f"{args.profile}.{database}.{run + 1}" if args.profile else None
            result = one_run(database, messages, args.connections, env_extra, profile, args.rate)
            results.append(result)
            print(f"  {database} run {run + 1}: accepted {result['accepted']:.0f} msg/s, processed "
                  f"{result['processed']:.0f} msg/s, ack p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, "
                  f"receiver CPU {result['cpu_ms']:.1f} ms/msg, outcomes {result['outcomes']}", flush=True)
        med = {k: statistics.median(r[k] for r in results) for k in ("accepted", "processed", "p50", "p99")}
        print(f"{database} (median of {len(results)}): accepted {med['accepted']:.0f} msg/s, processed "
              f"{med['processed']:.0f} msg/s, ack p50 {med['p50']:.1f} ms, p99 {med['p99']:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
