"""Fixtures and helpers for the tests of the outbox as the desk runs it: a configured
outgoing server pointing at the loopback sink, and shortcuts to queue and send.

Test modules import the fixtures they use from here (`from .desk import desk_server`)."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from switchboard.db import db, utcnow
from switchboard.outbox.models import OutboxMessage, OutboxStatus
from switchboard.outbox.sender import send_all_due
from switchboard.outbox.servers import add_server

DESK = "desk@example.org"


@pytest.fixture
def desk_server(app, smtp_sink):
    """The sink, configured as the desk's only outgoing server."""
    add_server("sink", smtp_sink.host, port=smtp_sink.port, security="none", from_address=DESK,
               from_name="Acme Service Desk", timeout_seconds=5)
    db.session.commit()
    return smtp_sink


def send(**kwargs):
    """Send everything due now, as the scheduler's job would."""
    return send_all_due(**kwargs)


def rows(**where) -> list[OutboxMessage]:
    query = sa.select(OutboxMessage).order_by(OutboxMessage.id)
    for name, value in where.items():
        query = query.where(getattr(OutboxMessage, name) == value)
    db.session.expire_all()
    return list(db.session.scalars(query))


def row(row_id: int) -> OutboxMessage:
    db.session.expire_all()
    return db.session.get(OutboxMessage, row_id)


def make_due(row_id: int) -> None:
    """Move a deferred row's next attempt into the past (instead of waiting minutes)."""
    db.session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == row_id)
                       .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def statuses() -> list[str]:
    return [r.status.value for r in rows()]


def by_recipient(sink) -> dict:
    """Received messages by their first envelope recipient."""
    return {m.rcpt_tos[0]: m.message for m in sink.messages}


SENT, DEFERRED, FAILED = OutboxStatus.SENT, OutboxStatus.DEFERRED, OutboxStatus.FAILED
