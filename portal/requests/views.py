"""Request pages: list, raise a request with tasks, a request's page, and
the POST routes for a note on the request and each thing done to a task.
Same contract as the call pages: one service call, one commit, htmx gets
the request's fragment back."""

from dataclasses import dataclass
from typing import Callable

from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, url_for

from portal.auth import current_person
from portal.forms import attempt, chosen_group, chosen_person, form_asked_for, mail_choice, uploads
from portal.htmx import is_htmx, vary_on_htmx
from portal.pagination import decode_position, encode_position, keyset_paginate, position_arg
from portal.requests.forms import (
    ApproveForm,
    CompleteForm,
    ForwardTaskForm,
    NewRequestForm,
    NoteForm,
    RejectForm,
)
from switchboard.history.services import timeline_page
from switchboard.people.services import find_or_create_customer
from switchboard.errors import InvalidTransition
from switchboard.permissions import allowed, require
from switchboard.requests.models import TaskKind, TaskStatus
from switchboard.requests.queries import (
    LIST_ORDER,
    REQUEST_LISTED_WITH,
    REQUEST_SHOWN_WITH,
    SCOPES,
    STATUS_FILTERS,
    find_requests,
)
from switchboard.requests.services import (
    TaskSpec,
    approve_task,
    complete_task,
    create_request,
    forward_task,
    get_request,
    get_task,
    reject_task,
    task_timelines,
    update_request,
    update_task,
)

bp = Blueprint("requests", __name__, url_prefix="/requests")

PAGE_SIZE = 50
# A text search counts its matches up to this many ("more than 1,000 requests"), as the call
# list does: counting them all reads every title.
SEARCH_COUNTED = 1000
# Timeline entries per page, newest first, as on a call's page; "Older entries" loads the next
# page in place. A task's timeline (inside its closed details) shows fewer at a time.
TIMELINE_PAGE = 50
TASK_TIMELINE_PAGE = 20


@dataclass(frozen=True)
class TaskAction:
    title: str
    form: type
    permission: str
    fits: Callable
    run: Callable
    done: str

    def offered(self, task, person) -> bool:
        """Whether the request's page offers this action on this task to this person (the
        same rule the service applies when it runs)."""
        return self.fits(task) and allowed(person, self.permission, task)


TASK_ACTIONS = {
    "approve": TaskAction(
        "Approve", ApproveForm, "decide_task", lambda t: t.status is TaskStatus.AWAITING_DECISION,
        lambda task, me, f: approve_task(task, me, f.reason.data or ""),
        "Approved.",
    ),
    "reject": TaskAction(
        "Reject", RejectForm, "decide_task", lambda t: t.status is TaskStatus.AWAITING_DECISION,
        lambda task, me, f: reject_task(task, me, f.reason.data or ""),
        "Rejected.",
    ),
    "complete": TaskAction(
        "Mark done", CompleteForm, "complete_task", lambda t: t.status is TaskStatus.IN_PROGRESS,
        lambda task, me, f: complete_task(task, me, f.note.data or ""),
        "Task done.",
    ),
    "forward": TaskAction(
        "Forward", ForwardTaskForm, "forward_task", lambda t: not t.status.finished,
        lambda task, me, f: forward_task(
            task, me, analyst=chosen_person(f.analyst.data), group=chosen_group(f.group.data), note=f.note.data or "",
            notify=mail_choice(f),
        ),
        "Task forwarded.",
    ),
    "note": TaskAction(
        "Add a note", NoteForm, "update_task", lambda t: True,
        lambda task, me, f: update_task(task, me, f.note.data, attachments=uploads(f.files)),
        "Note added.",
    ),
}
# The task forms a request's page always renders open: a decision waiting for this person.
# The others are built when their <details> is opened (forms on demand: the forward form's
# analysts and groups were two statements per task, and rendering every form of every task
# most of the page's time).
ALWAYS_SHOWN = ("approve", "reject")


@bp.get("/")
def index():
    me = current_person()
    status = request.args.get("status", "active")
    scope = request.args.get("scope", "all")
    text = request.args.get("q", "").strip()[:200]
    status = status if status in STATUS_FILTERS else "active"
    scope = scope if scope in SCOPES else "all"
    found = keyset_paginate(
        find_requests(me, status=status, scope=scope, text=text).order_by(None), LIST_ORDER, PAGE_SIZE,
        options=REQUEST_LISTED_WITH, count_up_to=SEARCH_COUNTED if text else None,
    )
    template = "requests/_results.html" if is_htmx() else "requests/list.html"
    return vary_on_htmx(
        make_response(
            render_template(
                template,
                requests=found.items,
                **found.template_args(),
                filters={"status": status, "scope": scope, "q": text},
                statuses=list(STATUS_FILTERS),
                scopes=SCOPES,
            )
        )
    )


