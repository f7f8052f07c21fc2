"""Mail the pipeline sends back: rejections (saying why, listing the
accepted subjects), summaries of the sender's open items, and the link from
a bounce to the outgoing mail that bounced."""

import sqlalchemy as sa

from switchboard.calls.models import Call, CallStatus
from switchboard.db import db, utcnow
from switchboard.outbox import catalogue, limits
from switchboard.outbox.queue import find_by_message_ids, queue_mail
from switchboard.outbox.views import call_view, request_view, task_view
from switchboard.requests.models import Request, RequestStatus, Task, TaskStatus

def queue_rejection(inbound, answering: limits.Answering, reason: str, subject: str) -> str:
    """Queues the rejection reply unless switchboard.outbox.limits holds it back (an address
    not to answer, or one that had its share). Returns what happened, for the log."""
    refusal = limits.permit(limits.REJECTION, answering)
    if refusal is not None:
        return refusal
    queue_mail(
        catalogue.EMAIL_REJECTED,
        [answering.address],
        template_key="email_rejected",
        context={"reason": reason, "original_subject": subject, "accepted_subjects": catalogue.ACCEPTED_SUBJECTS},
        inbound=inbound,
        in_reply_to=_bracketed(inbound.message_id),
        references=[_bracketed(inbound.message_id)] if inbound.message_id else None,
        with_token=False,
    )
    return "rejection reply queued"


def queue_summary(inbound, person, action: str) -> bool:
    """Queues the summary `action` asks for, unless switchboard.outbox.limits holds it back
    (then it says why on the message's outcome). True when queued."""
    answering = limits.answering_for(inbound=inbound) or limits.Answering(inbound.id, person.email)
    if limits.permit(limits.SUMMARY, answering, to=person.email) is not None:
        return False
    what = action.split("_", 1)[1]
    if what == "calls":
        rows = db.session.scalars(
            sa.select(Call).where(Call.customer_id == person.id, Call.status != CallStatus.CLOSED).order_by(Call.id)
        ).all()
        items = [call_view(c) for c in rows]
    elif what == "requests":
        rows = db.session.scalars(
            sa.select(Request)
            .where(Request.requester_id == person.id,
                   Request.status.in_([RequestStatus.OPEN, RequestStatus.IN_PROGRESS]))
            .order_by(Request.id)
        ).all()
        items = [request_view(r) for r in rows]
    else:
        rows = db.session.scalars(
            sa.select(Task)
            .where(
                sa.or_(Task.approver_id == person.id, Task.assigned_analyst_id == person.id),
                Task.status.in_([TaskStatus.IN_PROGRESS, TaskStatus.AWAITING_DECISION]),
            )
            .order_by(Task.id)
        ).all()
        items = [task_view(t) for t in rows]
    queue_mail(
        catalogue.SUMMARY_REPLY,
        [person.email],
        template_key="summary_reply",
        context=catalogue.snapshot({"kind": what, "items": items}),
        recipient_person=person,
        inbound=inbound,
        in_reply_to=_bracketed(inbound.message_id),
        references=[_bracketed(inbound.message_id)] if inbound.message_id else None,
        with_token=False,
    )
    return True


def attach_bounce(inbound, original_ids) -> None:
    row = find_by_message_ids(original_ids)
    if row is not None and row.bounce_inbound_id is None:
        row.bounced_at = utcnow()
        row.bounce_inbound_id = inbound.id


def _bracketed(message_id: str | None) -> str | None:
    return f"<{message_id.strip('<>')}>" if message_id else None
