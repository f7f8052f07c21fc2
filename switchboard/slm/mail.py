"""The mail of escalation levels: the SLA escalation level N and SLA breach message types, one
row per recipient in the outbox, under the same rules as every notification (the type switched
on, the admin's recipients for the type, inactive people and people who opted out left out;
switchboard.outbox.notify), and threaded under the call's last mail like queue_mail does.

Written many rows per statement: a sweep that finds thousands of calls queues their mail in
one INSERT, where queue_mail's one object and one thread look-up per mail would cost most of
the sweep."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.outbox import catalogue, settings
from switchboard.outbox.catalogue import MessageType, Recipient
from switchboard.outbox.compose import new_message_id, new_reply_token
from switchboard.outbox.models import OutboxMessage, OutboxStatus
from switchboard.outbox.notify import people_for
from switchboard.outbox.queue import mail_domain
from switchboard.outbox.views import call_view, snapshot
from switchboard.people.models import Group


def level_recipients(level, call: Call) -> list:
    """Who a level names for a call: its assigned analyst, its group's members, the named
    escalation analyst, the named escalation group's members."""
    people = []
    if level.notify_assigned_analyst and call.assigned_analyst is not None:
        people.append(call.assigned_analyst)
    group = call.assigned_group
    if level.notify_group_members and group is not None and group.active:
        people.extend(m for m in group.members if m.is_staff)
    if level.escalation_person is not None:
        people.append(level.escalation_person)
    if level.escalation_group is not None and level.escalation_group.active:
        people.extend(m for m in level.escalation_group.members if m.is_staff)
    return people


def queue_level_mail(fired, now: datetime) -> int:
    """Queues the mail of the firings (switchboard.slm.sweep.Firing); returns how many."""
    wanted = {t: settings.mail_wanted(t) for t in (MessageType.SLA_ESCALATION, MessageType.SLA_BREACH)}
    fired = [f for f in fired if wanted[_type(f.level)]]
    if not fired:
        return 0
    calls = {call.id: call for call in db.session.scalars(
        sa.select(Call).where(Call.id.in_({f.call_id for f in fired})).options(
            selectinload(Call.customer), selectinload(Call.logged_by), selectinload(Call.priority),
            selectinload(Call.assigned_analyst),
            selectinload(Call.assigned_group).selectinload(Group.members),
        ))}
    # The admin's recipients for the type besides the level's own ("escalation recipients").
    extra = {t: [r for r in settings.notification_rule(t).recipients if r is not Recipient.ESCALATION_RECIPIENTS]
             for t in wanted}
    chosen = []
    for firing in fired:
        call = calls[firing.call_id]
        type_ = _type(firing.level)
        people, seen = [], set()
        for person in level_recipients(firing.level, call) + people_for(extra[type_], call):
            if person is None or person.id in seen or not person.active or not person.email:
                continue
            seen.add(person.id)
            people.append(person)
        chosen.append((firing, call, type_, people))
    opted_out = settings.opted_out_ids(p.id for *_, people in chosen for p in people)
    parents = _thread_parents(calls)
    views = {call_id: snapshot(call_view(call)) for call_id, call in calls.items()}  # once per call
    domain = mail_domain()
    rows = []
    for firing, call, type_, people in chosen:
        info = catalogue.get(type_)
        variables = {"target": firing.level.target.value, "due_at": firing.due_at}
        if type_ is MessageType.SLA_ESCALATION:
            variables.update(level=firing.level.number, percent=firing.level.percent)
        context = {"call": views[call.id], **snapshot(variables)}
        parent = parents.get(call.id)
        for person in people:
            if person.id in opted_out:
                continue
            rows.append({
                "message_type": int(type_), "status": OutboxStatus.QUEUED, "to": [person.email.lower()],
                "template_key": info.key, "context": context, "automatic": True,
                "message_id": new_message_id(domain),
                "in_reply_to": parent[0] if parent else None,
                "references": ((parent[1] or []) + [parent[0]])[-20:] if parent else None,
                "reply_token": new_reply_token(), "recipient_person_id": person.id,
                "next_attempt_at": now, "created_at": now, "attempts": 0, "call_id": call.id,
            })
    if rows:
        db.session.execute(sa.insert(OutboxMessage.__table__), rows)
    return len(rows)


def _type(level) -> MessageType:
    return MessageType.SLA_BREACH if level.is_breach else MessageType.SLA_ESCALATION


def _thread_parents(calls) -> dict[int, tuple]:
    """Each call's latest mail (Message-ID, References), in one query."""
    latest = (sa.select(sa.func.max(OutboxMessage.id))
              .where(OutboxMessage.call_id.in_(list(calls)))
              .group_by(OutboxMessage.call_id))
    rows = db.session.execute(
        sa.select(OutboxMessage.call_id, OutboxMessage.message_id, OutboxMessage.references)
        .where(OutboxMessage.id.in_(latest))
    ).all()
    return {r.call_id: (r.message_id, r.references) for r in rows}
