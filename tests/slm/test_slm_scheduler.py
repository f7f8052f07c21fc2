"""`flask --app wsgi scheduler run` started for real runs the SLM sweep: a call with a short SLA
on the 24x7 calendar gets its escalation mail at a real SMTP server within a minute of crossing
the level, and once. Both databases; the sweep and the sender every second (SCHEDULER_INTERVALS)."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from switchboard.calls.services import log_call
from switchboard.db import db, utcnow
from switchboard.outbox.servers import add_server
from tests.outbox.smtp_sink import SmtpSink

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sink(app):
    with SmtpSink() as sink:
        add_server("sink", sink.host, port=sink.port, security="none", from_address="desk@example.org",
                   timeout_seconds=5)
        db.session.commit()
        yield sink


@pytest.fixture
def scheduler(app, tmp_path):
    log = open(tmp_path / "scheduler.log", "w")
    env = dict(os.environ, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], SECRET_KEY="test-secret",
               SCHEDULER_INTERVALS="slm-sweep=1,send-outbox=1")
    process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "scheduler", "run"],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    yield process
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


def escalation_mails(sink):
    return [m for m in sink.messages if "escalation level 1" in m.message["Subject"]]


def test_the_running_scheduler_mails_an_escalation_once_within_a_minute_of_the_level(
        people, make_sla, sink, scheduler):
    make_sla(fix=1000, levels=(1,))  # level 1 at 1% of 1000 s: 10 s after logging; breach far off
    call = log_call(people["anna"], "Server room too hot", customer=people["carol"], analyst=people["bob"])
    db.session.commit()
    crossing = call.logged_at + timedelta(seconds=10)
    deadline = time.monotonic() + 75
    while not escalation_mails(sink) and time.monotonic() < deadline:
        time.sleep(0.2)
    arrived = utcnow()
    [mail] = escalation_mails(sink)
    assert arrived - crossing < timedelta(seconds=60)
    assert mail.rcpt_tos == ["bob@desk.test"] and call.ref in mail.message["Subject"]
    time.sleep(4)  # several more sweeps and sends
    assert len(escalation_mails(sink)) == 1
    assert scheduler.poll() is None
