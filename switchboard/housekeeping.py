"""Housekeeping: drops the raw bytes of old inbound mail and old sent outbox
rows past their retention, never those of open calls, requests or tasks,
never younger than a minimum, in bounded batches (one transaction each).

An inbound message keeps its row when its raw bytes go: what it said (as
read when it was acted on), what it did, and its fingerprint, so a copy that
arrives late is still known and not acted on again."""

import contextlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from switchboard.blobs import Blob
from switchboard.calls.models import Call, CallStatus
from switchboard.db import db, utcnow
from switchboard.history.models import Attachment
from switchboard.inbound.models import InboundMessage, InboundStatus
from switchboard.outbox.models import OutboxMessage, OutboxStatus
from switchboard.requests.models import Request, RequestStatus, Task, TaskStatus

log = logging.getLogger(__name__)

# Settings (environment variables, or the app config): name -> default. The README lists them.
DEFAULTS = {
    "HOUSEKEEPING_RAW_MAIL_DAYS": 90,  # raw bytes of inbound mail; 0 keeps them forever
    "HOUSEKEEPING_SENT_MAIL_DAYS": 90,  # sent outbox rows; 0 keeps them forever
    "HOUSEKEEPING_MINIMUM_DAYS": 7,  # a shorter retention above is raised to this
    "HOUSEKEEPING_BATCH": 500,  # rows per transaction
}

# Acted on and done with: a new message is still to be acted on, a failed one waits for an
# admin to reprocess it (which needs its raw bytes).
_PRUNABLE_INBOUND = [InboundStatus.PROCESSED, InboundStatus.IGNORED, InboundStatus.REJECTED]


def setting(name: str) -> int:
    value = current_app.config.get(name)
    if value in (None, ""):
        value = os.environ.get(name)
    if value in (None, ""):
        return DEFAULTS[name]
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must not be negative, not {number}")
    return number


def retention(name: str) -> timedelta | None:
    """The retention a setting asks for, never under the minimum; None: keep forever."""
    days = setting(name)
    if days == 0:
        return None
    minimum = setting("HOUSEKEEPING_MINIMUM_DAYS")
    if days < minimum:
        log.warning("%s=%d is under HOUSEKEEPING_MINIMUM_DAYS: %d days are kept", name, days, minimum)
    return timedelta(days=max(days, minimum))


@dataclass
class Pruned:
    raw_messages: int = 0  # inbound messages whose raw bytes went
    blobs: int = 0  # stored raw files deleted (shared ones stay while anything uses them)
    sent_mails: int = 0  # outbox rows deleted
    batches: int = 0

    def summary(self) -> str:
        return (f"pruned the raw mail of {self.raw_messages} message(s) ({self.blobs} file(s) deleted) "
                f"and {self.sent_mails} sent mail(s) in {self.batches} batch(es)")


def _not_open(call_id, request_id, task_id):
    """No link to a call, request or task that is not closed."""
    return sa.and_(
        ~sa.exists().where(Call.id == call_id, Call.status != CallStatus.CLOSED),
        ~sa.exists().where(Request.id == request_id,
                           Request.status.not_in([RequestStatus.COMPLETED, RequestStatus.REJECTED])),
        ~sa.exists().where(Task.id == task_id,
                           Task.status.in_([TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.AWAITING_DECISION])),
    )


def prune(now: datetime | None = None, *, turn=contextlib.nullcontext) -> Pruned:
    """Prunes everything past its retention, a batch per transaction, until none is left.
    `turn()` is entered around each transaction (the scheduler's write gate: on SQLite its
    batches take turns with storing mail)."""
    now = now or utcnow()
    done = Pruned()
    batch = max(1, setting("HOUSEKEEPING_BATCH"))
    raw_keep = retention("HOUSEKEEPING_RAW_MAIL_DAYS")
    sent_keep = retention("HOUSEKEEPING_SENT_MAIL_DAYS")
    if raw_keep is not None:
        while True:
            with turn():
                messages, blobs = _prune_raw_batch(now - raw_keep, batch)
            done.raw_messages += messages
            done.blobs += blobs
            if not messages:
                break
            done.batches += 1
    if sent_keep is not None:
        while True:
            with turn():
                sent = _prune_sent_batch(now - sent_keep, batch)
            done.sent_mails += sent
            if not sent:
                break
            done.batches += 1
    return done


def _prune_raw_batch(cutoff: datetime, batch: int) -> tuple[int, int]:
    m = InboundMessage
    try:
        rows = db.session.execute(
            sa.select(m.id, m.raw_sha256)
            .where(m.raw_sha256.is_not(None), m.received_at < cutoff, m.status.in_(_PRUNABLE_INBOUND),
                   _not_open(m.call_id, m.request_id, m.task_id))
            .order_by(m.id).limit(batch)
        ).all()
        if not rows:
            db.session.rollback()
            return 0, 0
        ids = [row.id for row in rows]
        shas = sorted({row.raw_sha256 for row in rows})
        db.session.execute(sa.update(m).where(m.id.in_(ids)).values(raw_sha256=None))
        deleted = _delete_unused_blobs(shas)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return len(ids), deleted


def _delete_unused_blobs(shas: list[str]) -> int:
    """Deletes the files no message and no attachment uses any more (the same bytes may
    be another message's raw mail, or a file attached to a call)."""
    unused = sa.and_(
        Blob.sha256.in_(shas),
        ~sa.exists().where(InboundMessage.raw_sha256 == Blob.sha256),
        ~sa.exists().where(Attachment.blob_sha256 == Blob.sha256),
    )
    savepoint = db.session.begin_nested()
    try:
        deleted = db.session.execute(sa.delete(Blob).where(unused)).rowcount
        savepoint.commit()
    except sa.exc.IntegrityError:
        # A message with the same bytes was stored meanwhile: its file stays.
        savepoint.rollback()
        deleted = 0
    return deleted


def _prune_sent_batch(cutoff: datetime, batch: int) -> int:
    o = OutboxMessage
    try:
        ids = db.session.scalars(
            sa.select(o.id)
            .where(o.status == OutboxStatus.SENT, sa.func.coalesce(o.sent_at, o.created_at) < cutoff,
                   _not_open(o.call_id, o.request_id, o.task_id))
            .order_by(o.id).limit(batch)
        ).all()
        if not ids:
            db.session.rollback()
            return 0
        db.session.execute(sa.delete(o).where(o.id.in_(ids)))
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return len(ids)
