"""The scheduler: only one is active per database, and its jobs do the
work the operator expects (inbound sweep, outbox send) without raising."""

from email.message import EmailMessage

from scheduler import jobs
from scheduler.runner import JOBS, SingleScheduler, _wrap
from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.inbound.models import InboundMessage, InboundStatus
from switchboard.inbound.store import store_message


def test_only_one_scheduler_is_active_and_a_standby_takes_over(app):
    first, second = SingleScheduler(app), SingleScheduler(app)
    assert first.try_acquire()
    try:
        assert not second.try_acquire()
    finally:
        first.release()
    assert second.try_acquire()
    second.release()


def test_jobs_have_stable_ids():
    # Operators' monitors know them (heartbeats, `desk health`): new jobs are added, none renamed.
    assert [job_id for job_id, _, _ in JOBS][:4] == ["poll-accounts", "send-outbox", "sweep-inbound", "housekeeping"]


def test_inbound_sweep_acts_on_messages_left_new(app):
    msg = EmailMessage()
    msg["From"] = "erin@example.org"
    msg["Subject"] = "Projector broken"
    msg.set_content("Room 4")
    stored = store_message(msg.as_bytes(), source="pipe")
    db.session.commit()
    _wrap(app, jobs.sweep_inbound)()
    row = db.session.get(InboundMessage, stored.inbound_id)
    assert row.status is InboundStatus.PROCESSED
    assert db.session.query(Call).one().summary == "Projector broken"


def test_a_failing_job_is_logged_not_fatal(app, caplog):
    def broken():
        raise RuntimeError("boom")

    _wrap(app, broken)()
    assert "job broken failed" in caplog.text
