"""My work: the first page after login. An analyst's open calls and tasks,
the approvals waiting for their word, the desk's unassigned calls (for the
default group's members) and what sits unassigned in their other groups,
with counts."""

from dataclasses import dataclass

import sqlalchemy as sa
from flask import Blueprint, render_template, request

from portal.auth import current_person
from switchboard.calls.models import Call
from switchboard.calls.queries import (
    assigned_calls,
    call_lines,
    group_queue_calls,
    sees_unassigned,
    unassigned_queue,
)
from switchboard.db import db
from switchboard.desk.routing import default_group_id
from switchboard.people.models import Group, group_membership
from switchboard.requests.queries import (
    TASK_LISTED_WITH,
    assigned_tasks,
    awaiting_decision,
    group_queue_tasks,
)
from switchboard.slm.queries import soonest_due_first

bp = Blueprint("work", __name__)

# Enough to work from on a phone; the full lists are one link away.
SHOWN = 50


@dataclass
class Section:
    records: list
    total: int


def _count(query) -> sa.ScalarSelect:
    return query.order_by(None).with_only_columns(sa.func.count(), maintain_column_froms=True).scalar_subquery()


def _rows(query, total: int) -> Section:
    # An empty section costs no statement: its count said so.
    if not total:
        return Section([], 0)
    if query.column_descriptions[0]["entity"] is Call:
        shown = call_lines(query.limit(SHOWN))
    else:
        shown = query.options(*TASK_LISTED_WITH).limit(SHOWN)
    return Section(db.session.scalars(shown).all(), total)


@bp.route("/")
def my_work():
    me = current_person()
    desk_group_id = default_group_id()
    # ?sort=due: the calls soonest due (SLA) first; otherwise most urgent, then waiting longest.
    sort = "due" if request.args.get("sort") == "due" else "priority"
    order = soonest_due_first if sort == "due" else (lambda query: query)
    sections = {
        "my_calls": order(assigned_calls(me)),
        "my_tasks": assigned_tasks(me),
        "decisions": awaiting_decision(me),
        "group_calls": order(group_queue_calls(me)),
        "group_tasks": group_queue_tasks(me),
    }
    # Counted too, for what only some people see: "Unassigned", and, beside it, the queues of
    # my groups but the default one (its calls are under "Unassigned": not twice).
    counted = dict(sections)
    facts = []
    if desk_group_id is not None:
        counted["unassigned"] = order(unassigned_queue(desk_group_id))
        counted["other_group_calls"] = order(group_queue_calls(me).where(Call.assigned_group_id != desk_group_id))
        facts = [
            sa.select(Group.name).where(Group.id == desk_group_id).scalar_subquery().label("desk_group"),
            sa.exists().where(group_membership.c.group_id == desk_group_id,
                              group_membership.c.person_id == me.id).label("in_desk_group"),
        ]
    elif me.is_admin:
        counted["unassigned"] = order(unassigned_queue(None))
    # Every count, the default group's name and whether I am in it: one statement.
    found = dict(db.session.execute(
        sa.select(*(_count(query).label(name) for name, query in counted.items()), *facts)
    ).one()._mapping)
    if "unassigned" in counted and sees_unassigned(me, desk_group_id, bool(found.get("in_desk_group"))):
        sections["unassigned"] = counted["unassigned"]
        if desk_group_id is not None:
            sections["group_calls"], found["group_calls"] = counted["other_group_calls"], found["other_group_calls"]
    shown = {name: _rows(query, found[name]) for name, query in sections.items()}
    return render_template(
        "work/my_work.html",
        sort=sort,
        unassigned=shown.pop("unassigned", None),
        desk_group=found.get("desk_group"),
        **shown,
    )
