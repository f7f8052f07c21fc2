"""My work: the first page after login. An analyst's open calls and tasks,
the approvals waiting for their word, the desk's unassigned calls (for the
default group's members) and what sits unassigned in their other groups,
with counts."""

from dataclasses import dataclass

from flask import Blueprint, render_template, request

from portal.auth import current_person
from portal.pagination import count
from switchboard.calls.models import Call
from switchboard.calls.queries import LISTED_WITH, assigned_calls, group_queue_calls, unassigned_calls
from switchboard.db import db
from switchboard.slm.queries import soonest_due_first
from switchboard.desk.routing import default_group
from switchboard.requests.queries import (
    TASK_LISTED_WITH,
    assigned_tasks,
    awaiting_decision,
    group_queue_tasks,
)

bp = Blueprint("work", __name__)

# Enough to work from on a phone; the full lists are one link away.
SHOWN = 50


@dataclass
class Section:
    records: list
    total: int


def _section(query) -> Section:
    shown_with = LISTED_WITH if query.column_descriptions[0]["entity"] is Call else TASK_LISTED_WITH
    return Section(db.session.scalars(query.options(*shown_with).limit(SHOWN)).all(), count(query))


@bp.route("/")
def my_work():
    me = current_person()
    desk_group = default_group()
    unassigned = unassigned_calls(me, desk_group.id if desk_group else None)
    group_calls = group_queue_calls(me)
    if unassigned is not None and desk_group is not None:
        # The default group's calls are under "Unassigned": not twice.
        group_calls = group_calls.where(Call.assigned_group_id != desk_group.id)
    # ?sort=due: the calls soonest due (SLA) first; otherwise most urgent, then waiting longest.
    sort = "due" if request.args.get("sort") == "due" else "priority"
    order = soonest_due_first if sort == "due" else (lambda query: query)
    return render_template(
        "work/my_work.html",
        sort=sort,
        my_calls=_section(order(assigned_calls(me))),
        my_tasks=_section(assigned_tasks(me)),
        decisions=_section(awaiting_decision(me)),
        unassigned=_section(order(unassigned)) if unassigned is not None else None,
        desk_group=desk_group,
        group_calls=_section(order(group_calls)),
        group_tasks=_section(group_queue_tasks(me)),
    )
