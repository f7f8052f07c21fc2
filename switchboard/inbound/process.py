"""Acting on stored messages. A batch is acted on together first: its
messages in order, inside batched writes (switchboard.db), so the calls,
timeline entries and notifications of the whole batch are written with a
few statements instead of several per message. Should anything in it fail,
the batch is undone and acted on again one message at a time, each in its
own savepoint, so one bad message never stops the ones after it and a
failure leaves the stored message intact, marked failed with its traceback
for an admin to reprocess.

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
from switchboard.db import batched_writes, db, utcnow
from switchboard.inbound import budget
from switchboard.inbound.act import Outcome, act
from switchboard.inbound.models import InboundMessage, InboundStatus
from switchboard.inbound.parse import ParsedMessage, parse_message, read_headers
from switchboard.inbound.replies import queue_rejection
from switchboard.outbox import limits
from switchboard.people.services import look_up_people

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


def read_and_parse(ids: list[int] | None = None, *, limit: int = 50) -> dict[int, ParsedMessage]:
    """Reads and parses new messages (the given ones, or up to `limit`) without
    writing anything, for process_batch(parsed=...): parsing is a third of the
    work and needs no write lock, so a worker does it before taking one."""
    query = sa.select(InboundMessage.id, InboundMessage.raw_sha256).where(InboundMessage.status == InboundStatus.NEW)
    query = query.where(InboundMessage.id.in_(ids)) if ids is not None else query.order_by(InboundMessage.id).limit(limit)
    rows = db.session.execute(query).all()
    raws = blob_store.get_many(sha for _, sha in rows)
    parsed = {}
    for inbound_id, sha in rows:
        try:
            with budget.spending():
                parsed[inbound_id] = parse_message(raws[sha], _attachment_limit())
        except budget.TooCostly as exc:  # process_batch marks it failed without reading it again
            exc.inbound_id = inbound_id
            parsed[inbound_id] = exc
        except Exception:  # left to process_batch, which keeps the error on the message
            log.warning("reading inbound message %s ahead failed", inbound_id, exc_info=True)
    return parsed


def _attachment_limit() -> int:
    return current_app.config.get("MAX_ATTACHMENT_BYTES", 25 * 1024 * 1024)


def process_batch(ids: list[int] | None = None, *, limit: int = 50, reprocess: bool = False,
                  parsed: dict[int, ParsedMessage] | None = None) -> list[Result]:
    """Acts on up to `limit` new messages (or the given ones) in the current
    transaction; the caller commits. `reprocess` also takes failed ones.
    `parsed` may hold messages read_and_parse has parsed already (or found
    too costly: those are marked failed, never read again here).

    Each message is read, and acted on, within its budget (inbound.budget). One
    over it fails alone: the batch is undone and redone one message at a time,
    the costly one marked failed without being read again."""
    statuses = [InboundStatus.NEW] + ([InboundStatus.FAILED] if reprocess else [])
    claimed = _claim(ids, limit, statuses)
    if not claimed:
        return []
    # One SELECT for the batch, so each message is then found in the session; the
    # priorities too, so each new call's get_priority is an identity-map hit.
    held = db.session.scalars(  # held, so the session keeps them for the batch
        sa.select(InboundMessage).where(InboundMessage.id.in_(claimed)).execution_options(populate_existing=True)
    ).all() + db.session.scalars(sa.select(Priority)).all()
    parsed = dict(parsed or {})
    costly = {i: parsed.pop(i) for i in claimed if isinstance(parsed.get(i), budget.TooCostly)}
    rest = [i for i in claimed if i not in costly]
    savepoint = db.session.begin_nested()
    try:
        together = {r.inbound_id: r for r in _act_together(rest, parsed)} if rest else {}
    except (Exception, budget.TooCostly) as exc:
        savepoint.rollback()
        if isinstance(exc, budget.TooCostly) and exc.inbound_id is not None:
            costly[exc.inbound_id] = exc
        log.info("acting on %d message(s) together failed; acting on each alone", len(rest), exc_info=True)
        together = None
    else:
        savepoint.commit()
    return [_too_costly(i, costly[i]) if i in costly else together[i] if together is not None else _process_one(i)
            for i in claimed]


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


def _act_together(claimed: list[int], ready: dict[int, ParsedMessage]) -> list[Result]:
    messages = [db.session.get(InboundMessage, inbound_id) for inbound_id in claimed]
    raws = blob_store.get_many(m.raw_sha256 for m in messages if m.id not in ready)
    parsed = [ready.get(m.id) or _read(m.id, raws[m.raw_sha256]) for m in messages]
    look_up_people(msg.from_address for msg in parsed if msg.from_address)
    done = []
    with batched_writes():
        for inbound, msg in zip(messages, parsed):
            _keep_reading(inbound, msg)
            answering = limits.start(inbound, msg)  # who may be answered, and how often
            try:
                with budget.spending():
                    outcome = act(inbound, msg)
            except budget.TooCostly as exc:
                exc.inbound_id = inbound.id
                raise
            limits.acted(answering, outcome.record)
            reply = queue_rejection(inbound, answering, outcome.describe(), msg.subject) if outcome.reply_needed else None
            done.append((inbound, outcome, reply, answering))
    # Written now: the new records have their ids (and the acknowledgements' fate is known).
    return [_settle(inbound, outcome, answering.outcome_note(reply)) for inbound, outcome, reply, answering in done]


def _process_one(inbound_id: int) -> Result:
    inbound = db.session.get(InboundMessage, inbound_id)
    savepoint = db.session.begin_nested()
    try:
        raw = blob_store.get(inbound.raw_sha256)
        msg = _read(inbound_id, raw)
        _keep_reading(inbound, msg)
        answering = limits.start(inbound, msg)
        with budget.spending():
            outcome = act(inbound, msg)
        limits.acted(answering, outcome.record)
        reply = queue_rejection(inbound, answering, outcome.describe(), msg.subject) if outcome.reply_needed else None
        result = _settle(inbound, outcome, answering.outcome_note(reply))
        savepoint.commit()
    except budget.TooCostly as exc:
        savepoint.rollback()
        return _too_costly(inbound_id, exc)
    except Exception:
        savepoint.rollback()
        inbound = db.session.get(InboundMessage, inbound_id)
        inbound.status = InboundStatus.FAILED
        inbound.outcome = "Failed while acting on the message; an admin can reprocess it."
        inbound.error = traceback.format_exc()[-20000:]
        inbound.processed_at = utcnow()
        log.exception("inbound message %s failed", inbound_id)
        return Result(inbound_id, "failed", inbound.outcome)
    return result


def _read(inbound_id: int, raw: bytes) -> ParsedMessage:
    try:
        with budget.spending():
            return parse_message(raw, _attachment_limit())
    except budget.TooCostly as exc:
        exc.inbound_id = inbound_id
        raise


def _keep_reading(inbound: InboundMessage, msg: ParsedMessage) -> None:
    """Keeps what the admin's pages show of the message, so they never parse it again."""
    inbound.warnings = list(msg.warnings)
    if msg.from_address:  # the parser's reading; storing took a quick guess from the raw header
        inbound.from_address = msg.from_address[:320]
    inbound.from_name = (msg.from_name or "")[:300] or None
    inbound.parsed_headers = [[name, value] for name, value in msg.headers]
    inbound.parsed_text = msg.text
    inbound.parsed_html = msg.html
    inbound.parsed_attachments = [
        {"filename": a.filename, "content_type": a.content_type, "size": a.size, "inline": a.inline}
        for a in msg.attachments]


