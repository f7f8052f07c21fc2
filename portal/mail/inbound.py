"""The inbound log: every message that came in, newest first, filtered by
status, account, dates or text; one message opened (envelope, headers, the
parsed text, attachments, the raw .eml, its outcome and traceback); and
reprocessing a failed one.

Mail is hostile input. Its HTML is only ever shown inside a sandboxed
iframe, served from its own endpoint with a CSP that allows no script, no
form, no network; files and the raw message always download, never open."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from io import BytesIO

import sqlalchemy as sa
from flask import current_app, flash, make_response, redirect, render_template, request, send_file, url_for

from portal.admin.forms import ConfirmForm
from portal.attachments import safe_content_type
from portal.htmx import is_htmx, vary_on_htmx
from portal.mail.blueprint import PAGE_SIZE, bp
from portal.pagination import paginate
from switchboard.blobs import store
from switchboard.db import db
from switchboard.errors import InvalidTransition, NotFound
from switchboard.inbound.accounts import list_accounts
from switchboard.inbound.models import InboundMessage, InboundStatus
from switchboard.inbound.parse import parse_message, read_headers
from switchboard.inbound.process import process_batch
from switchboard.outbox.models import OutboxMessage

STATUSES = ["all"] + [s.value for s in InboundStatus]
STATUS_LABELS = {"all": "Any", "new": "New", "processed": "Processed", "ignored": "Ignored",
                 "rejected": "Rejected", "failed": "Failed"}
REPROCESSABLE = (InboundStatus.FAILED, InboundStatus.NEW)

# The mail's own HTML, already sanitised by the parser (nh3), in a sandbox on
# top: an opaque origin, no script, no forms, no requests (remote images are
# how senders learn a mail was read), and only our own pages may frame it.
MAIL_HTML_POLICY = "; ".join([
    "default-src 'none'",
    "style-src 'unsafe-inline'",
    "img-src data:",
    "sandbox",
    "frame-ancestors 'self'",
])
DOWNLOAD_POLICY = "default-src 'none'; sandbox"


@bp.get("/inbound")
def inbound():
    filters = _filters()
    query = _query(filters)
    found = paginate(query, PAGE_SIZE)
    template = "mail/_inbound_results.html" if is_htmx() else "mail/inbound.html"
    return vary_on_htmx(make_response(render_template(
        template,
        messages=found.items,
        **found.template_args(),
        filters=filters,
        statuses=STATUSES,
        status_labels=STATUS_LABELS,
        accounts=list_accounts(),
    )))


@bp.get("/inbound/<int:inbound_id>")
def inbound_message(inbound_id):
    message = _message(inbound_id)
    parsed = _reading(message)
    replies = db.session.scalars(
        sa.select(OutboxMessage)
        .where(sa.or_(OutboxMessage.inbound_id == message.id, OutboxMessage.bounce_inbound_id == message.id))
        .order_by(OutboxMessage.id)
    ).all()
    return render_template(
        "mail/inbound_message.html",
        message=message,
        parsed=parsed,
        replies=replies,
        reprocessable=message.status in REPROCESSABLE,
        confirm=ConfirmForm(formdata=None),
    )


@bp.get("/inbound/<int:inbound_id>/raw")
def inbound_raw(inbound_id):
    message = _message(inbound_id)
    # message/rfc822 would open in a mail client or the browser: plain bytes, as a file.
    return _download(_raw(message), "application/octet-stream", f"message-{message.id}.eml")


@bp.get("/inbound/<int:inbound_id>/html")
def inbound_html(inbound_id):
    message = _message(inbound_id)
    html = _reading(message).html
    if not html:
        raise NotFound("This message has no HTML part.")
    response = make_response(html)
    response.mimetype = "text/html"
    response.headers["Content-Security-Policy"] = MAIL_HTML_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/inbound/<int:inbound_id>/files/<int:number>")
def inbound_file(inbound_id, number):
    message = _message(inbound_id)
    # A download (not a page view) reads the message again for the file's bytes: parsing is
    # bounded (inbound.bounds), and the files are not kept twice.
    parsed = parse_message(_raw(message), _max_attachment_bytes())
    if not 1 <= number <= len(parsed.attachments):
        raise NotFound("The message has no such attachment.")
    part = parsed.attachments[number - 1]
    return _download(part.data, safe_content_type(part.content_type), part.filename or f"attachment-{number}")


@bp.post("/inbound/<int:inbound_id>/reprocess")
def reprocess(inbound_id):
    message = _message(inbound_id)
    form = ConfirmForm()
    if not form.validate_on_submit():
        return redirect(url_for("admin.mail.inbound_message", inbound_id=message.id), code=303)
    if message.status not in REPROCESSABLE:
        raise InvalidTransition(f"This message was {message.status.value}; only a failed one can be reprocessed.")
    results = process_batch([message.id], reprocess=True)
    db.session.commit()
    if not results:
        # Another processor (the receiver's sweep) took it a moment ago.
        flash("The message is being processed elsewhere right now; look again in a moment.", "error")
    elif results[0].status == "failed":
        flash(f"Failed again: {results[0].outcome}", "error")
    else:
        flash(f"Reprocessed: {results[0].status}. {results[0].outcome}")
    return redirect(url_for("admin.mail.inbound_message", inbound_id=message.id), code=303)


@dataclass(frozen=True)
class _Reading:
    """What the message page shows of a message's content."""

    headers: list
    text: str
    html: str | None
    attachments: list
    warnings: list
    from_name: str | None = None
    stored: bool = True  # False: read now, from before parse results were kept


