"""What a task action writes: each row it changes in one UPDATE (the decided or finished task,
the tasks a stage starts or a rejection cancels, the request), and its timeline entries in the
order they happened. Both databases."""

import contextlib

import sqlalchemy as sa

from switchboard.db import db
from switchboard.history.models import HistoryEntry
from switchboard.people.models import Person
from switchboard.requests.models import Request, RequestStatus, Task, TaskKind, TaskStatus
from switchboard.requests.services import (
    TaskSpec, approve_task, complete_task, create_request, forward_task, get_task, reject_task,
)


@contextlib.contextmanager
def writes():
    """The table of each row UPDATE sent inside the block (an executemany counts its rows)."""
    sent = []

    def count(conn, cursor, statement, parameters, context, executemany):
        words = statement.split()
        if words[0].upper() == "UPDATE":
            sent.extend([words[1].lower()] * (len(parameters) if executemany else 1))

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)


def _request(people, title):
    request = create_request(people["anna"], title, requester=people["carol"], tasks=[
        TaskSpec(TaskKind.APPROVAL, "Manager approval", approver=people["dave"]),
        TaskSpec(TaskKind.ACTION, "Order laptop", stage=2, group=people["service_desk"]),
        TaskSpec(TaskKind.ACTION, "Create accounts", stage=2, analyst=people["bob"]),
    ])
    db.session.commit()
    return request.id, [t.id for t in request.tasks]


def _act(action, task_id, who_id):
    """As a request does: the task and the person read fresh, the action, one commit."""
    db.session.expunge_all()
    with writes() as updated:
        action(get_task(task_id), db.session.get(Person, who_id))
        db.session.commit()
    return updated


def _summaries(model, record_id):
    column = HistoryEntry.request_id if model is Request else HistoryEntry.task_id
    return list(db.session.scalars(sa.select(HistoryEntry.summary).where(column == record_id)
                                   .order_by(HistoryEntry.created_at, HistoryEntry.id)))


def _ids(people):
    return {name: (person.id, person.display_name) for name, person in people.items() if isinstance(person, Person)}


def test_each_task_action_updates_each_row_once(people):
    request_id, (approval, laptop, accounts) = _request(people, "New starter: Erin")
    who = _ids(people)

    # Approving starts stage 2: the approval, both tasks of stage 2 and the request change.
    updated = _act(lambda t, me: approve_task(t, me, "Budget ok"), approval, who["dave"][0])
    assert sorted(updated) == ["service_request", "task", "task", "task"]
    updated = _act(lambda t, me: forward_task(t, me, analyst=db.session.get(Person, who["bob"][0]), note="Yours"),
                   laptop, who["anna"][0])
    assert updated == ["task"]
    updated = _act(lambda t, me: complete_task(t, me, "Ordered"), laptop, who["bob"][0])
    assert sorted(updated) == ["service_request", "task"]
    # The last task done completes the request: still one UPDATE of it (status, completion, time).
    updated = _act(lambda t, me: complete_task(t, me, "Made"), accounts, who["bob"][0])
    assert sorted(updated) == ["service_request", "task"]

    db.session.expunge_all()
    request = db.session.get(Request, request_id)
    assert request.status is RequestStatus.COMPLETED and request.completed_at is not None
    assert [t.status for t in request.tasks] == [TaskStatus.APPROVED, TaskStatus.DONE, TaskStatus.DONE]
    assert request.tasks[1].assigned_analyst_id == who["bob"][0]
    # The timelines in the order things happened.
    assert _summaries(Request, request_id)[-2:] == [
        f"TASK-{approval} approved by {who['dave'][1]}", "Status In progress → Completed",
    ]
    assert _summaries(Task, laptop)[-3:] == [
        "Status Pending → In progress", f"Forwarded to {who['bob'][1]}", "Status In progress → Done",
    ]


def test_a_rejection_cancels_the_other_tasks_in_one_write_each(people):
    request_id, (approval, laptop, accounts) = _request(people, "New starter: Fred")
    who = _ids(people)
    updated = _act(lambda t, me: reject_task(t, me, "No budget"), approval, who["dave"][0])
    # The approval and the two pending tasks once each, the request once (rejected, finished).
    assert sorted(updated) == ["service_request", "task", "task", "task"]
    db.session.expunge_all()
    request = db.session.get(Request, request_id)
    assert request.status is RequestStatus.REJECTED and request.completed_at is not None
    assert [t.status for t in request.tasks] == [TaskStatus.REJECTED, TaskStatus.CANCELLED, TaskStatus.CANCELLED]
    assert _summaries(Task, laptop)[-1] == f"Cancelled: TASK-{approval} was rejected"
    assert _summaries(Request, request_id)[-2:] == [
        f"TASK-{approval} rejected by {who['dave'][1]}", "Status In progress → Rejected",
    ]
