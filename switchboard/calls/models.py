"""Call and Priority."""

import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from switchboard.db import UTCDateTime, db, utcnow


class CallStatus(enum.Enum):
    OPEN = "open"
    PENDING = "pending"  # waiting on the customer or a third party: the SLA clock stops
    RESOLVED = "resolved"  # shown as "Open/Resolved": fixed, awaiting closure
    CLOSED = "closed"

    @property
    def label(self) -> str:
        return {"open": "Open", "pending": "Pending", "resolved": "Open/Resolved", "closed": "Closed"}[
            self.value
        ]


# Shipped names; admins rename them in settings, the numbers stay.
DEFAULT_PRIORITIES = [(1, "P1 Critical"), (2, "P2 High"), (3, "P3 Medium"), (4, "P4 Low")]
DEFAULT_PRIORITY_ID = 3


class Priority(db.Model):
    __tablename__ = "priority"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(60))


class Call(db.Model):
    __tablename__ = "call"
    __table_args__ = (
        sa.Index("ix_call_status_group", "status", "assigned_group_id"),
        # The call list's order (newest update first; its keyset pages walk this index) and
        # an analyst's own calls in My work's order (most urgent, then waiting longest).
        sa.Index("ix_call_list_order", "updated_at", "id"),
        # Both of an analyst's calls: calls nobody has are not in them (migration 0015), or
        # SQLite (no statistics of how many are NULL) walked the 10,000 of a queue here.
        sa.Index("ix_call_analyst_work", "assigned_analyst_id", "priority_id", "logged_at", "id",
                 sqlite_where=sa.text("assigned_analyst_id IS NOT NULL"),
                 postgresql_where=sa.text("assigned_analyst_id IS NOT NULL")),
        # The call list's "mine" (and My work's count of my calls): an analyst's calls of a
        # status in list order, so a page of them is a walk and a count the index alone.
        sa.Index("ix_call_analyst_list_order", "assigned_analyst_id", "status", "updated_at", "id",
                 sqlite_where=sa.text("assigned_analyst_id IS NOT NULL"),
                 postgresql_where=sa.text("assigned_analyst_id IS NOT NULL")),
        # A group's queue in My work (nobody's calls of my groups still to do): counted from
        # the index alone.
        sa.Index("ix_call_group_queue", "assigned_group_id", "assigned_analyst_id", "status"),
    )
    # Service level (switchboard.slm): its clock runs while the call is open, from
    # sla_clock_started_at, on top of sla_used_seconds of business time used before (so a
    # pending spell stops it and the business time left resumes). next_due_at, the instant
    # of the earliest level not yet fired, is what the sweep's index range finds.

    id: Mapped[int] = mapped_column(primary_key=True)
    summary: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    priority_id: Mapped[int] = mapped_column(sa.ForeignKey("priority.id"))
    status: Mapped[CallStatus] = mapped_column(
        sa.Enum(CallStatus, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e]),
        default=CallStatus.OPEN,
        index=True,
    )
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("person.id"), index=True)
    logged_by_id: Mapped[int] = mapped_column(sa.ForeignKey("person.id"))
    assigned_analyst_id: Mapped[int | None] = mapped_column(sa.ForeignKey("person.id"))
    assigned_group_id: Mapped[int | None] = mapped_column(sa.ForeignKey("analyst_group.id"))
    source: Mapped[str] = mapped_column(sa.String(20), default="portal")
    logged_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    first_response_at = mapped_column(UTCDateTime)
    resolved_at = mapped_column(UTCDateTime)
    closed_at = mapped_column(UTCDateTime)
    updated_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    sla_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sla.id"))
    sla_clock_started_at = mapped_column(UTCDateTime)  # None: the clock is stopped
    sla_used_seconds: Mapped[int] = mapped_column(default=0, server_default="0")
    response_due_at = mapped_column(UTCDateTime)
    fix_due_at = mapped_column(UTCDateTime)
    next_due_at = mapped_column(UTCDateTime, index=True)
    sla_level: Mapped[int] = mapped_column(sa.SmallInteger, default=0, server_default="0")  # highest escalation fired
    sla_breached: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    priority = relationship("Priority")
    customer = relationship("Person", foreign_keys=[customer_id])
    logged_by = relationship("Person", foreign_keys=[logged_by_id])
    assigned_analyst = relationship("Person", foreign_keys=[assigned_analyst_id])
    assigned_group = relationship("Group")
    sla = relationship("Sla")

    @property
    def ref(self) -> str:
        return f"CALL-{self.id}"

    @property
    def is_closed(self) -> bool:
        return self.status is CallStatus.CLOSED
