"""My work: the first page after login. An analyst's open calls and tasks,
the approvals waiting for their word, and what sits unassigned in their
groups, with counts."""

from dataclasses import dataclass

from flask import Blueprint, render_template

from portal.auth import current_person
from portal.pagination import count
from switchboard.calls.queries import assigned_calls, group_queue_calls
from switchboard.db import db
from switchboard.requests.queries import assigned_tasks, awaiting_decision, group_queue_tasks

bp = Blueprint("work", __name__)

# Enough to work from on a phone; the full lists are one link away.
SHOWN = 50


@dataclass
class Section:
    records: list
    total: int


def _section(query) -> Section:
    return Section(db.session.scalars(query.limit(SHOWN)).all(), count(query))


@bp.route("/")
def my_work():
    me = current_person()
    return render_template(
        "work/my_work.html",
        my_calls=_section(assigned_calls(me)),
        my_tasks=_section(assigned_tasks(me)),
        decisions=_section(awaiting_decision(me)),
        group_calls=_section(group_queue_calls(me)),
        group_tasks=_section(group_queue_tasks(me)),
    )
