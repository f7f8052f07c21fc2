"""A real Postfix delivering to the receiver over LMTP: the contract that
250 means stored and 4xx means "keep it and try again"."""

import time

import sqlalchemy as sa

from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.inbound.models import InboundMessage

from .conftest import make_mail, storage_fails, wait_for


def rows() -> list[InboundMessage]:
    db.session.rollback()
    return list(db.session.scalars(sa.select(InboundMessage).order_by(InboundMessage.id)))


def outcomes(postfix, queue_ids) -> dict:
    """The latest delivery attempt per (message, recipient) among the given messages."""
    latest = {}
    for delivery in postfix.deliveries():
        if delivery.queue_id in queue_ids:
            latest[(delivery.queue_id, delivery.recipient)] = delivery
    return latest


def wait_outcomes(postfix, queue_ids, recipients: int, status: str, timeout: float = 20.0) -> list:
    """Waits until `recipients` attempts for these messages ended in `status`; returns them."""
    deadline = time.monotonic() + timeout
    while True:
        done = [d for d in outcomes(postfix, queue_ids).values() if d.status == status]
        if len(done) >= recipients:
            return done
        assert time.monotonic() < deadline, f"not {status}: {outcomes(postfix, queue_ids)}"
        time.sleep(0.02)


def test_mail_sent_to_postfix_arrives_over_lmtp_once_per_account(app, desk_accounts, receiver, postfix):
    receiver(port=postfix.lmtp_port)
    queued = postfix.send("carol@example.org", ["help@desk.test", "sales@desk.test", "printers@support.desk.test"],
                          make_mail(to="help@desk.test, sales@desk.test"))
    sent = wait_outcomes(postfix, {queued}, 3, "sent")
    assert sorted(d.recipient for d in sent) == ["help@desk.test", "printers@support.desk.test", "sales@desk.test"]
    assert all("250 2.0.0" in d.reason for d in sent)
    stored = rows()
    assert sorted(r.account_id for r in stored) == sorted(desk_accounts.values())
    assert all(r.envelope_from == "carol@example.org" and r.source == "lmtp" for r in stored)
    # Stored for each account, acted on once per desk (issue 10, item 11): one call.
    assert wait_for(lambda: db.session.scalar(sa.select(sa.func.count()).select_from(Call)) == 1)
    assert wait_for(lambda: sorted(r.status.value for r in rows()) == ["ignored", "processed"])


def test_unknown_recipient_bounces_at_postfix(app, desk_accounts, receiver, postfix):
    receiver(port=postfix.lmtp_port)
    queued = postfix.send("carol@example.org", "nobody@desk.test", make_mail(to="nobody@desk.test"))
    [bounced] = wait_outcomes(postfix, {queued}, 1, "bounced")
    assert "550 5.1.1" in bounced.reason
    assert rows() == []


def test_receiver_down_postfix_defers_then_every_message_arrives_once(app, desk_accounts, receiver, postfix):
    port = postfix.lmtp_port
    receiver(port=port).stop()
    queued = {postfix.send("carol@example.org", "help@desk.test", make_mail(subject=f"Log call: outage {i}"))
              for i in range(3)}
    deferred = wait_outcomes(postfix, queued, 3, "deferred")
    assert all("Connection refused" in d.reason for d in deferred)
    assert rows() == []
    receiver(port=port)  # started again on the same port
    postfix.flush()
    wait_outcomes(postfix, queued, 3, "sent")
    assert [r.deliveries for r in rows()] == [1, 1, 1]
    assert wait_for(lambda: sorted(db.session.scalars(sa.select(Call.summary))) == [f"outage {i}" for i in range(3)])


def test_storage_failure_makes_postfix_keep_the_mail_until_it_can_be_stored(app, desk_accounts, receiver, postfix):
    receiver(port=postfix.lmtp_port)
    with storage_fails():
        queued = postfix.send("carol@example.org", "help@desk.test", make_mail())
        [deferred] = wait_outcomes(postfix, {queued}, 1, "deferred")
    assert "451 4.3.0" in deferred.reason
    assert rows() == []
    postfix.flush()
    wait_outcomes(postfix, {queued}, 1, "sent")
    [row] = rows()
    assert row.deliveries == 1
