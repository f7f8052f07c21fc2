"""Housekeeping: what goes (raw mail and sent mail past their retention, of
closed records) and what stays (anything of an open call, anything younger
than the retention or the minimum, new and failed mail, files still used)."""

from datetime import timedelta
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from switchboard.blobs import Blob
from switchboard.calls.services import close_call, log_call
from switchboard.db import db, utcnow
from switchboard.housekeeping import prune
from switchboard.inbound.models import InboundMessage, InboundStatus
from switchboard.inbound.store import store_message
from switchboard.outbox.models import OutboxMessage, OutboxStatus

_numbers = iter(range(1, 1_000_000))


@pytest.fixture
def retention(app, monkeypatch):
    """Sets housekeeping settings for one test (the app, and so its config, is shared)."""

    def set_(**values):
        for name, value in values.items():
            monkeypatch.setitem(app.config, f"HOUSEKEEPING_{name}", value)

    set_(RAW_MAIL_DAYS=30, SENT_MAIL_DAYS=30, MINIMUM_DAYS=7, BATCH=500)
    return set_


def _inbound(days_old: float, *, status=InboundStatus.PROCESSED, call=None) -> InboundMessage:
    msg = EmailMessage()
    number = next(_numbers)
    msg["From"] = "carol@example.org"
    msg["Subject"] = f"Message {number}"
    msg.set_content(f"Body {number}")
    stored = store_message(msg.as_bytes(), source="pipe")
    row = db.session.get(InboundMessage, stored.inbound_id)
    row.status = status
    row.call_id = call.id if call is not None else None
    row.received_at = utcnow() - timedelta(days=days_old)
    db.session.commit()
    return row


def _sent(days_old: float, *, status=OutboxStatus.SENT, call=None) -> OutboxMessage:
    number = next(_numbers)
    when = utcnow() - timedelta(days=days_old)
    row = OutboxMessage(message_type=1, status=status, to=["carol@example.org"], subject=f"Mail {number}",
                        message_id=f"<housekeeping-{number}@desk.test>", call_id=call.id if call else None,
                        created_at=when, next_attempt_at=when, sent_at=when if status is OutboxStatus.SENT else None)
    db.session.add(row)
    db.session.commit()
    return row


def _blob_exists(sha: str) -> bool:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Blob).where(Blob.sha256 == sha)) == 1


def test_housekeeping_prunes_old_mail_of_closed_records_and_keeps_open_young_new_failed_and_shared(
        app, people, retention):
    anna, carol = people["anna"], people["carol"]
    open_call = log_call(anna, "Still open", customer=carol)
    closed_call = log_call(anna, "Done with", customer=carol)
    close_call(closed_call, anna)
    db.session.commit()

    goes = _inbound(40, call=closed_call)
    goes_no_call = _inbound(40, status=InboundStatus.REJECTED)
    goes_sha, goes_no_call_sha = goes.raw_sha256, goes_no_call.raw_sha256
    kept = {
        "open call": _inbound(40, call=open_call),
        "young": _inbound(20, call=closed_call),
        "new (not acted on yet)": _inbound(40, status=InboundStatus.NEW),
        "failed (waits for an admin)": _inbound(40, status=InboundStatus.FAILED),
    }
    # The same bytes as a pruned message, kept by another that stays: the file stays.
    shares = _inbound(40, call=open_call)
    shares.raw_sha256 = goes_no_call_sha
    db.session.commit()
    kept_shas = {name: row.raw_sha256 for name, row in kept.items()}

    sent_goes = [_sent(40, call=closed_call), _sent(40)]
    sent_kept = {
        "open call": _sent(40, call=open_call),
        "young": _sent(20, call=closed_call),
        "queued": _sent(40, status=OutboxStatus.QUEUED),
        "failed": _sent(40, status=OutboxStatus.FAILED),
        "deferred": _sent(40, status=OutboxStatus.DEFERRED),
    }
    sent_goes_ids = [row.id for row in sent_goes]
    sent_kept_ids = {name: row.id for name, row in sent_kept.items()}

    done = prune()
    db.session.expire_all()

    assert (done.raw_messages, done.sent_mails) == (2, 2)
    # The rows stay (what was said and done, the fingerprint); their raw bytes go.
    assert db.session.get(InboundMessage, goes.id).raw_sha256 is None
    assert db.session.get(InboundMessage, goes.id).subject.startswith("Message")
    assert not _blob_exists(goes_sha)
    assert db.session.get(InboundMessage, goes_no_call.id).raw_sha256 is None
    assert _blob_exists(goes_no_call_sha), "a file another message still uses was deleted"
    for name, row in kept.items():
        assert db.session.get(InboundMessage, row.id).raw_sha256 == kept_shas[name], name
        assert _blob_exists(kept_shas[name]), name
    assert db.session.scalars(sa.select(OutboxMessage.id).where(OutboxMessage.id.in_(sent_goes_ids))).all() == []
    for name, outbox_id in sent_kept_ids.items():
        assert db.session.get(OutboxMessage, outbox_id) is not None, name

    again = prune()
    assert (again.raw_messages, again.sent_mails, again.batches) == (0, 0, 0)


