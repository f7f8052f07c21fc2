"""The outbox monitor: every outgoing mail, newest first, filtered by status
and message type; one mail opened (recipients, what was sent or the template
it is written from, attempts, the servers' answers per recipient); and
requeue or cancel for mail that failed or waits."""

import json

import sqlalchemy as sa
from flask import flash, make_response, redirect, render_template, request, url_for

from portal.admin.forms import ConfirmForm
from portal.auth import current_person
from portal.forms import attempt
from portal.htmx import is_htmx, vary_on_htmx
from portal.mail.blueprint import PAGE_SIZE, bp
from portal.pagination import paginate
from switchboard.db import db
from switchboard.errors import NotFound
from switchboard.outbox import catalogue, settings
from switchboard.outbox.catalogue import MessageType
from switchboard.outbox.models import OutboxMessage, OutboxStatus

STATUSES = ["all"] + [s.value for s in OutboxStatus]
STATUS_LABELS = {"all": "Any", "queued": "Queued", "sending": "Sending", "sent": "Sent", "deferred": "Deferred",
                 "failed": "Failed", "cancelled": "Cancelled"}


@bp.get("/outbox")
def outbox():
    status = request.args.get("status", "all")
    kind = request.args.get("type", "")
    filters = {
        "status": status if status in STATUSES else "all",
        "type": kind if kind.isdigit() and int(kind) in set(MessageType) else "",
    }
    query = sa.select(OutboxMessage).order_by(OutboxMessage.id.desc())
    if filters["status"] != "all":
        query = query.where(OutboxMessage.status == OutboxStatus(filters["status"]))
    if filters["type"]:
        query = query.where(OutboxMessage.message_type == int(filters["type"]))
    found = paginate(query, PAGE_SIZE)
    template = "mail/_outbox_results.html" if is_htmx() else "mail/outbox.html"
    return vary_on_htmx(make_response(render_template(
        template,
        rows=found.items,
        **found.template_args(),
        filters=filters,
        statuses=STATUSES,
        status_labels=STATUS_LABELS,
        types=[catalogue.get(t) for t in MessageType],
        titles={int(t): catalogue.get(t).title for t in MessageType},
    )))


@bp.get("/outbox/<int:outbox_id>")
def outbox_message(outbox_id):
    row = _row(outbox_id)
    return render_template(
        "mail/outbox_message.html",
        row=row,
        info=_type_info(row),
        status_labels=STATUS_LABELS,
        variables=json.dumps(row.context, indent=2, ensure_ascii=False, sort_keys=True) if row.context else None,
        can_requeue=row.status in settings.REQUEUABLE,
        can_cancel=row.status in settings.CANCELLABLE,
        confirm=ConfirmForm(formdata=None),
    )


@bp.post("/outbox/<int:outbox_id>/<any(requeue, cancel):change>")
def outbox_change(outbox_id, change):
    row = _row(outbox_id)
    action = settings.requeue if change == "requeue" else settings.cancel
    if attempt(ConfirmForm(), lambda: action(row.id, current_person())) is not None:
        flash("Queued again: it goes out with the next send." if change == "requeue"
              else "Cancelled: it will not be sent.")
    return redirect(url_for("admin.mail.outbox_message", outbox_id=row.id), code=303)


def _row(outbox_id: int) -> OutboxMessage:
    row = db.session.get(OutboxMessage, outbox_id)
    if row is None:
        raise NotFound("There is no such outgoing mail.")
    return row


def _type_info(row: OutboxMessage):
    try:
        return catalogue.get(row.template_key or row.message_type)
    except KeyError:
        return None
