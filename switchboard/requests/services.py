"""What can happen to a request and its tasks. Same contract as the call
services: permission first, then the change, the timeline, a flush."""

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from switchboard.db import db, flush, utcnow
from switchboard.events import emit
from switchboard.errors import InvalidInput, InvalidTransition, NotFound
from switchboard.history.models import EntryKind, HistoryEntry
from switchboard.history.services import TimelinePage, record
from switchboard.permissions import require
from switchboard.requests.models import Request, RequestStatus, Task, TaskKind, TaskStatus


@dataclass(frozen=True)
class TaskSpec:
    kind: TaskKind
    title: str
    description: str = ""
    stage: int = 1
    analyst: object = None
    group: object = None
    approver: object = None


def get_request(request_id: int, actor=None, *, options=()) -> Request:
    """The request, if `actor` may see it; `options` are loader options for what the caller
    shows of it (queries.REQUEST_SHOWN_WITH), applied even when the session holds the request
    already (after an action: its task's request, expired by the commit)."""
    request = db.session.get(Request, request_id, options=options, populate_existing=bool(options))
    if request is None:
        raise NotFound(f"There is no request {request_id}.")
    if actor is not None:
        require(actor, "view_request", request)
    return request


def get_task(task_id: int, actor=None) -> Task:
    task = db.session.get(Task, task_id)
    if task is None:
        raise NotFound(f"There is no task {task_id}.")
    if actor is not None:
        require(actor, "view_task", task)
    return task


def task_timelines(tasks, size: int) -> dict[int, tuple[TimelinePage, int]]:
    """The newest `size` entries of each task's timeline and how many it has in all, by task
    id, in a fixed number of statements whatever the number of tasks or entries: one
    statement walks each task's (task_id, created_at, id) index backwards for its page, one
    counts them, and the entries' authors and files come one query each."""
    ids = [task.id for task in tasks]
    if not ids:
        return {}
    order = (HistoryEntry.created_at.desc(), HistoryEntry.id.desc())
    # One page per task, each read only as far as it shows: a UNION ALL of LIMITed reads
    # (a window function over all the tasks' entries would read every entry).
    def newest(task_id):
        page = sa.select(HistoryEntry.id).where(HistoryEntry.task_id == task_id).order_by(*order).limit(size + 1)
        return sa.select(page.subquery().c.id)

    pages = sa.union_all(*(newest(task_id) for task_id in ids))
    rows = db.session.scalars(
        sa.select(HistoryEntry)
        .where(HistoryEntry.id.in_(pages))
        .order_by(*order)
        .options(selectinload(HistoryEntry.author), selectinload(HistoryEntry.attachments))
    ).all()
    counts = dict(db.session.execute(
        sa.select(HistoryEntry.task_id, sa.func.count()).where(HistoryEntry.task_id.in_(ids))
        .group_by(HistoryEntry.task_id)
    ).all())
    by_task = {task_id: [] for task_id in ids}
    for entry in rows:
        by_task[entry.task_id].append(entry)
    result = {}
    for task_id, entries in by_task.items():
        shown = entries[:size]
        older = (shown[-1].created_at, shown[-1].id) if len(entries) > size else None
        result[task_id] = (TimelinePage(shown, older), counts.get(task_id, 0))
    return result


def create_request(actor, title: str, description: str = "", *, requester=None, tasks=()) -> Request:
    require(actor, "create_request")
    title = " ".join((title or "").split())
    if not title:
        raise InvalidInput("A request needs a title.", field="title")
    now = utcnow()
    request = Request(
        title=title[:200],
        description=description or "",
        requester=requester or actor,
        owner=actor,
        status=RequestStatus.OPEN,
        created_at=now,
        updated_at=now,
    )
    db.session.add(request)
    db.session.flush()
    record(request, EntryKind.LOGGED, actor, f"Raised by {actor.display_name}", description)
    for spec in tasks:
        _new_task(request, actor, spec)
    _advance(request, actor)
    return request


def add_task(request: Request, actor, spec: TaskSpec) -> Task:
    require(actor, "add_task", request)
    if request.status in (RequestStatus.COMPLETED, RequestStatus.REJECTED):
        raise InvalidTransition(f"{request.ref} is {request.status.label.lower()}; it takes no new tasks.")
    task = _new_task(request, actor, spec)
    _advance(request, actor)
    return task