def _reading(message: InboundMessage) -> _Reading:
    """The parse results kept when the message was acted on: a page view never parses a
    message (a hostile one cost 31 s a view). A message not yet acted on, or stored before
    these were kept, shows its headers only (read cheaply, bounded), never its parsed body."""
    if message.parsed_headers is not None:
        return _Reading(message.parsed_headers, message.parsed_text or "", message.parsed_html,
                        message.parsed_attachments or [], message.warnings or [], message.from_name)
    if message.raw_sha256 is None:  # pruned by housekeeping before it was ever read here
        return _Reading([], "", None, [], [], stored=False)
    return _Reading(read_headers(store.get(message.raw_sha256)), "", None, [], [], stored=False)


def _raw(message: InboundMessage) -> bytes:
    if message.raw_sha256 is None:
        raise NotFound("Housekeeping pruned this message's raw mail (past HOUSEKEEPING_RAW_MAIL_DAYS).")
    return store.get(message.raw_sha256)


def _message(inbound_id: int) -> InboundMessage:
    message = db.session.get(InboundMessage, inbound_id)
    if message is None:
        raise NotFound("There is no such inbound message.")
    return message


def _max_attachment_bytes() -> int:
    return current_app.config.get("MAX_ATTACHMENT_BYTES", 25 * 1024 * 1024)


def _download(data: bytes, mimetype: str, filename: str):
    response = send_file(BytesIO(data), mimetype=mimetype, as_attachment=True, download_name=filename, max_age=0)
    response.headers["Content-Security-Policy"] = DOWNLOAD_POLICY
    return response


def _filters() -> dict:
    status = request.args.get("status", "all")
    account = request.args.get("account", "")
    return {
        "status": status if status in STATUSES else "all",
        "account": account if account.isdigit() or account == "none" else "",
        "since": _day(request.args.get("since")),
        "until": _day(request.args.get("until")),
        "q": request.args.get("q", "").strip()[:200],
    }


def _day(value: str | None) -> str:
    try:
        return date.fromisoformat((value or "").strip()).isoformat()
    except ValueError:
        return ""


def _query(filters: dict):
    query = sa.select(InboundMessage).order_by(InboundMessage.id.desc())
    if filters["status"] != "all":
        query = query.where(InboundMessage.status == InboundStatus(filters["status"]))
    if filters["account"] == "none":
        query = query.where(InboundMessage.account_id.is_(None))
    elif filters["account"]:
        query = query.where(InboundMessage.account_id == int(filters["account"]))
    # Days are UTC days, as every time on the desk's pages is.
    if filters["since"]:
        query = query.where(InboundMessage.received_at >= _midnight(filters["since"]))
    if filters["until"]:
        query = query.where(InboundMessage.received_at < _midnight(filters["until"]) + timedelta(days=1))
    if filters["q"]:
        text = filters["q"]
        query = query.where(sa.or_(
            InboundMessage.subject.icontains(text, autoescape=True),
            InboundMessage.from_address.icontains(text, autoescape=True),
            InboundMessage.envelope_from.icontains(text, autoescape=True),
        ))
    return query


def _midnight(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=timezone.utc)
