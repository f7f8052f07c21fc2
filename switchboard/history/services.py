"""Writing to a timeline. Every service that changes a record calls `record`."""

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from switchboard.blobs import store
from switchboard.db import after_in_order, db, flush as flush_writes
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
        # Set even when empty: the entry's list of files is then known, not read back
        # with a SELECT when a notification counts them after the flush.
        attachments=[],
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


# An entry's author and files come with it: one query each for the whole page, not one
# per entry (the template shows both for every entry).
_SHOWN_WITH = (selectinload(HistoryEntry.author), selectinload(HistoryEntry.attachments))


def _entries_of(owner, include_internal: bool) -> sa.Select:
    column = {
        "call": HistoryEntry.call_id,
        "service_request": HistoryEntry.request_id,
        "task": HistoryEntry.task_id,
    }[owner.__tablename__]
    query = sa.select(HistoryEntry).where(column == owner.id).options(*_SHOWN_WITH)
    if not include_internal:
        query = query.where(HistoryEntry.internal.is_(False))
    return query


def timeline(owner, *, include_internal: bool = True):
    """The whole timeline, oldest first (for records whose timelines stay short)."""
    query = _entries_of(owner, include_internal)
    return db.session.scalars(query.order_by(HistoryEntry.created_at, HistoryEntry.id)).all()


@dataclass(frozen=True)
class TimelinePage:
    """Some of a timeline, newest first, and where the next older page starts
    (the (created_at, id) of its last entry), or None when this is the oldest."""

    entries: list
    older: tuple[datetime, int] | None


def timeline_page(owner, *, before: tuple[datetime, int] | None = None, size: int = 50,
                  include_internal: bool = True) -> TimelinePage:
    """`size` entries of the timeline, newest first, starting just older than `before`
    (a (created_at, id) position as TimelinePage.older gives). Reads only what it shows
    (the (owner, created_at, id) index walks backwards from `before`), so a call with
    thousands of entries costs what a call with fifty does."""
    query = _entries_of(owner, include_internal)
    if before is not None:
        query = query.where(after_in_order((HistoryEntry.created_at, HistoryEntry.id), before))
    rows = db.session.scalars(
        query.order_by(HistoryEntry.created_at.desc(), HistoryEntry.id.desc()).limit(size + 1)
    ).all()
    shown = rows[:size]
    older = (shown[-1].created_at, shown[-1].id) if len(rows) > size else None
    return TimelinePage(shown, older)
