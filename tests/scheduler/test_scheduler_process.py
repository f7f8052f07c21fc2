"""`flask --app wsgi scheduler run` started for real, as operators run it:
an account whose server accepts and never answers does not delay another
account's polls (on a real Dovecot), and a second scheduler stands by while
the first lives and takes over once it is killed with kill -9. Both
databases; short intervals through SCHEDULER_INTERVALS and the accounts' rows."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.health.models import JobHeartbeat
from switchboard.inbound.accounts import create_account
from switchboard.inbound.models import IncomingAccount
from tests.receiver.conftest import make_mail, wait_for

ROOT = Path(__file__).resolve().parents[2]
FAST = "poll-accounts=1,send-outbox=1,sweep-inbound=1,housekeeping=1"


class Scheduler:
    """One `scheduler run` process, its output kept in a file."""

    def __init__(self, app, log_path: Path, intervals: str):
        env = dict(os.environ, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], SECRET_KEY="test-secret",
                   SCHEDULER_INTERVALS=intervals, SCHEDULER_STANDBY_SECONDS="0.2")
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "scheduler", "run"],
                                        cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.runner = f"{socket.gethostname()}:{self.process.pid}"

    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def schedulers(app, tmp_path):
    started: list[Scheduler] = []

    def start(intervals: str = FAST) -> Scheduler:
        scheduler = Scheduler(app, tmp_path / f"scheduler-{len(started)}.log", intervals)
        started.append(scheduler)
        return scheduler

    yield start
    for scheduler in started:
        scheduler.stop(signal.SIGKILL)


class SilentServer:
    """Accepts connections and never says a word (a hung IMAP server)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(connection)

    def close(self):
        self.sock.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


def _heartbeats() -> dict[str, JobHeartbeat]:
    return {row.job: row for row in db.session.scalars(sa.select(JobHeartbeat))}


def test_a_hanging_imap_server_does_not_delay_another_accounts_poll(app, schedulers, silent_server, mail_account):
    # Polled first (its name sorts first and neither was polled yet), and silent for 60 s.
    silent = create_account("a-silent", "imap", host="127.0.0.1", port=silent_server.port, security="none",
                            username="nobody", password="x", timeout_seconds=60)
    working = create_account("b-dovecot", "imap", host="127.0.0.1", port=mail_account.server.ports.imap,
                             security="none", username=mail_account.email, password=mail_account.password,
                             timeout_seconds=10)
    # Every 2 s: shorter than the 10 s the CLI and the portal allow, so the test is short.
    silent.poll_interval_seconds = working.poll_interval_seconds = 2
    db.session.commit()
    silent_id, working_id = silent.id, working.id
    mail_account.append(make_mail(subject="Log call: scanner offline"))

    scheduler = schedulers("poll-accounts=1,send-outbox=60,sweep-inbound=60,housekeeping=3600")
    started = time.monotonic()
    # The mail on Dovecot becomes a call while the silent server holds its poll.
    assert wait_for(lambda: db.session.scalar(sa.select(sa.func.count()).select_from(Call)) == 1, timeout=30), \
        scheduler.output()
    assert time.monotonic() - started < 30
    assert db.session.scalar(sa.select(Call.summary)) == "scanner offline"
    # And it goes on being polled at its own interval: three more polls within ~6 s.
    seen = set()

    def polled_again():
        seen.add(db.session.get(IncomingAccount, working_id).last_poll_at)
        return len(seen) >= 4

    assert wait_for(polled_again, timeout=15, interval=0.2), scheduler.output()
    # All the while the silent account's first poll has not ended (its outcome is written at the end),
    # and it was not started again: one connection.
    assert db.session.get(IncomingAccount, silent_id).last_poll_at is None
    assert len(silent_server.connections) == 1
    assert time.monotonic() - started < 45
    # One line per successful poll: the account, what it stored, what was acted on.
    assert wait_for(lambda: "poll b-dovecot: stored 1 new" in scheduler.output(), timeout=5), scheduler.output()
    line = next(l for l in scheduler.output().splitlines() if "poll b-dovecot: stored 1 new" in l)
    assert "acted on 1 (1 processed)" in line
    assert mail_account.messages() == []  # moved to Processed once stored


def test_a_second_scheduler_stands_by_and_takes_over_after_kill_9(app, schedulers):
    first = schedulers()

    def all_run_by(scheduler):
        rows = _heartbeats()
        return rows and all(row.runner == scheduler.runner for row in rows.values()) and rows

    rows = wait_for(lambda: all_run_by(first), timeout=30, interval=0.1)
    assert rows, first.output()
    jobs = sorted(rows)
    assert {"poll-accounts", "send-outbox", "sweep-inbound", "housekeeping"} <= set(jobs)

    second = schedulers()
    assert wait_for(lambda: "another scheduler is active; standing by" in second.output(), timeout=30), \
        second.output()
    # For a few seconds: the first goes on running every job, the second runs none.
    before = {job: row.started_at for job, row in _heartbeats().items()}
    time.sleep(2)
    db.session.rollback()
    rows = _heartbeats()
    assert all(row.runner == first.runner for row in rows.values()), {j: r.runner for j, r in rows.items()}
    assert all(rows[job].started_at > before[job] for job in ("poll-accounts", "send-outbox"))
    assert second.process.poll() is None

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    killed = time.monotonic()
    # The lock dies with its process (PostgreSQL ends the session; the kernel drops the flock).
    taken = wait_for(lambda: all_run_by(second), timeout=20, interval=0.1)
    assert taken, second.output()
    assert sorted(taken) == jobs
    assert time.monotonic() - killed < 20
    assert "scheduler active" in second.output()
