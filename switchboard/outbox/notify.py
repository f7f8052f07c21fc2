"""Mail notifications: turns what the services report (switchboard.events) into outbox rows
of the catalogue's message types, in the same transaction as the change.

One row per person, so each mail greets its reader and carries a reply token issued to
them (an approval's token proves the approver got it). Never to the person who acted
(except a call's acknowledgement: it is the customer's receipt and the token they reply
with), never to inactive people, and only essential mail to people who opted out.
Importing this module subscribes it; switchboard.app.init_domain imports it."""

from __future__ import annotations

from collections.abc import Iterable

from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.events import subscribe
from switchboard.inbound.models import InboundMessage
from switchboard.outbox import catalogue, limits, settings
from switchboard.outbox.catalogue import MessageType, Recipient
from switchboard.outbox.queue import mark_new_record, queue_mail
from switchboard.outbox.views import call_view, person_view, request_view, snapshot, task_view
from switchboard.requests.models import Request, Task, TaskKind


def queue_notification(message_type, people: Iterable, *, record, variables: dict,
                       actor=None, mail_actor: bool = False, keep=None, limit=None, answers=None) -> list:
    """Queue one mail of `message_type` per person, about `record` (a Call, Task or
    Request), rendered at send time from `variables` (views or plain data). Leaves out
    the actor (unless `mail_actor`), inactive people, duplicates, people who opted
    out of mail that is not essential, anyone `keep(person)` says no to, and then whoever
    `limit(people)` leaves out of the list it is given (both asked last, so a limit counts
    only mail that would go). `answers`: (person, inbound message): that person's mail is
    a reply to the incoming mail and threads under it. Returns the rows queued. The SLM
    sweep can use this for escalations too."""
    info = catalogue.get(message_type)
    chosen = _mailable(info, people, actor, mail_actor)
    if keep is not None:
        chosen = [p for p in chosen if keep(p)]
    if limit is not None and chosen:
        chosen = limit(chosen)
    if not chosen:
        return []
    context = snapshot(variables)
    return [
        queue_mail(info.type, [person.email], record=record, recipient_person=person,
                   template_key=info.key, context=context,
                   **(_reply_to(answers[1]) if answers is not None and person is answers[0] else {}))
        for person in chosen
    ]


def _mailable(info, people: Iterable, actor, mail_actor: bool) -> list:
    """`people` without the actor (unless `mail_actor`), duplicates, inactive people,
    people without an address, and those who opted out of mail that is not essential."""
    chosen = []
    seen = set()
    for person in people:
        if person is None or person.id in seen or not person.active or not person.email:
            continue
        if actor is not None and person.id == actor.id and not mail_actor:
            continue
        seen.add(person.id)
        chosen.append(person)
    if chosen and info.type not in settings.ESSENTIAL_TYPES:
        opted_out = settings.opted_out_ids(p.id for p in chosen)
        chosen = [p for p in chosen if p.id not in opted_out]
    return chosen


def _reply_to(inbound) -> dict:
    """What threads a mail under the incoming mail it answers (In-Reply-To, References)."""
    if inbound is None or not inbound.message_id:
        return {"inbound": inbound} if inbound is not None else {}
    parent = f"<{inbound.message_id.strip('<>')}>"
    return {"inbound": inbound, "in_reply_to": parent, "references": [parent]}


def people_for(recipients: Iterable[Recipient], record) -> list:
    """The people a set of catalogue recipients means for a record. When both the
    assigned analyst and the group are wanted, an assigned analyst is enough: the group
    hears only of what nobody in particular owns."""
    wanted = set(recipients)
    analyst = getattr(record, "assigned_analyst", None)
    group = getattr(record, "assigned_group", None)
    people = []
    if Recipient.CUSTOMER in wanted and isinstance(record, Call):
        people.append(record.customer)
    if Recipient.ASSIGNED_ANALYST in wanted and analyst is not None:
        people.append(analyst)
    if (Recipient.GROUP_MEMBERS in wanted and group is not None and group.active
            and not (Recipient.ASSIGNED_ANALYST in wanted and analyst is not None)):
        people.extend(m for m in group.members if m.is_staff)
    request = record.request if isinstance(record, Task) else record if isinstance(record, Request) else None
    if Recipient.REQUEST_OWNER in wanted and request is not None:
        # The analyst who raised it, and the person it is for.
        people.extend([request.owner, request.requester])
    if Recipient.APPROVER in wanted and isinstance(record, Task):
        people.append(record.approver)
    if Recipient.ADMINS in wanted:
        from switchboard.people.models import Person

        people.extend(db.session.scalars(db.select(Person).where(Person.is_admin, Person.active)
                                         .order_by(Person.id)))
    return people


def _notify(message_type, record, actor, extra: dict | None = None, *, notify: bool | None = None,
            mail_actor: bool = False, keep=None, answers=None, reply_to=None) -> list:
    """The common path: the admin's on/off and recipients for the type, then queue.
    `notify` True/False is an analyst's explicit choice (the forward form); None means
    the settings decide. `reply_to`: the person whose copy is an automatic reply to the
    incoming mail (limited by `keep`), not staff mail even when they are staff."""
    if notify is False:
        return []
    if notify is None and not settings.mail_wanted(message_type):
        return []
    rule = settings.notification_rule(message_type)
    if isinstance(record, Call):
        variables = {"call": call_view(record)}
    else:
        variables = {"task": task_view(record), "request": request_view(record.request)}
    variables.update(extra or {})
    return queue_notification(message_type, people_for(rule.recipients, record), record=record,
                              variables=variables, actor=actor, mail_actor=mail_actor, keep=keep,
                              limit=_staff_mail_limit(record, actor, reply_to), answers=answers)


