"""Finding requests and tasks for lists: an analyst's tasks, the approvals
waiting for a person's word, their groups' queues and the request list's
filters. Each returns a SELECT; nothing here changes a record."""

import re

import sqlalchemy as sa
from sqlalchemy.orm import joinedload, selectinload, with_expression

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

# A task's line shows its request and group: joined into the list's own statement (many-to-one).
TASK_LISTED_WITH = (joinedload(Task.request, innerjoin=True), joinedload(Task.assigned_group))
# A request's line shows its requester and how many tasks it has: both in the list's own
# statement (a join and a counting subquery), not a query each nor every task loaded.
REQUEST_LISTED_WITH = (
    joinedload(Request.requester, innerjoin=True),
    with_expression(
        Request.task_count,
        sa.select(sa.func.count(Task.id)).where(Task.request_id == Request.id).correlate(Request).scalar_subquery(),
    ),
)

# What a request's page shows of the request and its tasks: the request's people in the
# request's statement, its tasks with theirs in one more (not one query per task and person).
REQUEST_SHOWN_WITH = (
    joinedload(Request.requester, innerjoin=True),
    joinedload(Request.owner, innerjoin=True),
    selectinload(Request.tasks).options(
        joinedload(Task.assigned_analyst), joinedload(Task.assigned_group), joinedload(Task.approver)
    ),
)

# The request list's order, newest update first (keyset pages walk ix_service_request_list_order).
LIST_ORDER = (Request.updated_at, Request.id)

# A reference: "REQ-9", "req 9", "#9" (marked: only that request, found by its key alone), or
# a bare "9" (that request, or a title with 9 in it).
_REF = re.compile(r"^\s*(req|#)?[\s#:-]*(\d{1,9})\s*$", re.IGNORECASE)


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
        if match and match.group(1):
            # A marked reference names one request: no title is searched (that reads them all).
            query = query.where(Request.id == int(match.group(2)))
        else:
            condition = Request.title.icontains(text, autoescape=True)
            if match:
                condition = sa.or_(condition, Request.id == int(match.group(2)))
            query = query.where(condition)
    return query.order_by(*(column.desc() for column in LIST_ORDER))
