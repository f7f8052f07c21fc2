"""Call pages: list, log a call, a call's page, and one POST route per thing
an analyst does to a call. Every action calls one service with the acting
person and commits once; with htmx it answers the call's fragment (timeline
and forms), without JS it redirects back to the page. The page renders only the
note form; every other action's form is fetched when its <details> is opened
(the form route), or rendered open with ?form=<action> without JS."""

from dataclasses import dataclass
from typing import Callable

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from sqlalchemy.orm import joinedload

from portal.auth import current_person
from portal.calls.forms import (
    CloseForm,
    HoldForm,
    LogCallForm,
    MailForm,
    PriorityForm,
    ReopenForm,
    ResolveForm,
    ResumeForm,
    UpdateForm,
)
from portal.forms import ForwardForm, attempt, chosen_group, chosen_person, form_asked_for, mail_choice, uploads
from portal.htmx import is_htmx, vary_on_htmx
from portal.pagination import encode_position, keyset_paginate, position_arg
from switchboard.calls.models import Call, CallStatus
from switchboard.calls.queries import LIST_ORDER, SCOPES, STATUS_FILTERS, call_lines, find_calls
from switchboard.calls.services import (
    change_priority,
    close_call,
    forward_call,
    get_call,
    hold_call,
    log_call,
    reopen_call,
    resolve_call,
    resume_call,
    update_call,
)
from switchboard.history.services import timeline_page
from switchboard.outbox.manual import send_manual_mail
from switchboard.people.services import find_or_create_customer
from switchboard.db import db
from switchboard.errors import InvalidTransition
from switchboard.permissions import allowed, require

bp = Blueprint("calls", __name__, url_prefix="/calls")

PAGE_SIZE = 50
# A text search counts its matches up to this many ("more than 1,000 calls"): counting them
# all reads every call's summary (37 ms of CPU for 100,000 calls on SQLite here).
SEARCH_COUNTED = 1000
# Timeline entries per page, newest first; "Older" loads the next page in place.
TIMELINE_PAGE = 50

# What a call's page shows about the call itself, read with the call in one statement
# rather than one lazy load per fact while the page renders.
SHOWN_WITH = (
    joinedload(Call.customer),
    joinedload(Call.assigned_analyst),
    joinedload(Call.assigned_group),
    joinedload(Call.priority),
    joinedload(Call.logged_by),
    joinedload(Call.sla),
)
# The form the call's page always renders inline: the one used most.
ALWAYS_SHOWN = "update"


@dataclass(frozen=True)
class CallAction:
    """One thing an analyst does to a call: its form, the permission that
    decides whether its button shows, whether it fits the call's state, the
    service it runs, and what to tell the analyst afterwards."""

    title: str
    form: type
    permission: str
    fits: Callable[[Call], bool]
    run: Callable
    done: str

    def offered(self, call, person) -> bool:
        """Whether the call's page offers this action to this person (the same rule the
        service applies when it runs)."""
        return self.fits(call) and allowed(person, self.permission, call)


def _not_closed(call):
    return not call.is_closed


