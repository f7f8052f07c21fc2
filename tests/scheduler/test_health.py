"""Heartbeats and `desk health`: what monitors see, with rows backdated
instead of waiting, on both databases."""

import json
import socket
from datetime import timedelta

from scheduler.runner import _wrap
from switchboard.db import db, utcnow
from switchboard.health.beat import record_run, register_jobs, runner_name
from switchboard.health.models import JobHeartbeat
from switchboard.inbound.accounts import create_account
from switchboard.inbound.models import IncomingAccount
from switchboard.outbox.models import OutboxMessage, OutboxStatus

JOBS = {"poll-accounts": 5, "send-outbox": 5, "housekeeping": 3600}


def _health(app, *args):
    result = app.test_cli_runner().invoke(args=["desk", "health", *args])
    return result.exit_code, result.output


def _all_jobs_ran(seconds_ago: float = 1) -> None:
    register_jobs(JOBS)
    for job, interval in JOBS.items():
        record_run(job, interval, utcnow() - timedelta(seconds=seconds_ago), 0.01, None)


def _account(name: str = "support", **fields) -> IncomingAccount:
    account = create_account(name, "imap", host="127.0.0.1", port=1, security="none", username="u", password="p")
    for key, value in fields.items():
        setattr(account, key, value)
    db.session.commit()
    return account


def test_desk_health_fails_when_no_scheduler_ever_ran(app):
    status, out = _health(app)
    assert status == 1
    assert "no scheduler has ever run" in out


def test_desk_health_is_ok_when_every_job_ran_and_json_has_the_documented_shape(app):
    _all_jobs_ran()
    _account(last_poll_at=utcnow(), last_success_at=utcnow())
    status, out = _health(app, "--json")
    assert status == 0, out
    report = json.loads(out)
    assert set(report) == {"ok", "checked_at", "jobs", "accounts", "outbox", "problems"}
    assert report["ok"] is True and report["problems"] == []
    assert [job["job"] for job in report["jobs"]] == sorted(JOBS)
    job = report["jobs"][0]
    assert set(job) == {"job", "interval_seconds", "started_at", "finished_at", "duration_seconds", "outcome",
                        "error", "last_ok_at", "runner", "stale"}
    assert job["outcome"] == "ok" and job["stale"] is False and job["runner"] == runner_name()
    assert job["started_at"].endswith("Z")
    (account,) = report["accounts"]
    assert set(account) == {"account", "protocol", "state", "interval_seconds", "last_poll_at", "last_success_at",
                            "last_error", "last_error_at", "failing_since", "alarm"}
    assert (account["account"], account["state"], account["alarm"]) == ("support", "ok", False)
    assert report["outbox"] == {"due": 0, "oldest_due_id": None, "oldest_due_at": None,
                                "oldest_due_age_seconds": None}
    status, text = _health(app)
    assert status == 0 and text.strip().endswith("health: ok")


def test_desk_health_exit_1_for_a_job_not_run_for_three_intervals(app):
    _all_jobs_ran()
    # send-outbox runs every 5 s: 14 s ago is fine, 16 s ago is three intervals missed.
    record_run("send-outbox", 5, utcnow() - timedelta(seconds=14), 0.01, None)
    assert _health(app)[0] == 0
    record_run("send-outbox", 5, utcnow() - timedelta(seconds=16), 0.01, None)
    status, out = _health(app)
    assert status == 1
    assert "PROBLEM: job send-outbox has not run for 3 of its 5 s intervals" in out
    assert "job send-outbox (every 5 s): STALE" in out


def test_desk_health_exit_1_for_a_registered_job_that_never_ran(app):
    _all_jobs_ran()
    db.session.add(JobHeartbeat(job="slm-sweep", interval_seconds=60, registered_at=utcnow() - timedelta(minutes=4)))
    db.session.commit()
    status, out = _health(app, "--json")
    assert status == 1
    assert [j["job"] for j in json.loads(out)["jobs"] if j["stale"]] == ["slm-sweep"]


