"""Finding requests and tasks for lists: an analyst's tasks, the approvals
waiting for a person's word, their groups' queues and the request list's
filters. Each returns a SELECT; nothing here changes a record."""

import re

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from switchboard.people.models import group_membership
from switchboard.requests.models import Request, RequestStatus, Task, TaskStatus

ACTIVE_TASK = (TaskStatus.IN_PROGRESS, TaskStatus.AWAITING_DECISION)

STATUS_FILTERS = {
    "active": (RequestStatus.OPEN, RequestStatus.IN_PROGRESS),
    "completed": (RequestStatus.COMPLETED,),
    "rejected": (RequestStatus.REJECTED,),
    "all": tuple(RequestStatus),
}
SCOPES = ("all", "mine")

# What a line in a list shows besides the row itself: one query each for the whole page.
TASK_LISTED_WITH = (selectinload(Task.request), selectinload(Task.assigned_group))
REQUEST_LISTED_WITH = (selectinload(Request.requester), selectinload(Request.tasks))

_REF = re.compile(r"^\s*(?:req)?[\s#:-]*(\d{1,9})\s*$", re.IGNORECASE)


def _group_ids(person):
    return sa.select(group_membership.c.group_id).where(group_membership.c.person_id == person.id)


def assigned_tasks(person) -> sa.Select:
    """Active tasks assigned to this analyst."""
    return (
        sa.select(Task)
        .where(Task.assigned_analyst_id == person.id, Task.status.in_(ACTIVE_TASK))
        .order_by(Task.started_at, Task.id)
    )


def group_queue_tasks(person) -> sa.Select:
    """Active tasks sent to one of this analyst's groups that nobody has picked up."""
    return (
        sa.select(Task)
        .where(
            Task.assigned_group_id.in_(_group_ids(person)),
            Task.assigned_analyst_id.is_(None),
            Task.status.in_(ACTIVE_TASK),
        )
        .order_by(Task.started_at, Task.id)
    )


def awaiting_decision(person) -> sa.Select:
    """Approval tasks waiting for this person's decision."""
    return (
        sa.select(Task)
        .where(Task.approver_id == person.id, Task.status == TaskStatus.AWAITING_DECISION)
        .order_by(Task.started_at, Task.id)
    )


def find_requests(person, *, status: str = "active", scope: str = "all", text: str = "") -> sa.Select:
    """The request list. "mine": requests I own or asked for, or with a task
    assigned to me or waiting for my decision. The text matches the title or
    a reference (9, REQ-9)."""
    query = sa.select(Request).where(
        Request.status.in_(STATUS_FILTERS.get(status, STATUS_FILTERS["active"]))
    )
    if scope == "mine":
        involved = sa.select(Task.request_id).where(
            sa.or_(Task.assigned_analyst_id == person.id, Task.approver_id == person.id)
        )
        query = query.where(
            sa.or_(Request.owner_id == person.id, Request.requester_id == person.id, Request.id.in_(involved))
        )
    text = (text or "").strip()
    if text:
        match = _REF.match(text)
        condition = Request.title.icontains(text, autoescape=True)
        if match:
            condition = sa.or_(condition, Request.id == int(match.group(1)))
        query = query.where(condition)
    return query.order_by(Request.updated_at.desc(), Request.id.desc())
