"""Finding calls for lists: an analyst's own work, their groups' queues and
the call list's filters. Each returns a SELECT, so a caller can count it,
page it or add to it; nothing here changes a call."""

import re

import sqlalchemy as sa
from sqlalchemy.orm import Bundle, aliased

from switchboard.calls.models import Call, CallStatus, Priority
from switchboard.people.models import Group, Person, group_membership

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


class CallLine:
    """A call as a line in a list shows it (calls/_items.html: My work, the call list): plain
    values read in the list's own statement (call_lines), not a Call with its customer,
    analyst, group and priority built as five ORM objects a line (that was most of a list
    page's CPU). Read-only: nothing is loaded from it later. The SLA fields and `status`
    have a Call's names, so what reads them reads either."""

    __slots__ = ("id", "summary", "status", "priority_id", "priority_name", "customer_name", "analyst_name",
                 "group_name", "updated_at", "sla_breached", "sla_level", "response_due_at",
                 "first_response_at", "fix_due_at")

    ref = Call.ref  # "CALL-<id>", the one definition

    def __init__(self, id, summary, status, priority_id, priority_name, customer_name, customer_email,
                 analyst_name, analyst_email, group_name, updated_at, sla_breached, sla_level,
                 response_due_at, first_response_at, fix_due_at):
        self.id, self.summary, self.status = id, summary, status
        self.priority_id, self.priority_name = priority_id, priority_name
        # A person's display name (Person.display_name): the name, else the address.
        self.customer_name = customer_name or customer_email
        # None: no analyst (an analyst always has an address); group_name None: no group.
        self.analyst_name = (analyst_name or analyst_email) if analyst_email is not None else None
        self.group_name, self.updated_at = group_name, updated_at
        self.sla_breached, self.sla_level = sla_breached, sla_level
        self.response_due_at, self.first_response_at, self.fix_due_at = response_due_at, first_response_at, fix_due_at


class _Lines(Bundle):
    # One CallLine a row: the bundle's columns in CallLine's argument order.
    def create_row_processor(self, query, procs, labels):
        def line(row):
            return CallLine(*[proc(row) for proc in procs])

        return line


_customer, _analyst = aliased(Person), aliased(Person)
_LINE = _Lines(
    "call_line",
    Call.id, Call.summary, Call.status, Call.priority_id, Priority.name, _customer.name, _customer.email,
    _analyst.name, _analyst.email, Group.name, Call.updated_at, Call.sla_breached, Call.sla_level,
    Call.response_due_at, Call.first_response_at, Call.fix_due_at,
)
# Customer and priority are never empty: inner joins. Many-to-one, so still one row a call.
_LINE_FROM = (
    sa.join(Call, Priority, Priority.id == Call.priority_id)
    .join(_customer, _customer.id == Call.customer_id)
    .outerjoin(_analyst, _analyst.id == Call.assigned_analyst_id)
    .outerjoin(Group, Group.id == Call.assigned_group_id)
)


def call_lines(page: sa.Select) -> sa.Select:
    """A page of calls (a SELECT of calls from this module with its ORDER BY and LIMIT) read
    as CallLine, what a line in a list shows, in one statement. The page's calls are found
    on the call table alone (its index walk: tests/db/test_list_indexes.py), and only those
    are joined to their customer, analyst, group and priority: joined before the LIMIT,
    PostgreSQL joined every candidate, hashing all 10,000 people for an analyst's 160 calls
    (4 ms of a 5 ms statement). Count `page`'s query without this: the joins are for the
    lines shown."""
    # The outer ORDER BY is the page's own (its expressions are of the same call table), so
    # the rows come back in the page's order. _order_by_clauses is where SQLAlchemy keeps a
    # statement's ORDER BY (it has no public accessor).
    return (
        sa.select(_LINE)
        .select_from(_LINE_FROM)
        .where(Call.id.in_(page.with_only_columns(Call.id)))
        .order_by(*page._order_by_clauses)
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

