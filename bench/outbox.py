"""How fast the outbox empties: N queued notification mails (N/5 calls with 5 mails each, so
they thread; rendered from the default template at send time, each with a timeline entry
written when sent) sent by 1 and by several sender
processes to a local aiosmtpd sink in its own process, on SQLite and on PostgreSQL. Prints
mails/s, the median of several runs, and checks the sink got every Message-ID exactly once.

    .venv/bin/python bench/outbox.py [--count 5000] [--runs 3] [--senders 1,2]
                                     [--databases sqlite,postgresql] [--batch 100]

PostgreSQL: BENCH_POSTGRES_ADMIN (default TEST_POSTGRES_ADMIN, else
postgresql://postgres@127.0.0.1:5432/test); a database switchboard_bench is (re)created.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CUSTOMERS = 50
MAILS_PER_CALL = 5  # a call's mails thread under each other (In-Reply-To, References)


# -- the sink, in its own process ------------------------------------------------------------

def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _serve(commands, answers) -> None:
    from tests.outbox.smtp_sink import SmtpSink

    sink = SmtpSink()
    sink.start()
    answers.put(sink.port)
    cpu = _cpu()
    while True:
        command = commands.get()
        if command == "count":
            ids = Counter()
            for received in sink.messages:
                ids[_message_id(received.data)] += 1
            answers.put((len(sink.messages), len(ids), sink.connections, _cpu() - cpu))
            sink.messages.clear()
            sink.connections = 0
            cpu = _cpu()
        else:
            sink.stop()
            answers.put("stopped")
            return


def _message_id(data: bytes) -> str:
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
        if not line:
            break
    return ""


# -- the database ------------------------------------------------------------------------------

def _app(url: str):
    from wsgi import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", "TESTING": False,
                       "DESK_URL": "https://desk.example.org", "MAIL_DOMAIN": "desk.example.org"})


def _database_url(kind: str, folder: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder}/bench.db"
    import psycopg
    import sqlalchemy as sa

    admin = (os.environ.get("BENCH_POSTGRES_ADMIN") or os.environ.get("TEST_POSTGRES_ADMIN")
             or "postgresql://postgres@127.0.0.1:5432/test")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "switchboard_bench" WITH (FORCE)')
        conn.execute('CREATE DATABASE "switchboard_bench"')
    url = sa.engine.make_url(admin).set(drivername="postgresql+psycopg", database="switchboard_bench")
    return url.render_as_string(hide_password=False)


def _prepare(url: str, sink_port: int) -> None:
    from flask_migrate import upgrade

    from switchboard.db import db
    from switchboard.outbox.servers import add_server
    from switchboard.people.services import create_person

    app = _app(url)
    with app.app_context():
        upgrade()
        add_server("sink", "127.0.0.1", port=sink_port, security="none", from_address="servicedesk@example.org",
                   from_name="Acme Service Desk")
        for i in range(CUSTOMERS):
            create_person(f"customer{i}@example.com", f"Customer {i}")
        db.session.commit()


def _queue(url: str, count: int) -> None:
    """Empty the outbox and timelines, then queue `count` mails as the notifications do."""
    import sqlalchemy as sa

    from switchboard.calls.models import Call
    from switchboard.db import db
    from switchboard.history.models import HistoryEntry
    from switchboard.outbox import catalogue
    from switchboard.outbox.models import OutboxMessage
    from switchboard.outbox.notify import queue_notification
    from switchboard.people.models import Person
    from switchboard.calls.services import log_call
    from switchboard.outbox.views import call_view

    app = _app(url)
    with app.app_context():
        db.session.execute(sa.delete(OutboxMessage))
        db.session.execute(sa.delete(HistoryEntry).where(HistoryEntry.kind == "EMAIL_OUT"))
        db.session.commit()
        customers = list(db.session.scalars(sa.select(Person).order_by(Person.id)))
        calls = list(db.session.scalars(sa.select(Call).order_by(Call.id)))
        wanted = max(1, count // MAILS_PER_CALL)
        for i in range(len(calls), wanted):
            calls.append(log_call(customers[i % len(customers)], f"Printer on floor {i % 7} jams on every page"))
        db.session.execute(sa.delete(OutboxMessage))  # the acknowledgements log_call queued
        db.session.commit()
        for i in range(count):
            call = calls[i % wanted]
            queue_notification(catalogue.CALL_LOGGED, [call.customer], record=call,
                               variables={"call": call_view(call)}, mail_actor=True)
            if i % 500 == 499:
                db.session.commit()
        db.session.commit()
        db.engine.dispose()


def _sender(url: str, batch: int, ready, go, results) -> None:
    from switchboard.db import db
    from switchboard.outbox.sender import Connections, send_due

    app = _app(url)
    with app.app_context():
        db.session.execute(db.text("SELECT 1"))  # connect before the clock starts
        db.session.commit()
        ready.put(os.getpid())
        go.wait()
        cpu = _cpu()
        sent = failed = deferred = 0
        with Connections() as connections:  # one SMTP connection per sender, kept across batches
            while True:
                report = send_due(limit=batch, connections=connections)
                sent, failed, deferred = sent + report.sent, failed + report.failed, deferred + report.deferred
                if report.claimed == 0:
                    break
        results.put((sent, failed, deferred, time.perf_counter(), _cpu() - cpu))


def _one_run(url: str, count: int, senders: int, batch: int, commands, answers) -> float:
    _queue(url, count)
    ctx = mp.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [ctx.Process(target=_sender, args=(url, batch, ready, go, results)) for _ in range(senders)]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=120)
    started = time.perf_counter()
    go.set()
    outcomes = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(30)
    elapsed = max(o[3] for o in outcomes) - started
    sent = sum(o[0] for o in outcomes)
    commands.put("count")
    received, unique, connections, sink_cpu = answers.get(timeout=60)
    if sent != count or received != count or unique != count:
        raise SystemExit(f"lost or doubled mail: sent {sent}, sink got {received} ({unique} distinct) of {count}; "
                         f"failed {sum(o[1] for o in outcomes)}, deferred {sum(o[2] for o in outcomes)}")
    sender_cpu = sum(o[4] for o in outcomes)
    return count / elapsed, connections, sender_cpu * 1000 / count, sink_cpu * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--senders", default="1,2", help="comma-separated sender process counts")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--batch", type=int, default=100, help="rows claimed per send_due call")
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    commands, answers = ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=_serve, args=(commands, answers))
    server.start()
    port = answers.get(timeout=30)
    print(f"{os.cpu_count()} CPUs; {args.count} mails per run, median of {args.runs}; sink on 127.0.0.1:{port}",
          flush=True)
    lines = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for kind in args.databases.split(","):
                url = _database_url(kind, folder)
                _prepare(url, port)
                for senders in (int(s) for s in args.senders.split(",")):
                    rates, cpus = [], []
                    for run in range(args.runs):
                        rate, connections, sender_ms, sink_ms = _one_run(url, args.count, senders, args.batch,
                                                                          commands, answers)
                        rates.append(rate)
                        cpus.append(sender_ms)
                        print(f"{kind:10} {senders} sender(s) run {run + 1}: {rate:6.0f} mails/s "
                              f"({connections} SMTP connections; CPU per mail: senders {sender_ms:.2f} ms, "
                              f"sink {sink_ms:.2f} ms; load average {os.getloadavg()[0]:.1f})", flush=True)
                    line = (f"{kind:10} {senders} sender(s): median {statistics.median(rates):6.0f} mails/s, "
                            f"sender CPU {statistics.median(cpus):.2f} ms/mail")
                    lines.append(line)
                    print(line, flush=True)
    finally:
        commands.put("stop")
        answers.get(timeout=30)
        server.join(10)
    print("\nsummary")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