@bp.route("/new", methods=["GET", "POST"])
def new():
    me = current_person()
    form = NewRequestForm()

    def raise_request():
        requester = None
        if (form.requester_email.data or "").strip():
            requester = find_or_create_customer(form.requester_email.data)
        specs = [
            TaskSpec(
                kind=TaskKind(row.kind.data),
                title=row.title.data,
                stage=row.stage.data or 1,
                analyst=chosen_person(row.analyst.data),
                group=chosen_group(row.group.data),
                approver=find_or_create_customer(row.approver_email.data) if row.approver_email.data else None,
            )
            for row in (entry.form for entry in form.tasks)
            if not row.is_blank
        ]
        return create_request(me, form.title.data, form.description.data or "", requester=requester, tasks=specs)

    created = attempt(form, raise_request, field_map={"email": "requester_email", "approver": None, "stage": None})
    if created is not None:
        flash(f"{created.ref} raised.")
        return redirect(url_for("requests.detail", request_id=created.id), code=303)
    return render_template("requests/new.html", form=form), (422 if form.is_submitted() else 200)


@bp.get("/<int:request_id>")
def detail(request_id):
    # ?before= is where an older page of the request's timeline starts, ?task=&task_before=
    # the same for one task's timeline (the "Older entries" links without JS); ?form= is the
    # task form to show open (task<id>-<action>: the no-JS way to open one).
    req = get_request(request_id, current_person(), options=REQUEST_SHOWN_WITH)
    return vary_on_htmx(_render_request(req, before=position_arg("before"), task_before=_task_before(),
                                        asked=request.args.get("form")))


@bp.get("/<int:request_id>/timeline")
def older_entries(request_id):
    """The "Older entries" control's htmx request: the next page of the request's timeline
    as list items, swapped in place of the control. Without htmx, the request's page from
    that point."""
    req = get_request(request_id, current_person())
    before = position_arg("before")
    if not is_htmx():
        return redirect(url_for("requests.detail", request_id=req.id, before=request.args.get("before")), code=303)
    page = timeline_page(req, before=before, size=TIMELINE_PAGE)
    body = render_template("history/_older.html", page=page, older_links=lambda at: _older_links(req, at))
    return vary_on_htmx(make_response(body))


@bp.get("/tasks/<int:task_id>/timeline")
def older_task_entries(task_id):
    """The same for a task's timeline; without htmx, its request's page with that task's
    timeline open from that point."""
    task = get_task(task_id, current_person())
    before = position_arg("before")
    if not is_htmx():
        return redirect(url_for("requests.detail", request_id=task.request_id, task=task.id,
                                task_before=request.args.get("before"), _anchor=f"task-{task.id}"), code=303)
    page = timeline_page(task, before=before, size=TASK_TIMELINE_PAGE)
    body = render_template("history/_older.html", page=page, older_links=lambda at: _older_task_links(task, at))
    return vary_on_htmx(make_response(body))


def _older_links(req, position) -> tuple[str, str]:
    """The "Older entries" control's URLs: the request's page from there (no JS), and the fragment."""
    before = encode_position(position)
    return (
        url_for("requests.detail", request_id=req.id, before=before, _anchor="timeline-h"),
        url_for("requests.older_entries", request_id=req.id, before=before),
    )


def _older_task_links(task, position) -> tuple[str, str]:
    before = encode_position(position)
    return (
        url_for("requests.detail", request_id=task.request_id, task=task.id, task_before=before,
                _anchor=f"task-{task.id}"),
        url_for("requests.older_task_entries", task_id=task.id, before=before),
    )


def _task_before():
    """?task=<id>&task_before=<position>: one task's timeline shown from that point. A task
    number that is not a number is a 404, as a bad position is; one that is not this
    request's is ignored (the page shows as usual)."""
    text = request.args.get("task", "").strip()
    if not text:
        return None
    if len(text) > 10 or not (text.isascii() and text.isdigit()):
        abort(404)
    position = request.args.get("task_before", "").strip()
    return (int(text), decode_position(position)) if position else None


@bp.post("/<int:request_id>/note")
def note(request_id):
    me = current_person()
    req = get_request(request_id, me)
    form = NoteForm(prefix="request-note")
    if attempt(form, lambda: update_request(req, me, form.note.data, attachments=uploads(form.files))) is not None:
        return _done(_shown(request_id), "Note added.")
    return _render_request(_shown(request_id), posted=("request-note", form), status=422)


