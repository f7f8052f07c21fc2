"""Acting on stored messages, one savepoint each, so one bad message never
stops the ones after it and a failure leaves the stored message intact,
marked failed with its traceback for an admin to reprocess.

Claiming is one statement (`UPDATE ... WHERE id IN (SELECT ... [FOR UPDATE
SKIP LOCKED]) RETURNING`), so the receiver's own processing and a sweep by
the scheduler never act on the same message twice."""

import logging
import traceback
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from switchboard.blobs import store as blob_store
from switchboard.calls.models import Priority
from switchboard.db import db, utcnow
from switchboard.inbound.act import act
from switchboard.inbound.models import InboundMessage, InboundStatus
from switchboard.inbound.parse import parse_message
from switchboard.inbound.replies import queue_rejection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    inbound_id: int
    status: str
    outcome: str


def _claim(ids: list[int] | None, limit: int, statuses) -> list[int]:
    inner = sa.select(InboundMessage.id).where(InboundMessage.status.in_(statuses))
    if ids is not None:
        inner = inner.where(InboundMessage.id.in_(ids))
    inner = inner.order_by(InboundMessage.id).limit(limit)
    if db.session.get_bind().dialect.name == "postgresql":
        inner = inner.with_for_update(skip_locked=True)
    # On SQLite this UPDATE takes the write lock at once, so a second
    # processor waits instead of reading the same rows.
    claimed = db.session.execute(
        sa.update(InboundMessage)
        .where(InboundMessage.id.in_(inner.scalar_subquery()))
        .values(attempts=InboundMessage.attempts + 1)
        .returning(InboundMessage.id)
    ).scalars().all()
    return sorted(claimed)


def process_batch(ids: list[int] | None = None, *, limit: int = 50, reprocess: bool = False) -> list[Result]:
    """Acts on up to `limit` new messages (or the given ones) in the current
    transaction; the caller commits. `reprocess` also takes failed ones."""
    statuses = [InboundStatus.NEW] + ([InboundStatus.FAILED] if reprocess else [])
    results = []
    claimed = _claim(ids, limit, statuses)
    if claimed:
        # One SELECT for the batch; each _process_one then finds its row in the session.
        # The priorities too, so each new call's get_priority is an identity-map hit.
        held = db.session.scalars(  # held, so the session keeps them for the batch
            sa.select(InboundMessage).where(InboundMessage.id.in_(claimed)).execution_options(populate_existing=True)
        ).all() + db.session.scalars(sa.select(Priority)).all()
    for inbound_id in claimed:
        results.append(_process_one(inbound_id))
    return results


def process_pending(*, batch: int = 50, max_messages: int | None = None) -> list[Result]:
    """Works through every new message, committing per batch."""
    results: list[Result] = []
    while max_messages is None or len(results) < max_messages:
        size = batch if max_messages is None else min(batch, max_messages - len(results))
        done = process_batch(limit=size)
        db.session.commit()
        if not done:
            break
        results.extend(done)
    return results


def _process_one(inbound_id: int) -> Result:
    inbound = db.session.get(InboundMessage, inbound_id)
    savepoint = db.session.begin_nested()
    try:
        raw = blob_store.get(inbound.raw_sha256)
        msg = parse_message(raw, current_app.config.get("MAX_ATTACHMENT_BYTES", 25 * 1024 * 1024))
        outcome = act(inbound, msg)
        text = outcome.text
        if outcome.reply_needed:
            text += f" ({queue_rejection(inbound, msg.from_address, outcome.text, msg.subject)})"
        savepoint.commit()
    except Exception:
        savepoint.rollback()
        inbound = db.session.get(InboundMessage, inbound_id)
        inbound.status = InboundStatus.FAILED
        inbound.outcome = "Failed while acting on the message; an admin can reprocess it."
        inbound.error = traceback.format_exc()[-20000:]
        inbound.processed_at = utcnow()
        log.exception("inbound message %s failed", inbound_id)
        return Result(inbound_id, "failed", inbound.outcome)
    inbound.status = outcome.status
    inbound.outcome = text[:4000]
    inbound.error = None
    inbound.processed_at = utcnow()
    record = outcome.record
    if record is not None:
        column = {"call": "call_id", "service_request": "request_id", "task": "task_id"}[record.__tablename__]
        setattr(inbound, column, record.id)
    return Result(inbound_id, outcome.status.value, inbound.outcome)
