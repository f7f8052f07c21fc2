"""Writing to a timeline. Every service that changes a record calls `record`."""

from dataclasses import dataclass

from switchboard.blobs import store
from switchboard.db import db, flush as flush_writes
from switchboard.history.models import Attachment, EntryKind, HistoryEntry


@dataclass(frozen=True)
class NewAttachment:
    """A file on its way in (from a form upload or a mail part)."""

    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None


def record(
    owner,
    kind: EntryKind,
    author,
    summary: str = "",
    body: str = "",
    *,
    internal: bool = False,
    details: dict | None = None,
    attachments=(),
    flush: bool = True,
) -> HistoryEntry:
    """Adds an entry to `owner`'s timeline. `flush=False` is for a service that
    flushes itself before it returns (one flush instead of two)."""
    entry = HistoryEntry(
        kind=kind,
        author=author,
        summary=summary[:300],
        body=body or "",
        internal=internal,
        details=details,
    )
    owner_attribute = {"call": "call", "service_request": "request", "task": "task"}[owner.__tablename__]
    setattr(entry, owner_attribute, owner)
    for item in attachments:
        sha = store.put(item.data)
        entry.attachments.append(
            Attachment(
                blob_sha256=sha,
                filename=item.filename[:255] or "attachment",
                content_type=item.content_type[:255] or "application/octet-stream",
                size=len(item.data),
                content_id=item.content_id,
            )
        )
    db.session.add(entry)
    if flush:
        flush_writes()
    return entry


def timeline(owner, *, include_internal: bool = True):
    column = {
        "call": HistoryEntry.call_id,
        "service_request": HistoryEntry.request_id,
        "task": HistoryEntry.task_id,
    }[owner.__tablename__]
    query = db.select(HistoryEntry).where(column == owner.id)
    if not include_internal:
        query = query.where(HistoryEntry.internal.is_(False))
    return db.session.scalars(query.order_by(HistoryEntry.created_at, HistoryEntry.id)).all()
