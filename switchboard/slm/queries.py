"""Lists of calls in the order of their service level: the soonest due first."""

import sqlalchemy as sa

from switchboard.calls.models import Call

# The time a call is next due: its response while unanswered, else its fix.
NEXT_DUE = sa.case(
    (sa.and_(Call.first_response_at.is_(None), Call.response_due_at.is_not(None)), Call.response_due_at),
    else_=Call.fix_due_at,
)


def soonest_due_first(query: sa.Select) -> sa.Select:
    """`query` (of calls) re-ordered: breached first, then the soonest due, calls without a
    due time last (portable: no NULLS LAST)."""
    return query.order_by(None).order_by(Call.sla_breached.desc(), NEXT_DUE.is_(None), NEXT_DUE, Call.id)