def test_housekeeping_never_prunes_before_the_minimum_and_zero_keeps_forever(app, people, retention):
    anna, carol = people["anna"], people["carol"]
    call = log_call(anna, "Closed", customer=carol)
    close_call(call, anna)
    db.session.commit()
    # Asked for 1 day, but the minimum is 7: a 3-day-old message stays, an 8-day-old one goes.
    retention(RAW_MAIL_DAYS=1, SENT_MAIL_DAYS=1, MINIMUM_DAYS=7)
    three, eight = _inbound(3, call=call), _inbound(8, call=call)
    sent_three, sent_eight = _sent(3, call=call), _sent(8, call=call)
    sent_three_id, sent_eight_id = sent_three.id, sent_eight.id
    done = prune()
    db.session.expire_all()
    assert (done.raw_messages, done.sent_mails) == (1, 1)
    assert db.session.get(InboundMessage, three.id).raw_sha256 is not None
    assert db.session.get(InboundMessage, eight.id).raw_sha256 is None
    assert db.session.get(OutboxMessage, sent_three_id) is not None
    assert db.session.get(OutboxMessage, sent_eight_id) is None

    # 0: keep forever.
    retention(RAW_MAIL_DAYS=0, SENT_MAIL_DAYS=0)
    old, sent_old = _inbound(4000, call=call), _sent(4000, call=call)
    sent_old_id = sent_old.id
    assert prune().batches == 0
    db.session.expire_all()
    assert db.session.get(InboundMessage, old.id).raw_sha256 is not None
    assert db.session.get(OutboxMessage, sent_old_id) is not None


def test_housekeeping_works_in_bounded_batches_one_transaction_each(app, people, retention):
    retention(BATCH=2)
    turns = []

    class Turn:
        def __enter__(self):
            turns.append(db.session().in_transaction())

        def __exit__(self, *exc):
            # Each batch ended its transaction (committed) before giving its turn back.
            assert not db.session().in_transaction()

    for _ in range(5):
        _inbound(40)
        _sent(40)
    done = prune(turn=Turn)
    assert (done.raw_messages, done.sent_mails) == (5, 5)
    assert done.batches == 6  # 2 + 2 + 1, twice
    assert len(turns) == 8  # and one more each that found nothing
    assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundMessage)
                             .where(InboundMessage.raw_sha256.is_not(None))) == 0


def test_housekeeping_refuses_a_bad_setting_and_changes_nothing(app, retention):
    retention(RAW_MAIL_DAYS="ninety")
    row = _inbound(400)
    with pytest.raises(ValueError, match="HOUSEKEEPING_RAW_MAIL_DAYS must be a whole number"):
        prune()
    db.session.expire_all()
    assert db.session.get(InboundMessage, row.id).raw_sha256 is not None
