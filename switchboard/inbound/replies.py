"""Mail the pipeline sends back: rejections (saying why, listing the
accepted subjects), summaries of the sender's open items, and the link from
a bounce to the outgoing mail that bounced."""

from datetime import timedelta

import sqlalchemy as sa

from switchboard.calls.models import Call, CallStatus
from switchboard.db import db, utcnow
from switchboard.inbound.automated import is_never_answer_address
from switchboard.inbound.models import InboundMessage
from switchboard.outbox import catalogue
from switchboard.outbox.models import OutboxMessage
from switchboard.outbox.queue import find_by_message_ids, queue_mail
from switchboard.outbox.views import call_view, request_view, task_view
from switchboard.requests.models import Request, RequestStatus, Task, TaskStatus

# "never more than a few replies per sender per hour" (DESIGN.md)
REJECTIONS_PER_SENDER_PER_HOUR = 3


def queue_rejection(inbound, to_address: str | None, reason: str, subject: str) -> str:
    """Queues the rejection reply unless the address must never be answered
    or has had its share this hour. Returns what happened, for the log."""
    if not to_address or is_never_answer_address(to_address):
        return "no reply: the sender address is not one to answer"
    since = utcnow() - timedelta(hours=1)
    recent = db.session.scalar(
        sa.select(sa.func.count(OutboxMessage.id))
        .join(InboundMessage, OutboxMessage.inbound_id == InboundMessage.id)
        .where(
            OutboxMessage.message_type == catalogue.EMAIL_REJECTED,
            InboundMessage.from_address == to_address.lower(),
            OutboxMessage.created_at >= since,
        )
    )
    # Rejections queued in this transaction and not flushed yet (a batch in batched writes).
    recent += sum(1 for row in db.session.new if isinstance(row, OutboxMessage)
                  and row.message_type == catalogue.EMAIL_REJECTED and row.to == [to_address.strip().lower()])
    if recent >= REJECTIONS_PER_SENDER_PER_HOUR:
        return f"no reply: {to_address} had {recent} rejections in the last hour"
    queue_mail(
        catalogue.EMAIL_REJECTED,
        [to_address],
        template_key="email_rejected",
        context={"reason": reason, "original_subject": subject, "accepted_subjects": catalogue.ACCEPTED_SUBJECTS},
        inbound=inbound,
        in_reply_to=_bracketed(inbound.message_id),
        references=[_bracketed(inbound.message_id)] if inbound.message_id else None,
        with_token=False,
    )
    return "rejection reply queued"


def queue_summary(inbound, person, action: str) -> None:
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
        with_token=False,
    )


def attach_bounce(inbound, original_ids) -> None:
    row = find_by_message_ids(original_ids)
    if row is not None and row.bounce_inbound_id is None:
        row.bounced_at = utcnow()
        row.bounce_inbound_id = inbound.id


def _bracketed(message_id: str | None) -> str | None:
    return f"<{message_id.strip('<>')}>" if message_id else None