ACTIONS = {
    "update": CallAction(
        "Add a note", UpdateForm, "update_call", _not_closed,
        lambda call, me, f: update_call(call, me, f.note.data, internal=f.internal.data, attachments=uploads(f.files)),
        "Note added.",
    ),
    "forward": CallAction(
        "Forward", ForwardForm, "forward_call", _not_closed,
        lambda call, me, f: forward_call(
            call, me, analyst=chosen_person(f.analyst.data), group=chosen_group(f.group.data), note=f.note.data,
            notify=mail_choice(f),
        ),
        "Forwarded.",
    ),
    "resolve": CallAction(
        "Resolve", ResolveForm, "resolve_call", lambda c: c.status in (CallStatus.OPEN, CallStatus.PENDING),
        lambda call, me, f: resolve_call(call, me, f.resolution.data),
        "Resolved.",
    ),
    "hold": CallAction(
        "Put on hold", HoldForm, "hold_call", lambda c: c.status is CallStatus.OPEN,
        lambda call, me, f: hold_call(call, me, f.reason.data),
        "On hold: the SLA clock is stopped.",
    ),
    "resume": CallAction(
        "Resume", ResumeForm, "hold_call", lambda c: c.status is CallStatus.PENDING,
        lambda call, me, f: resume_call(call, me, f.note.data),
        "Resumed.",
    ),
    "priority": CallAction(
        "Change priority", PriorityForm, "change_call", _not_closed,
        lambda call, me, f: change_priority(call, me, int(f.priority.data), f.reason.data),
        "Priority changed.",
    ),
    "close": CallAction(
        "Close", CloseForm, "close_call", _not_closed,
        lambda call, me, f: close_call(call, me, f.note.data),
        "Closed.",
    ),
    "reopen": CallAction(
        "Reopen", ReopenForm, "reopen_call", lambda c: c.status in (CallStatus.RESOLVED, CallStatus.CLOSED),
        lambda call, me, f: reopen_call(call, me, f.reason.data),
        "Reopened.",
    ),
    "mail": CallAction(
        "Send mail", MailForm, "change_call", lambda c: True,
        lambda call, me, f: send_manual_mail(
            call, me, f.to.data, f.subject.data, f.text.data,
            attachment_ids=f.attachments.data if "attachments" in f._fields else (),
            template_key="manual_message" if f.use_template.data else None,
        ),
        "Mail queued: it is on the timeline and goes out with the next send.",
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
    found = keyset_paginate(
        find_calls(me, status=status, scope=scope, text=text).order_by(None), LIST_ORDER, PAGE_SIZE,
        lines=call_lines, count_up_to=SEARCH_COUNTED if text else None,
    )
    filters = {"status": status, "scope": scope, "q": text}
    template = "calls/_results.html" if is_htmx() else "calls/list.html"
    return vary_on_htmx(
        _response(
            render_template(
                template,
                calls=found.items,
                **found.template_args(),
                filters=filters,
                statuses=list(STATUS_FILTERS),
                scopes=SCOPES,
            )
        )
    )


@bp.route("/new", methods=["GET", "POST"])
def new():
    me = current_person()
    form = LogCallForm()

    def log():
        customer = find_or_create_customer(form.customer_email.data, form.customer_name.data or "")
        return log_call(
            me,
            form.summary.data,
            form.description.data or "",
            customer=customer,
            priority_id=int(form.priority.data),
            analyst=chosen_person(form.analyst.data),
            group=chosen_group(form.group.data),
            attachments=uploads(form.files),
        )

    call = attempt(form, log, field_map={"email": "customer_email"})
    if call is not None:
        flash(f"{call.ref} logged.")
        return redirect(url_for("calls.detail", call_id=call.id), code=303)
    return render_template("calls/new.html", form=form), (422 if form.is_submitted() else 200)


@bp.get("/<int:call_id>")
def detail(call_id):
    # ?before= is where an older page of the timeline starts (the "Older" link without JS).
    # ?form= is the action form to show open (the no-JS way to open one).
    return vary_on_htmx(
        _render_call(_call(call_id), before=position_arg("before"), asked=request.args.get("form"))
    )


def _call(call_id: int) -> Call:
    """The call for its page or an action, with what the page shows about it, if the
    person may see it (get_call decides: 404 or 403). Read here first, the call is in
    the session (held by `loaded`: the session holds it weakly), so get_call finds it
    there without a second statement."""
    loaded = db.session.get(Call, call_id, options=SHOWN_WITH)
    call = get_call(call_id, current_person())
    assert loaded is None or loaded is call
    return call


@bp.get("/<int:call_id>/timeline")
def older_entries(call_id):
    """The "Older" control's htmx request: the next page of the timeline as list items
    (and the next "Older" control), swapped in place of the control. Without htmx, the
    call's page from that point."""
    call = get_call(call_id, current_person())
    before = position_arg("before")
    if not is_htmx():
        return redirect(url_for("calls.detail", call_id=call.id, before=request.args.get("before")), code=303)
    page = timeline_page(call, before=before, size=TIMELINE_PAGE)
    body = render_template(
        "history/_older.html", page=page, older_links=lambda position: _older_links(call, position)
    )
    return vary_on_htmx(_response(body))


def _older_links(call, position) -> tuple[str, str]:
    """The "Older" control's URLs: the call's page from there (no JS), and the fragment."""
    before = encode_position(position)
    return (
        url_for("calls.detail", call_id=call.id, before=before, _anchor="timeline-h"),
        url_for("calls.older_entries", call_id=call.id, before=before),
    )


@bp.post(f"/<int:call_id>/<any({', '.join(ACTIONS)}):action>")
def act(call_id, action):
    me = current_person()
    call = _call(call_id)
    spec = ACTIONS[action]
    form = _for_call(spec.form(prefix=action), call, fresh=False)
    if attempt(form, lambda: spec.run(call, me, form)) is not None:
        if is_htmx():
            return _render_call(call, notice=spec.done)
        flash(spec.done)
        return redirect(url_for("calls.detail", call_id=call.id), code=303)
    return _render_call(call, posted=(action, form), status=422)


@bp.get(f"/<int:call_id>/<any({', '.join(ACTIONS)}):action>/form")
def action_form(call_id, action):
    """One action's form, fetched by htmx when its <details> on the call's page is
    opened. Refused as the action's POST would be: 404/403 for a call the person may
    not see, 403 for an action they may not do, 409 for one that does not fit the
    call's state. Without htmx: the call's page with that form open."""
    me = current_person()
    call = _call(call_id)
    spec = ACTIONS[action]
    require(me, spec.permission, call)
    if not spec.fits(call):
        raise InvalidTransition(f"{call.ref} is {call.status.label}: “{spec.title}” is not possible now.")
    if not is_htmx():
        return redirect(_form_page_url(call, action), code=303)
    body = render_template("calls/_action_form.html", call=call, name=action, form=_fresh_form(action, call),
                           actions=ACTIONS)
    return vary_on_htmx(_response(body))


def _form_page_url(call, action: str) -> str:
    return url_for("calls.detail", call_id=call.id, form=action, _anchor=f"action-{action}")


def _action_urls(call, names) -> dict[str, tuple[str, str]]:
    """Each action's form route and the call's page with that form open (_form_page_url),
    written from the call's URL: one url_for for the page instead of two per action (they
    were a tenth of its template time). Action names are plain words: nothing to quote."""
    page = url_for("calls.detail", call_id=call.id)
    return {name: (f"{page}/{name}/form", f"{page}?form={name}#action-{name}") for name in names}


def _fresh_form(name: str, call):
    form = _for_call(ACTIONS[name].form(prefix=name, formdata=None), call, fresh=True)
    # Forwarding names the new owner in full, so start from the current one.
    if name == "forward":
        form.analyst.data = str(call.assigned_analyst_id or "")
        form.group.data = str(call.assigned_group_id or "")
    elif name == "priority":
        form.priority.data = str(call.priority_id)
    return form


def _for_call(form, call, *, fresh: bool):
    """Forms whose choices depend on the call (its files) set them up here;
    `fresh` forms also get their starting values."""
    prepare = getattr(form, "for_call", None)
    if prepare is not None:
        prepare(call, fresh=fresh)
    return form


def _render_call(call, *, posted=None, notice=None, status=200, before=None, asked=None):
    """The call's page (or its htmx fragment). Only some action forms are built: the
    note form, a posted form with its errors, and the one `asked` for (?form=); the rest
    are links their <details> fetch when opened (building all nine, the forward form's
    analysts and groups and the mail form's files, was half the page's time)."""
    me = current_person()
    available = [name for name, spec in ACTIONS.items() if spec.offered(call, me)]
    forms = dict([posted]) if posted else {}
    for name in (ALWAYS_SHOWN, form_asked_for(asked, available)):
        if name in available and name not in forms:
            forms[name] = _fresh_form(name, call)
    template = "calls/_call.html" if is_htmx() else "calls/detail.html"
    body = render_template(
        template,
        call=call,
        timeline=timeline_page(call, before=before, size=TIMELINE_PAGE),
        older_links=lambda position: _older_links(call, position),
        from_older=before is not None,
        forms=forms,
        action_urls=_action_urls(call, available),
        actions=ACTIONS,
        available=available,
        notice=notice,
        fragment=is_htmx(),
    )
    return _response(body, status)


def _response(body, status=200):
    return make_response(body, status)