def test_desk_health_exit_2_for_an_account_failing_for_an_hour_3_with_a_stale_job(app):
    _all_jobs_ran()
    now = utcnow()
    account = _account(last_poll_at=now, last_error="connection refused", last_error_at=now,
                       failing_since=now - timedelta(minutes=59))
    assert _health(app)[0] == 0  # failing, not yet for an hour
    account.failing_since = now - timedelta(minutes=61)
    db.session.commit()
    status, out = _health(app)
    assert status == 2
    assert "PROBLEM: account support has failed since" in out and "connection refused" in out
    record_run("housekeeping", 3600, now - timedelta(hours=4), 0.01, None)
    assert _health(app)[0] == 3
    # An account switched off raises no alarm.
    account.active = False
    db.session.commit()
    assert _health(app)[0] == 1


def test_desk_health_shows_the_oldest_due_outbox_row(app):
    _all_jobs_ran()
    now = utcnow()
    for number, minutes in enumerate((3, 30, -5)):  # the last one is due in 5 minutes: not yet
        db.session.add(OutboxMessage(message_type=1, status=OutboxStatus.QUEUED, to=["carol@example.org"],
                                     message_id=f"<due-{number}@desk.test>",
                                     next_attempt_at=now - timedelta(minutes=minutes)))
    db.session.commit()
    status, out = _health(app, "--json")
    outbox = json.loads(out)["outbox"]
    assert outbox["due"] == 2
    assert db.session.get(OutboxMessage, outbox["oldest_due_id"]).message_id == "<due-1@desk.test>"
    assert 1790 < outbox["oldest_due_age_seconds"] < 1900


def test_the_runner_writes_a_heartbeat_for_every_run_failed_or_not(app, caplog):
    def broken():
        raise RuntimeError("the mail server said no")

    _wrap(app, broken, "send-outbox", 5)()
    row = db.session.get(JobHeartbeat, "send-outbox")
    assert (row.outcome, row.error, row.interval_seconds) == ("failed", "RuntimeError: the mail server said no", 5)
    assert row.last_ok_at is None and row.runner == runner_name()
    assert "job broken failed" in caplog.text

    _wrap(app, lambda: None, "send-outbox", 5)()
    db.session.expire_all()
    row = db.session.get(JobHeartbeat, "send-outbox")
    assert (row.outcome, row.error) == ("ok", None)
    assert row.last_ok_at is not None and row.duration_seconds >= 0
    assert utcnow() - row.started_at < timedelta(seconds=30)


def test_register_jobs_drops_jobs_no_longer_run_and_keeps_the_last_run_of_the_others(app):
    _all_jobs_ran(seconds_ago=2)
    before = db.session.get(JobHeartbeat, "send-outbox").started_at
    register_jobs({"send-outbox": 10, "slm-sweep": 60})
    db.session.expire_all()
    assert sorted(r.job for r in db.session.query(JobHeartbeat)) == ["send-outbox", "slm-sweep"]
    row = db.session.get(JobHeartbeat, "send-outbox")
    assert (row.started_at, row.interval_seconds) == (before, 10)


def test_a_poll_failing_keeps_since_when_and_a_success_clears_it(app, mail_account):
    from receiver.poll import poll_account

    with socket.socket() as closed:  # a port nobody listens on: connection refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    account = _account(port=port, username=mail_account.email, timeout_seconds=5)
    account_id = account.id
    assert not poll_account(account_id).ok
    first = db.session.get(IncomingAccount, account_id).failing_since
    assert first is not None
    assert not poll_account(account_id).ok
    assert db.session.get(IncomingAccount, account_id).failing_since == first
    from switchboard import secrets

    account = db.session.get(IncomingAccount, account_id)
    account.port = mail_account.server.ports.imap
    account.password_encrypted = secrets.encrypt(mail_account.password)
    db.session.commit()
    assert poll_account(account_id).ok
    assert db.session.get(IncomingAccount, account_id).failing_since is None


def test_desk_health_exits_75_with_one_line_when_the_database_is_unreachable(tmp_path):
    from tests.conftest import make_test_app

    with socket.socket() as closed:  # nobody listens here
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    app = make_test_app(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none")
    result = app.test_cli_runner().invoke(args=["desk", "health", "--json"])
    assert result.exit_code == 75
    assert result.output.strip().splitlines() == [
        "desk health: the database is not available (OperationalError); exit 75"]