def _staff_mail_limit(record, actor, reply_to=None):
    """When an incoming mail caused this notification (the mail being acted on; in batched
    writes, where handlers run after the batch, the mail that named the record), the limits
    on staff mail decide whether it tells the staff it would mail (all of them or none, once
    per notification; limits.permit_staff_mail): the desk-wide hourly cap, whoever sent it,
    and for a customer's mail on a call also their per-address limit. Staff whose mail a
    person's action in the portal or the scheduler causes are mailed as before (None)."""
    answering = limits.answering_now() or limits.answering_for(record)
    if answering is None:
        return None
    # Staff writing by mail need proof and may work by mail all day: only the desk-wide cap.
    sender = (actor.email if isinstance(record, Call) and actor is not None and not actor.is_staff
              and actor.email else None)

    def limit(people):
        staff = [p for p in people if p.is_staff and p is not reply_to]
        if not staff or limits.permit_staff_mail(answering, [p.email for p in staff], sender) is None:
            return people
        return [p for p in people if not any(p is s for s in staff)]

    return limit


def _text(entry) -> str:
    return (getattr(entry, "body", None) or "").strip()


# -- the events -------------------------------------------------------------------------------

def on_call_logged(call, actor, **_):
    mark_new_record(call)  # logged just now: no earlier mail to thread under
    answering = limits.answering_for(call)
    keep = answers = reply_to = None
    if answering is not None:
        reply_to = call.customer
        # Logged by mail: the customer's copy is an automatic reply to that mail, so the
        # reply limits decide (staff the rule names are told within the limits on staff
        # mail), and it threads under that mail in the customer's client.
        def keep(person):
            return person is not call.customer or limits.permit(
                limits.ACKNOWLEDGEMENT, answering, to=person.email) is None

        if answering.inbound_id is not None:
            answers = (call.customer, db.session.get(InboundMessage, answering.inbound_id))
    _notify(MessageType.CALL_LOGGED, call, actor, mail_actor=True, keep=keep, answers=answers, reply_to=reply_to)


def on_call_updated(call, actor, entry=None, via="portal", **_):
    update = {"update": {
        "author": person_view(actor), "text": _text(entry),
        "attachment_count": len(getattr(entry, "attachments", None) or []),
    }}
    if via == "email":
        _notify(MessageType.CALL_UPDATED_BY_EMAIL, call, actor, update)
    elif desk_note_mailed(entry, actor):
        _notify(MessageType.CALL_UPDATED_BY_DESK, call, actor, update)


def desk_note_mailed(entry, actor) -> bool:
    """A note the desk mails: written by staff for the customer to see. An internal note
    never leaves the desk, and a customer's own note is not mailed back to them."""
    return entry is not None and not entry.internal and actor is not None and actor.is_staff


def told_of_a_desk_note(call, actor) -> list:
    """Who a customer-visible note `actor` adds to `call` would be mailed to now (the note
    form says so): the type's switch and recipients, leaving out the actor, inactive
    people, people without an address and those who opted out."""
    if not settings.mail_wanted(MessageType.CALL_UPDATED_BY_DESK):
        return []
    rule = settings.notification_rule(MessageType.CALL_UPDATED_BY_DESK)
    return _mailable(catalogue.get(MessageType.CALL_UPDATED_BY_DESK), people_for(rule.recipients, call),
                     actor, False)


def on_call_forwarded(call, actor, entry=None, notify=None, **_):
    _notify(MessageType.CALL_FORWARDED, call, actor,
            {"forwarded_by": person_view(actor), "note": _text(entry)}, notify=notify)


def on_call_resolved(call, actor, entry=None, **_):
    _notify(MessageType.CALL_RESOLVED, call, actor, {"resolution": _text(entry)})


def on_call_closed(call, actor, entry=None, **_):
    _notify(MessageType.CALL_CLOSED, call, actor)


def on_call_reopened(call, actor, entry=None, **_):
    _notify(MessageType.CALL_REOPENED, call, actor,
            {"reopened_by": person_view(actor), "reason": _text(entry)})


def on_task_started(task, actor, **_):
    if task.kind is TaskKind.APPROVAL:
        # The row's token is bound to the approver and the task: a reply carrying it is
        # the proof the inbound pipeline accepts for "Approve task N" by mail.
        _notify(MessageType.APPROVAL_REQUESTED, task, actor)


def on_task_forwarded(task, actor, entry=None, notify=None, **_):
    _notify(MessageType.TASK_FORWARDED, task, actor,
            {"forwarded_by": person_view(actor), "note": _text(entry)}, notify=notify)


def on_task_decided(task, actor, entry=None, **_):
    _notify(MessageType.APPROVAL_DECIDED, task, actor, {
        "decision": task.status.value, "decided_by": person_view(actor),
        "reason": task.decision_reason or "",
    })


HANDLERS = {
    "call_logged": on_call_logged,
    "call_updated": on_call_updated,
    "call_forwarded": on_call_forwarded,
    "call_resolved": on_call_resolved,
    "call_closed": on_call_closed,
    "call_reopened": on_call_reopened,
    "task_started": on_task_started,
    "task_forwarded": on_task_forwarded,
    "task_decided": on_task_decided,
}


def subscribe_all() -> None:
    for event, handler in HANDLERS.items():
        subscribe(event, handler)  # idempotent


subscribe_all()
