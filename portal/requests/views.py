"""Request pages: list, raise a request with tasks, a request's page, and
the POST routes for a note on the request and each thing done to a task.
Same contract as the call pages: one service call, one commit, htmx gets
the request's fragment back."""

from dataclasses import dataclass
from typing import Callable

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for

from portal.auth import current_person
from portal.forms import attempt, chosen_group, chosen_person, mail_choice, uploads
from portal.htmx import is_htmx, vary_on_htmx
from portal.pagination import paginate
from portal.requests.forms import (
    ApproveForm,
    CompleteForm,
    ForwardTaskForm,
    NewRequestForm,
    NoteForm,
    RejectForm,
)
from switchboard.history.services import timeline
from switchboard.people.services import find_or_create_customer
from switchboard.permissions import allowed
from switchboard.requests.models import TaskKind, TaskStatus
from switchboard.requests.queries import REQUEST_LISTED_WITH, SCOPES, STATUS_FILTERS, find_requests
from switchboard.requests.services import (
    TaskSpec,
    approve_task,
    complete_task,
    create_request,
    forward_task,
    get_request,
    get_task,
    reject_task,
    update_request,
    update_task,
)

bp = Blueprint("requests", __name__, url_prefix="/requests")

PAGE_SIZE = 50


@dataclass(frozen=True)
class TaskAction:
    title: str
    form: type
    permission: str
    fits: Callable
    run: Callable
    done: str


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


@bp.get("/")
def index():
    me = current_person()
    status = request.args.get("status", "active")
    scope = request.args.get("scope", "all")
    text = request.args.get("q", "").strip()[:200]
    status = status if status in STATUS_FILTERS else "active"
    scope = scope if scope in SCOPES else "all"
    query = find_requests(me, status=status, scope=scope, text=text).options(*REQUEST_LISTED_WITH)
    found = paginate(query, PAGE_SIZE)
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
    return vary_on_htmx(_render_request(get_request(request_id, current_person())))


@bp.post("/<int:request_id>/note")
def note(request_id):
    me = current_person()
    req = get_request(request_id, me)
    form = NoteForm(prefix="request-note")
    if attempt(form, lambda: update_request(req, me, form.note.data, attachments=uploads(form.files))) is not None:
        return _done(req, "Note added.")
    return _render_request(req, posted=("request-note", form), status=422)


@bp.post(f"/tasks/<int:task_id>/<any({', '.join(TASK_ACTIONS)}):action>")
def task_action(task_id, action):
    me = current_person()
    task = get_task(task_id, me)
    spec = TASK_ACTIONS[action]
    prefix = _task_prefix(task, action)
    form = spec.form(prefix=prefix)
    if attempt(form, lambda: spec.run(task, me, form)) is not None:
        return _done(task.request, spec.done)
    return _render_request(task.request, posted=(prefix, form), status=422)


def _task_prefix(task, action) -> str:
    return f"task{task.id}-{action}"


def _done(req, message):
    if is_htmx():
        return _render_request(req, notice=message)
    flash(message)
    return redirect(url_for("requests.detail", request_id=req.id), code=303)


def _render_request(req, *, posted=None, notice=None, status=200):
    me = current_person()
    tasks = []
    for task in req.tasks:
        forms = {}
        for name, spec in TASK_ACTIONS.items():
            if not (spec.fits(task) and allowed(me, spec.permission, task)):
                continue
            prefix = _task_prefix(task, name)
            if posted and posted[0] == prefix:
                forms[name] = posted[1]
                continue
            form = spec.form(prefix=prefix, formdata=None)
            if name == "forward":
                form.analyst.data = str(task.assigned_analyst_id or "")
                form.group.data = str(task.assigned_group_id or "")
            forms[name] = form
        tasks.append({"task": task, "entries": timeline(task), "forms": forms})
    note_form = posted[1] if posted and posted[0] == "request-note" else NoteForm(prefix="request-note", formdata=None)
    template = "requests/_request.html" if is_htmx() else "requests/detail.html"
    body = render_template(
        template,
        req=req,
        entries=timeline(req),
        tasks=tasks,
        actions=TASK_ACTIONS,
        note_form=note_form if allowed(me, "update_request", req) else None,
        notice=notice,
        fragment=is_htmx(),
    )
    return make_response(body, status)
