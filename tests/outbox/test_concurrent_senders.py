"""Several senders at once (threads, each with its own database session) never send a mail
twice: the claim is one statement, with SKIP LOCKED on PostgreSQL and the write lock on SQLite."""

import threading
from collections import Counter
from datetime import timedelta

import pytest

from switchboard.db import db, utcnow
from switchboard.outbox import catalogue, sender
from switchboard.outbox.queue import queue_mail
from switchboard.outbox.sender import send_due

from .desk import SENT, desk_server, rows  # noqa: F401

MAILS = 200


def _queue(count: int) -> None:
    for i in range(count):
        queue_mail(catalogue.MANUAL_MESSAGE, [f"customer{i}@example.org"], subject=f"Mail {i}",
                   text="Hello.\n", automatic=False)
    db.session.commit()


def test_two_senders_at_once_send_every_mail_exactly_once(app, desk_server):
    _queue(MAILS)
    start = threading.Barrier(2)
    sent: dict[str, int] = {}
    errors: list[BaseException] = []

    def run_sender(name: str) -> None:
        try:
            with app.app_context():  # its own session and connection
                start.wait(10)
                total = 0
                while True:
                    report = send_due(limit=5)
                    total += report.sent
                    if report.claimed == 0:
                        break
                sent[name] = total
                db.session.remove()
        except BaseException as error:  # surfaced below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=run_sender, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    received = Counter(m.message["Message-ID"] for m in desk_server.messages)
    assert len(received) == MAILS
    assert received.most_common(1)[0][1] == 1  # no Message-ID twice
    assert sum(sent.values()) == MAILS and all(sent.values()), sent  # both took part
    assert {r.status for r in rows()} == {SENT}
    assert {r.message_id for r in rows()} == set(received)


# PostgreSQL only (not a skip): on SQLite, one writer at a time, the second claim waits for the first.
@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_a_claim_skips_rows_another_sender_holds_in_an_open_transaction(app, backend):
    _queue(5)
    now = utcnow()
    lease = now + timedelta(minutes=5)
    first = sender._claim(now, lease, 2)  # not committed: its rows stay locked
    with app.app_context():
        second = sender._claim(now, lease, 10)
        db.session.commit()
        db.session.remove()
    db.session.commit()
    assert len(first) == 2 and len(second) == 3
    assert not set(first) & set(second)
