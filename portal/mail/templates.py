"""Mail templates: the message types with whether an admin changed theirs,
and an editor per type (optionally for one incoming account) with the
type's variables and their sample values, a live preview on sample data as
you type (htmx), saving (refused, with the reason and line, for anything the
sandbox would refuse or the type does not know) and going back to the
shipped templates.

The preview of an HTML template opens in a sandboxed frame from its own
endpoint: admins' HTML is shown with its styles, but nothing in it runs."""

from dataclasses import dataclass
from datetime import date, datetime

from flask import flash, make_response, redirect, render_template, request, url_for

from portal.admin.forms import ConfirmForm
from portal.auth import current_person
from portal.forms import attempt
from portal.htmx import is_htmx
from portal.mail.blueprint import bp
from portal.mail.forms import TemplateForm
from portal.mail.inbound import MAIL_HTML_POLICY
from switchboard.db import db
from switchboard.errors import InvalidInput, NotFound
from switchboard.inbound.accounts import list_accounts
from switchboard.inbound.models import IncomingAccount
from switchboard.outbox import catalogue, settings
from switchboard.outbox.catalogue import MessageType, RenderedMessage, TemplateSet
from switchboard.outbox.templates import TemplateError

# Errors about the set as a whole (or the account) go above the form.
FIELD_MAP = {"templates": None, "message_type": None, "account_id": None}


@dataclass(frozen=True)
class Preview:
    rendered: RenderedMessage | None = None
    problem: str | None = None


@bp.get("/templates")
def templates():
    overrides = settings.list_template_overrides()
    accounts = {a.id: a.name for a in list_accounts()}
    rows = []
    for message_type in MessageType:
        info = catalogue.get(message_type)
        mine = [o for o in overrides if o.message_type == info.number]
        rows.append({
            "info": info,
            "desk_wide": any(o.account_id is None and o.text_body for o in mine),
            "accounts": sorted(accounts.get(o.account_id, "?") for o in mine if o.account_id is not None),
        })
    return render_template("mail/templates.html", rows=rows)


@bp.route("/templates/<int:number>", methods=["GET", "POST"])
def template(number):
    info = _info(number)
    account = _chosen_account()
    account_id = account.id if account else None
    current, source = _current(info, account_id)
    form = TemplateForm(data=current)
    refused = []  # why the templates were refused: the page shows it, without a second render

    def save():
        try:
            return settings.save_template_override(
                info.type, current_person(), subject=form.subject.data, text=form.text.data,
                html=form.html.data, account_id=account_id, from_address=form.from_address.data,
                from_name=form.from_name.data, signature=form.signature.data,
            )
        except InvalidInput as exc:
            if exc.field == "templates":
                refused.append(exc.message)
            raise

    saved = attempt(form, save, field_map=FIELD_MAP)
    if saved is not None:
        flash(f"Template “{info.title}” saved" + (f" for {account.name}." if account else "."))
        return redirect(_editor_url(info, account), code=303)
    status = 422 if form.is_submitted() else 200
    return _editor(info, account, form, source, status=status,
                   preview=Preview(problem=refused[0]) if refused else None)


@bp.post("/templates/<int:number>/preview")
def template_preview(number):
    """The form's templates rendered on sample data (nothing saved): the
    fragment htmx asks for as you type, or the whole editor without JS."""
    info = _info(number)
    account = _chosen_account()
    form = TemplateForm()
    form.validate()
    if is_htmx():
        return render_template("mail/_template_preview.html", preview=_preview(info, form), info=info)
    return _editor(info, account, form, _current(info, account.id if account else None)[1])


@bp.route("/templates/<int:number>/preview.html", methods=["GET", "POST"])
def template_preview_html(number):
    """The HTML template rendered on sample data, for the preview frame only:
    the templates in force (GET, when the editor opens) or the form's (POST,
    the "Show the HTML" button)."""
    info = _info(number)
    if request.method == "POST":
        form = TemplateForm()
        form.validate()
    else:
        account = _chosen_account()
        form = TemplateForm(formdata=None, data=_current(info, account.id if account else None)[0])
    preview = _preview(info, form)
    if preview.problem:
        body = render_template("mail/_template_problem.html", problem=preview.problem)
    elif preview.rendered.html is None:
        body = render_template("mail/_template_problem.html", problem="This template has no HTML part.")
    else:
        body = preview.rendered.html
    response = make_response(body)
    response.mimetype = "text/html"
    response.headers["Content-Security-Policy"] = MAIL_HTML_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@bp.post("/templates/<int:number>/reset")