def _new_task(request: Request, actor, spec: TaskSpec) -> Task:
    title = " ".join((spec.title or "").split())
    if not title:
        raise InvalidInput("A task needs a title.", field="title")
    if spec.kind is TaskKind.APPROVAL and spec.approver is None:
        raise InvalidInput("An approval task needs an approver.", field="approver")
    if spec.stage < 1:
        raise InvalidInput("Stages count from 1.", field="stage")
    active_stage = _active_stage(request)
    if active_stage is not None and spec.stage < active_stage:
        raise InvalidInput(f"Stage {active_stage} is under way; add tasks to it or a later one.", field="stage")
    task = Task(
        request=request,
        stage=spec.stage,
        kind=spec.kind,
        title=title[:200],
        description=spec.description or "",
        status=TaskStatus.PENDING,
        assigned_analyst=spec.analyst,
        assigned_group=spec.group,
        approver=spec.approver,
    )
    db.session.add(task)
    db.session.flush()
    record(request, EntryKind.CHANGE, actor, f"Task {task.ref} added: {task.title}")
    record(task, EntryKind.LOGGED, actor, f"Added by {actor.display_name}", task.description)
    return task


def _active_stage(request: Request) -> int | None:
    # Reading the tasks flushes nothing: the tasks changed in this action are in the
    # session already (the read keeps their pending state), and flushing them here would
    # write them in statements of their own before the action's one flush.
    with db.session.no_autoflush:
        stages = [t.stage for t in request.tasks if not t.status.finished]
    return min(stages) if stages else None


def _request_of(task: Task) -> Request:
    """The task's request with its owner and requester (whom a task's mail names or is sent
    to) in one statement, where reading it lazily took three; no flush for it either."""
    if "request" in sa.inspect(task).unloaded:
        with db.session.no_autoflush:
            # Held while task.request is set from it (the session keeps objects weakly).
            request = db.session.get(Request, task.request_id,
                                     options=(joinedload(Request.owner), joinedload(Request.requester)))
            set_committed_value(task, "request", request)  # as the lazy load would: no change to write
    return task.request


def _advance(request: Request, actor) -> list[Task]:
    """Starts the tasks of the lowest unfinished stage and derives the
    request's status from its tasks. Returns the tasks it started, so the
    caller (later: the mail notifications) knows who to tell."""
    started = []
    if request.status is not RequestStatus.REJECTED:
        stage = _active_stage(request)
        for task in request.tasks:
            if task.stage == stage and task.status is TaskStatus.PENDING:
                task.status = (
                    TaskStatus.AWAITING_DECISION if task.kind is TaskKind.APPROVAL else TaskStatus.IN_PROGRESS
                )
                task.started_at = utcnow()
                record(task, EntryKind.STATUS, actor, f"Status Pending → {task.status.label}", flush=False)
                started.append(task)
    _derive_status(request, actor)
    # One flush for the action's changes: each row UPDATEd once, the entries in one INSERT.
    flush()
    for task in started:
        emit("task_started", task=task, actor=actor)
    return started


def _derive_status(request: Request, actor) -> None:
    statuses = [t.status for t in request.tasks]
    if TaskStatus.REJECTED in statuses:
        new = RequestStatus.REJECTED
    elif statuses and all(s.finished for s in statuses):
        new = RequestStatus.COMPLETED
    elif any(s.finished or s.active for s in statuses):
        new = RequestStatus.IN_PROGRESS
    else:
        new = RequestStatus.OPEN
    request.updated_at = utcnow()
    if new is not request.status:
        old = request.status
        request.status = new
        request.completed_at = utcnow() if new in (RequestStatus.COMPLETED, RequestStatus.REJECTED) else None
        record(request, EntryKind.STATUS, actor, f"Status {old.label} → {new.label}",
               details={"from": old.value, "to": new.value}, flush=False)


