"""Putting mail in the outbox. Every outgoing mail is a row written in the
caller's transaction, so it exists exactly when the change that caused it
does; the sender job does the SMTP part later."""

import os
import weakref

import sqlalchemy as sa
from flask import current_app

from switchboard.db import db, flush, transaction_cache, utcnow
from switchboard.outbox.compose import new_message_id, new_reply_token
from switchboard.outbox.models import OutboxMessage, OutboxStatus


def mail_domain() -> str:
    """The right-hand side of our Message-IDs."""
    configured = current_app.config.get("MAIL_DOMAIN") or os.environ.get("MAIL_DOMAIN")
    return configured or "switchboard.local"


def _record_columns(record) -> dict:
    if record is None:
        return {}
    column = {"call": "call_id", "service_request": "request_id", "task": "task_id"}[record.__tablename__]
    return {column: record.id}


def mark_new_record(record) -> None:
    """Says `record` was created in the current transaction, so it has no mail
    before this transaction's own: its thread parent needs no query."""
    transaction_cache().setdefault("new_records", weakref.WeakKeyDictionary())[record] = None


def _thread_parent(record):
    """The latest mail about the same record: new mail threads under it. Its Message-ID
    and References only (as a row or an OutboxMessage), not the whole row: a mail's
    context and bodies are large and none of them is needed here."""
    new_records = transaction_cache().get("new_records")
    if new_records is not None and record in new_records:
        return new_records[record]
    columns = _record_columns(record)
    if not columns:
        return None
    (name, value), = columns.items()
    return db.session.execute(
        sa.select(OutboxMessage.message_id, OutboxMessage.references)
        .where(getattr(OutboxMessage, name) == value)
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).first()


def queue_mail(
    message_type: int,
    to: list[str],
    *,
    cc: list[str] | None = None,
    record=None,
    recipient_person=None,
    template_key: str | None = None,
    context: dict | None = None,
    subject: str | None = None,
    text: str | None = None,
    html: str | None = None,
    attachments: list[dict] | None = None,
    automatic: bool = True,
    with_token: bool = True,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    inbound=None,
) -> OutboxMessage:
    """Queues one mail. Either `template_key` + `context` (rendered when sent)
    or `subject` + `text` written out. Threads under the record's last mail
    unless `in_reply_to` names what it answers."""
    to = [a for a in dict.fromkeys(a.strip().lower() for a in to if a and a.strip())]
    if not to:
        raise ValueError("a mail needs a recipient")
    if template_key is None and (subject is None or text is None):
        raise ValueError("give a template or a subject and text")
    if in_reply_to is None and record is not None:
        parent = _thread_parent(record)
        if parent is not None:
            in_reply_to = parent.message_id
            references = list(parent.references or []) + [parent.message_id]
    row = OutboxMessage(
        message_type=int(message_type),
        status=OutboxStatus.QUEUED,
        to=to,
        cc=cc or None,
        template_key=template_key,
        context=context,
        subject=subject,
        text_body=text,
        html_body=html,
        attachments=attachments or None,
        automatic=automatic,
        message_id=new_message_id(mail_domain()),
        in_reply_to=in_reply_to,
        references=(references or [])[-20:] or None,
        reply_token=new_reply_token() if with_token else None,
        recipient_person=recipient_person,
        inbound_id=inbound.id if inbound is not None else None,
        next_attempt_at=utcnow(),
        created_at=utcnow(),
        attempts=0,
        **_record_columns(record),
    )
    db.session.add(row)
    flush()
    if record is not None:
        new_records = transaction_cache().get("new_records")
        if new_records is not None and record in new_records:
            new_records[record] = row
    return row


def find_by_token(token: str) -> OutboxMessage | None:
    return db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.reply_token == token))


def find_by_message_ids(ids) -> OutboxMessage | None:
    """The newest of our mails whose Message-ID is among `ids` (bare or <bracketed>)."""
    wanted = {f"<{i.strip('<>')}>" for i in ids if i}
    if not wanted:
        return None
    return db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.message_id.in_(wanted)).order_by(OutboxMessage.id.desc()).limit(1)
    ).first()