def template_reset(number):
    info = _info(number)
    account = _chosen_account()
    removed = attempt(ConfirmForm(), lambda: settings.delete_template_override(
        info.type, current_person(), account.id if account else None))
    if removed:
        flash(f"“{info.title}” is back to the " + ("desk-wide templates." if account else "shipped templates."))
    else:
        flash("There was nothing to reset.")
    return redirect(_editor_url(info, account), code=303)


def _editor(info, account, form, source, *, status=200, preview: Preview | None = None):
    live = {
        "hx-post": url_for("admin.mail.template_preview", number=info.number),
        # `input` rather than `keyup`: it also fires for pasting, autocorrect and
        # phone keyboards, which often send no usable key events.
        "hx-trigger": "input changed delay:400ms",
        "hx-target": "#preview",
        "hx-include": "closest form",
        "hx-sync": "closest form:replace",
    }
    for field in (form.subject, form.text, form.html, form.signature):
        field.render_kw = {**(field.render_kw or {}), **live}
    return make_response(render_template(
        "mail/template.html",
        info=info,
        form=form,
        account=account,
        accounts=list_accounts(),
        source=source,
        has_row=settings.get_template_override(info.type, account.id if account else None) is not None,
        variables=[(v.name, v.description, _sample(v.sample)) for v in catalogue.with_samples(info)],
        preview=preview or _preview(info, form),
        confirm=ConfirmForm(formdata=None),
    ), status)


def _preview(info, form: TemplateForm) -> Preview:
    subject, text, html = form.subject.data or "", form.text.data or "", form.html.data or ""
    if not subject.strip() or not text.strip():
        return Preview(problem="Write a subject and a text template to see the preview.")
    templates = TemplateSet(subject, text, html if html.strip() else None)
    try:
        # The checks saving makes: syntax, variables, the sandbox, a render on sample data
        # (under the render budget), whose result is the preview: rendered once, not twice.
        rendered = settings.check_template_set(info.type, templates)
    except InvalidInput as exc:
        return Preview(problem=exc.message)
    except TemplateError as exc:
        return Preview(problem=str(exc))
    signature = (form.signature.data or "").strip()
    if signature:
        # As the sender adds it.
        rendered = RenderedMessage(rendered.subject, f"{rendered.text.rstrip()}\n\n-- \n{signature}\n", rendered.html)
    return Preview(rendered=rendered)


def _current(info, account_id: int | None) -> tuple[dict, str]:
    """The templates in force for the type and account, and where they come from."""
    row = settings.get_template_override(info.type, account_id)
    values = {}
    if row is not None:
        values = {"from_address": row.from_address or "", "from_name": row.from_name or "",
                  "signature": row.signature or ""}
    if row is not None and row.text_body:
        values.update(subject=row.subject, text=row.text_body, html=row.html_body or "")
        return values, ("account" if account_id else "desk")
    found = settings.resolve_overrides(info.type, account_id, settings.list_template_overrides()).templates
    source = "desk" if found is not None else "shipped"
    found = found or info.default_templates
    values.update(subject=found.subject, text=found.text, html=found.html or "")
    return values, source


def _info(number: int):
    try:
        return catalogue.get(number)
    except KeyError:
        raise NotFound("There is no such message type.") from None


def _chosen_account() -> IncomingAccount | None:
    value = request.values.get("account", "")
    if not value:
        return None
    account = db.session.get(IncomingAccount, int(value)) if value.isdigit() else None
    if account is None:
        raise NotFound("There is no such incoming account.")
    return account


def _editor_url(info, account) -> str:
    if account is None:
        return url_for("admin.mail.template", number=info.number)
    return url_for("admin.mail.template", number=info.number, account=account.id)


def _sample(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M %Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return f"{len(value)} item{'' if len(value) == 1 else 's'}"
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "…"