def _too_costly(inbound_id: int, exc: budget.TooCostly) -> Result:
    """Marks a message over its budget failed, unread beyond its headers, for an admin."""
    inbound = db.session.get(InboundMessage, inbound_id)
    inbound.status = InboundStatus.FAILED
    inbound.outcome = f"Failed: {exc} (an admin can reprocess it)."
    inbound.error = str(exc)
    inbound.processed_at = utcnow()
    inbound.warnings = [str(exc)]
    inbound.parsed_headers = [[name, value] for name, value in read_headers(blob_store.get(inbound.raw_sha256))]
    inbound.parsed_text = inbound.parsed_html = None
    inbound.parsed_attachments = []
    log.warning("inbound message %s: %s", inbound_id, exc)
    return Result(inbound_id, "failed", inbound.outcome)


def _settle(inbound: InboundMessage, outcome: Outcome, reply: str | None) -> Result:
    """Keeps the outcome on the message."""
    text = outcome.describe()
    if reply is not None:
        text += f" ({reply})"
    inbound.status = outcome.status
    inbound.outcome = text[:4000]
    inbound.error = None
    inbound.processed_at = utcnow()
    record = outcome.record
    if record is not None:
        column = {"call": "call_id", "service_request": "request_id", "task": "task_id"}[record.__tablename__]
        setattr(inbound, column, record.id)
    return Result(inbound.id, outcome.status.value, inbound.outcome)
