"""Finding calls for lists: an analyst's own work, their groups' queues and
the call list's filters. Each returns a SELECT, so a caller can count it,
page it or add to it; nothing here changes a call."""

import re

import sqlalchemy as sa
from sqlalchemy.orm import defer, joinedload

from switchboard.calls.models import Call, CallStatus
from switchboard.people.models import group_membership

# Work still to do. A resolved call waits on the customer, not the analyst.
WORKING_STATUSES = (CallStatus.OPEN, CallStatus.PENDING)

# The call list's status filter: a word people use -> the statuses it means.
STATUS_FILTERS = {
    "active": (CallStatus.OPEN, CallStatus.PENDING, CallStatus.RESOLVED),
    "open": (CallStatus.OPEN,),
    "pending": (CallStatus.PENDING,),
    "resolved": (CallStatus.RESOLVED,),
    "closed": (CallStatus.CLOSED,),
    "all": tuple(CallStatus),
}
SCOPES = ("all", "mine", "groups")

# The call list's order, newest update first (find_calls; keyset pages walk ix_call_list_order).
LIST_ORDER = (Call.updated_at, Call.id)

# What a call's line in a list shows besides the call, joined into the list's own statement
# (many-to-one, so still one row a call; the list's ORDER BY ... LIMIT still walks its index:
# tests/db/test_list_indexes.py). A query per relation was 4 more statements a page and
# twice the CPU. Customer and priority are never empty: inner joins.
LISTED_WITH = (
    joinedload(Call.customer, innerjoin=True),
    joinedload(Call.assigned_analyst),
    joinedload(Call.assigned_group),
    joinedload(Call.priority, innerjoin=True),
    # No line shows the description, and a call logged by mail has the mail's text there:
    # not read for 50 lines a page.
    defer(Call.description),
)

# A reference: "CALL-42", "call 42", "#42" (marked: only that call), or a bare "42" (that
# call, or a summary with 42 in it).
_REF = re.compile(r"^\s*(call|#)?[\s#:-]*(\d{1,9})\s*$", re.IGNORECASE)


def _group_ids(person):
    return sa.select(group_membership.c.group_id).where(group_membership.c.person_id == person.id)


def _work_order(query):
    # Most urgent first, then the one waiting longest.
    return query.order_by(Call.priority_id, Call.logged_at, Call.id)


def assigned_calls(person) -> sa.Select:
    """Calls assigned to this analyst that still need work."""
    return _work_order(
        sa.select(Call).where(Call.assigned_analyst_id == person.id, Call.status.in_(WORKING_STATUSES))
    )


def group_queue_calls(person) -> sa.Select:
    """Calls sent to one of this analyst's groups that nobody has picked up."""
    return _work_order(
        sa.select(Call).where(
            Call.assigned_group_id.in_(_group_ids(person)),
            Call.assigned_analyst_id.is_(None),
            Call.status.in_(WORKING_STATUSES),
        )
    )


def find_calls(person, *, status: str = "active", scope: str = "all", text: str = "") -> sa.Select:
    """The call list: a status word from STATUS_FILTERS, a scope from SCOPES
    ("mine": assigned to me; "groups": assigned to one of my groups), and a
    text that matches the summary or a reference (42; CALL-42 alone). Unknown
    words fall back to the defaults rather than failing."""
    query = sa.select(Call).where(Call.status.in_(STATUS_FILTERS.get(status, STATUS_FILTERS["active"])))
    if scope == "mine":
        query = query.where(Call.assigned_analyst_id == person.id)
    elif scope == "groups":
        query = query.where(Call.assigned_group_id.in_(_group_ids(person)))
    text = (text or "").strip()
    if text:
        match = _REF.match(text)
        if match and match.group(1):
            # By its primary key alone: a marked reference names one call, so no summary
            # is searched (that would read every call).
            query = query.where(Call.id == int(match.group(2)))
        else:
            condition = Call.summary.icontains(text, autoescape=True)
            if match:
                condition = sa.or_(condition, Call.id == int(match.group(2)))
            query = query.where(condition)
    return query.order_by(*(column.desc() for column in LIST_ORDER))


def unassigned_queue(default_group_id: int | None) -> sa.Select:
    """The desk's queue of calls nobody has picked up: those in the desk's default group and
    any in no group at all (switchboard.desk.routing); calls in no group only, on a desk
    without a default group. Who sees it: sees_unassigned."""
    if default_group_id is None:
        where = Call.assigned_group_id.is_(None)
    else:
        where = sa.or_(Call.assigned_group_id == default_group_id, Call.assigned_group_id.is_(None))
    return _work_order(
        sa.select(Call).where(where, Call.assigned_analyst_id.is_(None), Call.status.in_(WORKING_STATUSES))
    )


def sees_unassigned(person, default_group_id: int | None, in_default_group: bool) -> bool:
    """Whether My work shows this person the unassigned queue: the default group's members;
    on a desk without a default group, admins, so no call is ever out of everyone's sight."""
    return person.is_admin if default_group_id is None else in_default_group

