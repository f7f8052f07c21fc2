"""Request and Task. Tasks run in stages: every task of the lowest unfinished
stage is active; when all of them are done or approved, the next stage starts."""

import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, query_expression, relationship

from switchboard.db import UTCDateTime, db, utcnow


def _enum(cls):
    return sa.Enum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class RequestStatus(enum.Enum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    REJECTED = "rejected"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


class TaskKind(enum.Enum):
    ACTION = "action"
    APPROVAL = "approval"


class TaskStatus(enum.Enum):
    PENDING = "pending"  # waiting for an earlier stage
    IN_PROGRESS = "in_progress"  # an active action task
    DONE = "done"
    AWAITING_DECISION = "awaiting_decision"  # an active approval task
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"  # the request was rejected before this task's stage

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()

    @property
    def finished(self) -> bool:
        return self in FINISHED_TASK

    @property
    def active(self) -> bool:
        return self in (TaskStatus.IN_PROGRESS, TaskStatus.AWAITING_DECISION)


FINISHED_TASK = {TaskStatus.DONE, TaskStatus.APPROVED, TaskStatus.REJECTED, TaskStatus.CANCELLED}


class Request(db.Model):
    __tablename__ = "service_request"
    # The request list's order (newest update first).
    __table_args__ = (sa.Index("ix_service_request_list_order", "updated_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[RequestStatus] = mapped_column(_enum(RequestStatus), default=RequestStatus.OPEN, index=True)
    requester_id: Mapped[int] = mapped_column(sa.ForeignKey("person.id"), index=True)
    # The analyst who owns the request and hears of every decision (indexed for the list's "mine").
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("person.id"), index=True)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    completed_at = mapped_column(UTCDateTime)

    requester = relationship("Person", foreign_keys=[requester_id])
    owner = relationship("Person", foreign_keys=[owner_id])
    tasks = relationship("Task", back_populates="request", order_by="(Task.stage, Task.id)")
    # How many tasks it has, when the query asked for it (queries.REQUEST_LISTED_WITH): a list
    # line shows the number without loading the tasks.
    task_count: Mapped[int | None] = query_expression()

    @property
    def ref(self) -> str:
        return f"REQ-{self.id}"


class Task(db.Model):
    __tablename__ = "task"
    __table_args__ = (
        sa.CheckConstraint("kind <> 'approval' OR approver_id IS NOT NULL", name="approval_has_approver"),
        # A group's queue of tasks nobody has picked up (My work; queries.group_queue_tasks).
        sa.Index("ix_task_group_queue", "assigned_group_id", "assigned_analyst_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(sa.ForeignKey("service_request.id", ondelete="CASCADE"), index=True)
    stage: Mapped[int] = mapped_column(default=1)
    kind: Mapped[TaskKind] = mapped_column(_enum(TaskKind))
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[TaskStatus] = mapped_column(_enum(TaskStatus), default=TaskStatus.PENDING, index=True)
    assigned_analyst_id: Mapped[int | None] = mapped_column(sa.ForeignKey("person.id"), index=True)
    assigned_group_id: Mapped[int | None] = mapped_column(sa.ForeignKey("analyst_group.id"))
    approver_id: Mapped[int | None] = mapped_column(sa.ForeignKey("person.id"), index=True)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    started_at = mapped_column(UTCDateTime)
    finished_at = mapped_column(UTCDateTime)
    decided_at = mapped_column(UTCDateTime)
    decision_reason: Mapped[str | None] = mapped_column(sa.Text)

    request = relationship("Request", back_populates="tasks")
    assigned_analyst = relationship("Person", foreign_keys=[assigned_analyst_id])
    assigned_group = relationship("Group")
    approver = relationship("Person", foreign_keys=[approver_id])

    @property
    def ref(self) -> str:
        return f"TASK-{self.id}"