def complete_task(task: Task, actor, note: str = ""):
    require(actor, "complete_task", task)
    if task.status is not TaskStatus.IN_PROGRESS:
        raise InvalidTransition(f"{task.ref} is {task.status.label.lower()}; only a task in progress can be done.")
    task.status = TaskStatus.DONE
    task.finished_at = utcnow()
    entry = record(task, EntryKind.STATUS, actor, "Status In progress → Done", note, flush=False)
    _advance(_request_of(task), actor)  # flushes the task with the rest
    return entry


def approve_task(task: Task, actor, reason: str = "", *, via: str = "portal"):
    return _decide(task, actor, TaskStatus.APPROVED, reason, via)


def reject_task(task: Task, actor, reason: str, *, via: str = "portal"):
    if not (reason or "").strip():
        raise InvalidInput("Say why you reject it.", field="reason")
    return _decide(task, actor, TaskStatus.REJECTED, reason, via)


def _decide(task: Task, actor, outcome: TaskStatus, reason: str, via: str):
    require(actor, "decide_task", task)
    if task.kind is not TaskKind.APPROVAL:
        raise InvalidTransition(f"{task.ref} is not an approval task.")
    if task.status is not TaskStatus.AWAITING_DECISION:
        raise InvalidTransition(f"{task.ref} is {task.status.label.lower()}; it is not awaiting a decision.")
    now = utcnow()
    task.status = outcome
    task.decided_at = task.finished_at = now
    task.decision_reason = (reason or "").strip()
    verb = "Approved" if outcome is TaskStatus.APPROVED else "Rejected"
    request = _request_of(task)
    entry = record(task, EntryKind.DECISION, actor, f"{verb} by {actor.display_name}", task.decision_reason,
                   details={"decision": outcome.value, "via": via}, flush=False)
    record(request, EntryKind.DECISION, actor, f"{task.ref} {verb.lower()} by {actor.display_name}",
           task.decision_reason, flush=False)
    if outcome is TaskStatus.REJECTED:
        with db.session.no_autoflush:  # the decided task's change waits for the flush below
            others = list(request.tasks)
        for other in others:
            if other.status is TaskStatus.PENDING or other.status.active:
                other.status = TaskStatus.CANCELLED
                other.finished_at = now
                record(other, EntryKind.STATUS, actor, f"Cancelled: {task.ref} was rejected", flush=False)
    # One flush before the mail: the tasks UPDATEd once each, the entries in one INSERT, and
    # the handlers see them written (as after any service's flush).
    flush()
    emit("task_decided", task=task, actor=actor, entry=entry)
    _advance(request, actor)
    return entry


def forward_task(task: Task, actor, *, analyst=None, group=None, note: str = "", notify: bool | None = None):
    require(actor, "forward_task", task)
    if task.status.finished:
        raise InvalidTransition(f"{task.ref} is {task.status.label.lower()}; it cannot be forwarded.")
    if analyst is None and group is None:
        raise InvalidInput("Choose an analyst or a group to forward to.", field="analyst")
    if analyst is not None and not (analyst.is_analyst and analyst.active):
        raise InvalidInput(f"{analyst.display_name} is not an active analyst.", field="analyst")
    task.assigned_analyst = analyst
    task.assigned_group = group
    parts = [p for p in (analyst.display_name if analyst else None, group.name if group else None) if p]
    entry = record(task, EntryKind.FORWARD, actor, "Forwarded to " + " / ".join(parts), note, flush=False)
    flush()
    _request_of(task)  # the mail names the request and its requester
    emit("task_forwarded", task=task, actor=actor, entry=entry, notify=notify)
    return entry


def update_task(task: Task, actor, note: str, *, attachments=(), via: str = "portal"):
    require(actor, "update_task", task)
    return _note(task, actor, note, attachments, via)


def update_request(request: Request, actor, note: str, *, attachments=(), via: str = "portal"):
    require(actor, "update_request", request)
    request.updated_at = utcnow()
    return _note(request, actor, note, attachments, via)


def _note(owner, actor, note, attachments, via):
    note = (note or "").strip()
    if not note and not attachments:
        raise InvalidInput("Write a note or attach a file.", field="note")
    kind = EntryKind.EMAIL_IN if via == "email" else EntryKind.NOTE
    return record(owner, kind, actor, f"Update by {actor.display_name}", note, attachments=attachments)