@bp.post(f"/tasks/<int:task_id>/<any({', '.join(TASK_ACTIONS)}):action>")
def task_action(task_id, action):
    me = current_person()
    task = get_task(task_id, me)
    spec = TASK_ACTIONS[action]
    prefix = _task_prefix(task, action)
    form = spec.form(prefix=prefix)
    request_id = task.request_id  # read before the commit expires the task
    if attempt(form, lambda: spec.run(task, me, form)) is not None:
        return _done(_shown(request_id), spec.done)
    return _render_request(_shown(request_id), posted=(prefix, form), status=422)


@bp.get(f"/tasks/<int:task_id>/<any({', '.join(TASK_ACTIONS)}):action>/form")
def task_form(task_id, action):
    """One task action's form, fetched by htmx when its <details> on the request's page is
    opened. Refused as the action's POST would be: 404/403 for a task the person may not
    see, 403 for an action they may not do, 409 for one that does not fit the task's state.
    Without htmx: the request's page with that form open."""
    me = current_person()
    task = get_task(task_id, me)
    spec = TASK_ACTIONS[action]
    require(me, spec.permission, task)
    if not spec.fits(task):
        raise InvalidTransition(f"{task.ref} is {task.status.label.lower()}: “{spec.title}” is not possible now.")
    if not is_htmx():
        prefix = _task_prefix(task, action)
        return redirect(url_for("requests.detail", request_id=task.request_id, form=prefix,
                                _anchor=f"action-{prefix}"), code=303)
    body = render_template("requests/_task_form.html", task=task, name=action, form=_fresh_form(task, action),
                           actions=TASK_ACTIONS)
    return vary_on_htmx(make_response(body))


def _fresh_form(task, name):
    form = TASK_ACTIONS[name].form(prefix=_task_prefix(task, name), formdata=None)
    if name == "forward":
        # Forwarding names the new owner in full, so start from the current one.
        form.analyst.data = str(task.assigned_analyst_id or "")
        form.group.data = str(task.assigned_group_id or "")
    return form


def _task_prefix(task, action) -> str:
    return f"task{task.id}-{action}"


def _shown(request_id):
    """The request as its page shows it, read again after an action (the commit expired it):
    with its people and tasks in two statements, not one lazy load each while rendering."""
    return get_request(request_id, options=REQUEST_SHOWN_WITH)


def _done(req, message):
    if is_htmx():
        return _render_request(req, notice=message)
    flash(message)
    return redirect(url_for("requests.detail", request_id=req.id), code=303)


def _render_request(req, *, posted=None, notice=None, status=200, before=None, task_before=None, asked=None):
    """The request's page (or its htmx fragment): its timeline a page at a time, each task
    with a page of its own timeline and its actions. Only some task forms are built: a
    decision waiting for this person, a posted form with its errors, and the one `asked`
    for (?form=); the rest are links their <details> fetch when opened."""
    me = current_person()
    pages = task_timelines(req.tasks, TASK_TIMELINE_PAGE)
    offered = {task.id: [name for name, spec in TASK_ACTIONS.items() if spec.offered(task, me)] for task in req.tasks}
    asked = form_asked_for(asked, {_task_prefix(t, name) for t in req.tasks for name in offered[t.id]})
    tasks = []
    for task in req.tasks:
        forms = {}
        for name in offered[task.id]:
            prefix = _task_prefix(task, name)
            if posted and posted[0] == prefix:
                forms[name] = posted[1]
            elif name in ALWAYS_SHOWN or prefix == asked:
                forms[name] = _fresh_form(task, name)
        page, count = pages[task.id]
        from_older = task_before is not None and task_before[0] == task.id
        if from_older:
            page = timeline_page(task, before=task_before[1], size=TASK_TIMELINE_PAGE)
        tasks.append({
            "task": task, "timeline": page, "count": count, "from_older": from_older,
            "offered": offered[task.id], "forms": forms,
            "older_links": lambda at, task=task: _older_task_links(task, at),
        })
    note_form = posted[1] if posted and posted[0] == "request-note" else NoteForm(prefix="request-note", formdata=None)
    template = "requests/_request.html" if is_htmx() else "requests/detail.html"
    body = render_template(
        template,
        req=req,
        timeline=timeline_page(req, before=before, size=TIMELINE_PAGE),
        older_links=lambda at: _older_links(req, at),
        from_older=before is not None,
        tasks=tasks,
        actions=TASK_ACTIONS,
        note_form=note_form if allowed(me, "update_request", req) else None,
        notice=notice,
        fragment=is_htmx(),
    )
    return make_response(body, status)
