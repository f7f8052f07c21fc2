"""The outbox job's warnings: a problem that lasts is said once, not every 5 s."""

import logging

from scheduler import jobs
from switchboard.calls.services import log_call
from switchboard.db import db


def test_a_lasting_problem_is_logged_once_and_a_changed_one_at_once(app, people, caplog, monkeypatch):
    monkeypatch.setattr(jobs, "_said", {})
    log_call(people["anna"], "Printer", customer=people["carol"])  # queues the acknowledgement
    db.session.commit()
    with caplog.at_level(logging.WARNING, logger="scheduler.jobs"):
        for _ in range(3):
            jobs.send_outbox()
    said = [r.getMessage() for r in caplog.records]
    assert said == ["outbox: 1 mail(s) due but no usable outgoing server "
                    "(add one with `flask --app wsgi mail servers add`)"]
    caplog.clear()
    log_call(people["anna"], "Scanner", customer=people["carol"])
    db.session.commit()
    with caplog.at_level(logging.WARNING, logger="scheduler.jobs"):
        jobs.send_outbox()
    assert [r.getMessage() for r in caplog.records] == [
        "outbox: 2 mail(s) due but no usable outgoing server (add one with `flask --app wsgi mail servers add`)"]
    # After REPEAT_SECONDS the same line is said again.
    monkeypatch.setattr(jobs, "REPEAT_SECONDS", 0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="scheduler.jobs"):
        jobs.send_outbox()
    assert len(caplog.records) == 1
