"""A sender killed mid-batch (SIGKILL: an OOM kill, a power cut of the process) and started
again: every mail arrives, and each crash sends at most one mail twice (the one in flight
when it died), because a mark is committed right after the server's 250. Real `outbox send`
processes against the loopback SMTP sink, on both databases."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from switchboard.db import db, utcnow
from switchboard.outbox import catalogue
from switchboard.outbox.models import OutboxMessage, OutboxStatus
from switchboard.outbox.queue import queue_mail
from switchboard.outbox.sender import send_due

from .desk import SENT, desk_server, rows  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
MAILS = 120
LEASE = 10  # the shortest `--lease`: a dead sender's rows are taken again after it
KILL_AFTER = 17  # mails at the sink; not a multiple of the old group of 25 marks


def _sender(app, *args: str) -> subprocess.Popen:
    env = dict(os.environ, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], SECRET_KEY="test-secret")
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "outbox", "send", "--batch", "40",
                             "--lease", str(LEASE), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_once_the_sink_has(proc: subprocess.Popen, sink, count: int) -> None:
    deadline = time.monotonic() + 120
    while len(sink.messages) < count:
        assert proc.poll() is None, f"the sender ended before it was killed: {proc.stdout.read()}"
        assert time.monotonic() < deadline, f"the sink got only {len(sink.messages)} mails"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def _wait_for_the_leases_to_run_out() -> None:
    db.session.rollback()
    last = db.session.scalar(sa.select(sa.func.max(OutboxMessage.lease_until))
                             .where(OutboxMessage.status == OutboxStatus.SENDING))
    db.session.rollback()
    if last is not None:
        time.sleep(max(0.0, (last - utcnow()).total_seconds()) + 0.5)


def test_a_sender_killed_mid_batch_twice_sends_every_mail_and_at_most_one_twice_per_crash(app, desk_server):
    for i in range(MAILS):
        queue_mail(catalogue.MANUAL_MESSAGE, [f"customer{i}@example.org"], subject=f"Mail {i}",
                   text="Hello.\n", automatic=False)
    db.session.commit()
    wanted = {r.message_id for r in rows()}
    desk_server.faults.data_delay = 0.02  # so the kill lands among the batch, not after it

    # The first sender dies 17 mails into its batch of 40; a second one, started at once,
    # takes the next batch (the first's rows keep their lease) and dies 17 mails in too.
    _kill_once_the_sink_has(_sender(app), desk_server, KILL_AFTER)
    _kill_once_the_sink_has(_sender(app), desk_server, len(desk_server.messages) + KILL_AFTER)
    crashes = 2
    # Once their leases have run out, a third sends what is left, the dead senders' rows too.
    _wait_for_the_leases_to_run_out()
    desk_server.faults.data_delay = 0
    last = _sender(app)
    out, _ = last.communicate(timeout=120)
    assert last.returncode == 0, out

    received = Counter(m.message["Message-ID"] for m in desk_server.messages)
    assert set(received) == wanted  # nothing lost
    twice = [mid for mid, n in received.items() if n > 1]
    assert len(twice) <= crashes and max(received.values()) <= 2, received.most_common(crashes + 3)
    assert {r.status for r in rows()} == {SENT}


def test_the_sender_hands_back_its_connection_as_durable_as_it_took_it(app, desk_server, backend):
    """The marks' commits skip the wait for the disk; nothing else done on that pooled
    connection afterwards may (an acknowledged incoming mail must survive a power cut)."""
    for i in range(3):
        queue_mail(catalogue.MANUAL_MESSAGE, [f"customer{i}@example.org"], subject=f"Mail {i}",
                   text="Hello.\n", automatic=False)
    db.session.commit()
    assert send_due().sent == 3
    query = "PRAGMA synchronous" if backend == "sqlite" else "SHOW synchronous_commit"
    held = [db.engine.connect() for _ in range(3)]  # the pool's connections, the sender's among them
    try:
        assert {str(c.exec_driver_sql(query).scalar()) for c in held} == {"2" if backend == "sqlite" else "on"}
    finally:
        for connection in held:
            connection.close()
