"""One row per thing that happened to a call, request or task."""

import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from switchboard.db import UTCDateTime, db, utcnow


class EntryKind(enum.Enum):
    LOGGED = "logged"
    NOTE = "note"
    STATUS = "status"
    FORWARD = "forward"
    DECISION = "decision"
    EMAIL_IN = "email_in"
    EMAIL_OUT = "email_out"
    ESCALATION = "escalation"
    CHANGE = "change"


class HistoryEntry(db.Model):
    __tablename__ = "history_entry"
    # Exactly one owner. Three real foreign keys (rather than a type + id
    # pair) so the database itself keeps the timeline consistent.
    __table_args__ = (
        sa.CheckConstraint(
            "(CASE WHEN call_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN request_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN task_id IS NULL THEN 0 ELSE 1 END) = 1",
            name="one_owner",
        ),
        # A timeline is read newest first a page at a time (history.services.timeline_page):
        # each owner's entries in (created_at, id) order, so a page is a short walk of the
        # index from where the last one ended, however long the timeline.
        sa.Index("ix_history_entry_call_timeline", "call_id", "created_at", "id"),
        sa.Index("ix_history_entry_request_timeline", "request_id", "created_at", "id"),
        sa.Index("ix_history_entry_task_timeline", "task_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int | None] = mapped_column(sa.ForeignKey("call.id", ondelete="CASCADE"))
    request_id: Mapped[int | None] = mapped_column(sa.ForeignKey("service_request.id", ondelete="CASCADE"))
    task_id: Mapped[int | None] = mapped_column(sa.ForeignKey("task.id", ondelete="CASCADE"))
    kind: Mapped[EntryKind] = mapped_column(sa.Enum(EntryKind, native_enum=False, length=20))
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("person.id"))
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    # A short line for the timeline ("Status Open -> Resolved") and the text.
    summary: Mapped[str] = mapped_column(sa.String(300), default="")
    body: Mapped[str] = mapped_column(sa.Text, default="")
    # Internal notes are for analysts only; customers never see them.
    internal: Mapped[bool] = mapped_column(default=False)
    # Written by mail whose sender had no proof (switchboard.inbound.trust): the From
    # line may be forged, so the timeline says so.
    sender_unverified: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    details: Mapped[dict | None] = mapped_column(sa.JSON)

    author = relationship("Person")
    # The owners as objects too, so an entry can be added to a call that has no id yet
    # (history.services.record inside batched writes).
    call = relationship("Call")
    request = relationship("Request")
    task = relationship("Task")
    attachments = relationship(
        "Attachment", back_populates="entry", order_by="Attachment.id", cascade="all, delete-orphan"
    )


class Attachment(db.Model):
    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(sa.ForeignKey("history_entry.id", ondelete="CASCADE"), index=True)
    blob_sha256: Mapped[str] = mapped_column(sa.ForeignKey("blob.sha256"), index=True)
    filename: Mapped[str] = mapped_column(sa.String(255))
    content_type: Mapped[str] = mapped_column(sa.String(255), default="application/octet-stream")
    size: Mapped[int]
    # Set for inline images, so an HTML body can refer to them by cid.
    content_id: Mapped[str | None] = mapped_column(sa.String(255))

    entry = relationship("HistoryEntry", back_populates="attachments")
