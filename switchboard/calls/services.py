"""What can happen to a call. Each operation checks permission first (in
`switchboard.permissions`), changes the call, writes its timeline and
flushes; the caller (a web request, an inbound message, a job) commits."""

from switchboard.calls.models import DEFAULT_PRIORITY_ID, Call, CallStatus, Priority
from switchboard.db import db, flush, transaction_cache, utcnow
from switchboard.desk.routing import default_group
from switchboard.events import emit
from switchboard.errors import InvalidInput, InvalidTransition, NotFound
from switchboard.history.models import EntryKind
from switchboard.history.services import record
from switchboard.permissions import require
from switchboard.slm import clock

SUMMARY_MAX = 200


def get_call(call_id: int, actor=None) -> Call:
    call = db.session.get(Call, call_id)
    if call is None:
        raise NotFound(f"There is no call {call_id}.")
    if actor is not None:
        require(actor, "view_call", call)
    return call


def get_priority(priority_id: int | None) -> Priority:
    wanted = priority_id or DEFAULT_PRIORITY_ID
    # The priority form listed them all in this transaction (calls.admin.priorities): no
    # second read for the chosen one.
    listed = transaction_cache().get("priorities") or ()
    priority = next((p for p in listed if p.id == wanted), None) or db.session.get(Priority, wanted)
    if priority is None:
        raise InvalidInput(f"There is no priority {priority_id}.", field="priority")
    return priority


def log_call(
    actor,
    summary: str,
    description: str = "",
    *,
    customer=None,
    priority_id: int | None = None,
    analyst=None,
    group=None,
    source: str = "portal",
    attachments=(),
) -> Call:
    customer = customer or actor
    if customer is not actor:
        require(actor, "log_call_for_others")
    summary = " ".join((summary or "").split())
    if not summary:
        raise InvalidInput("A call needs a summary.", field="summary")
    if analyst is not None and not analyst.is_analyst:
        raise InvalidInput(f"{analyst.display_name} is not an analyst.", field="analyst")
    if analyst is None and group is None:
        group = default_group()  # nobody named: the desk's default, so it is in someone's My work
    now = utcnow()
    call = Call(
        summary=summary[:SUMMARY_MAX],
        description=description or "",
        priority=get_priority(priority_id),
        status=CallStatus.OPEN,
        customer=customer,
        logged_by=actor,
        assigned_analyst=analyst,
        assigned_group=group,
        source=source,
        logged_at=now,
        updated_at=now,
    )
    db.session.add(call)
    clock.call_logged(call, now)
    record(
        call,
        EntryKind.LOGGED,
        actor,
        f"Logged by {actor.display_name}" + (f" for {customer.display_name}" if customer is not actor else ""),
        description,
        details={"source": source, "priority": call.priority.name},
        attachments=attachments,
        flush=False,
    )
    if analyst or group:
        record(call, EntryKind.FORWARD, actor, _assignment_line(analyst, group), details=_assignment(analyst, group),
               flush=False)
    flush()  # the handlers of call_logged need its id (within batched writes it comes later)
    emit("call_logged", call=call, actor=actor)
    return call


def update_call(call: Call, actor, note: str, *, internal: bool = False, attachments=(), via: str = "portal",
                sender_verified: bool = True):
    """`sender_verified=False`: a note by mail whose From line had no proof
    (switchboard.inbound.trust); the timeline marks it and it changes no status."""
    require(actor, "update_call", call)
    if call.is_closed:
        raise InvalidTransition(f"{call.ref} is closed; reopen it to add to it.")
    note = (note or "").strip()
    if not note and not attachments:
        raise InvalidInput("Write a note or attach a file.", field="note")
    if internal and not actor.is_staff:
        internal = False  # customers cannot hide their own words from themselves
    kind = EntryKind.EMAIL_IN if via == "email" else EntryKind.NOTE
    entry = record(
        call,
        kind,
        actor,
        ("Internal note by " if internal else "Update by ") + actor.display_name
        + ("" if sender_verified else " (sender not verified)"),
        note,
        internal=internal,
        attachments=attachments,
        flush=False,  # _touch flushes below
    )
    entry.sender_unverified = not sender_verified
    if not internal:
        _responded(call, actor)  # an internal note is no answer to the customer
    # A customer writing on a call marked resolved means it is not fixed; a mail that may
    # be forged reopens nothing (an analyst reads the note and decides).
    if call.status is CallStatus.RESOLVED and not actor.is_staff and sender_verified:
        _set_status(call, actor, CallStatus.OPEN, "Reopened by the customer's update")
        call.resolved_at = None
    _touch(call)
    emit("call_updated", call=call, actor=actor, entry=entry, via=via)
    return entry


def forward_call(call: Call, actor, *, analyst=None, group=None, note: str = "", notify: bool | None = None):
    require(actor, "forward_call", call)
    if call.is_closed:
        raise InvalidTransition(f"{call.ref} is closed; reopen it before forwarding.")
    if analyst is None and group is None:
        raise InvalidInput("Choose an analyst or a group to forward to.", field="analyst")
    if analyst is not None and not (analyst.is_analyst and analyst.active):
        raise InvalidInput(f"{analyst.display_name} is not an active analyst.", field="analyst")
    if analyst is not None and group is not None and group not in analyst.groups:
        raise InvalidInput(f"{analyst.display_name} is not in {group.name}.", field="analyst")
    before = _assignment(call.assigned_analyst, call.assigned_group)
    # The form names the new owner in full: an analyst, a group, or both.
    call.assigned_analyst = analyst
    call.assigned_group = group
    after = _assignment(call.assigned_analyst, call.assigned_group)
    entry = record(
        call,
        EntryKind.FORWARD,
        actor,
        _assignment_line(call.assigned_analyst, call.assigned_group),
        note,
        details={"from": before, "to": after},
        flush=False,  # _touch flushes below
    )
    _touch(call)
    emit("call_forwarded", call=call, actor=actor, entry=entry, notify=notify)
    return entry


def resolve_call(call: Call, actor, resolution: str):
    require(actor, "resolve_call", call)
    if call.status not in (CallStatus.OPEN, CallStatus.PENDING):
        raise InvalidTransition(f"{call.ref} is {call.status.label}; only an open call can be resolved.")
    resolution = (resolution or "").strip()
    if not resolution:
        raise InvalidInput("Say how the call was resolved.", field="resolution")
    entry = _set_status(call, actor, CallStatus.RESOLVED, resolution)
    call.resolved_at = utcnow()
    _responded(call, actor)
    _touch(call)
    emit("call_resolved", call=call, actor=actor, entry=entry)
    return entry


def close_call(call: Call, actor, note: str = ""):
    require(actor, "close_call", call)
    if call.is_closed:
        raise InvalidTransition(f"{call.ref} is closed already.")
    entry = _set_status(call, actor, CallStatus.CLOSED, note)
    call.closed_at = utcnow()
    if call.resolved_at is None:
        call.resolved_at = call.closed_at
    _touch(call)
    emit("call_closed", call=call, actor=actor, entry=entry)
    return entry


def reopen_call(call: Call, actor, reason: str = ""):
    require(actor, "reopen_call", call)
    if call.status not in (CallStatus.RESOLVED, CallStatus.CLOSED):
        raise InvalidTransition(f"{call.ref} is {call.status.label}; only a resolved or closed call can be reopened.")
    entry = _set_status(call, actor, CallStatus.OPEN, reason)
    call.resolved_at = None
    call.closed_at = None
    _touch(call)
    emit("call_reopened", call=call, actor=actor, entry=entry)
    return entry


def hold_call(call: Call, actor, reason: str):
    """Pending: waiting on someone outside the desk; the SLA clock stops."""
    require(actor, "hold_call", call)
    if call.status is not CallStatus.OPEN:
        raise InvalidTransition(f"{call.ref} is {call.status.label}; only an open call can be put on hold.")
    if not (reason or "").strip():
        raise InvalidInput("Say what the call is waiting for.", field="reason")
    entry = _set_status(call, actor, CallStatus.PENDING, reason)
    _touch(call)
    return entry


def resume_call(call: Call, actor, note: str = ""):
    require(actor, "hold_call", call)
    if call.status is not CallStatus.PENDING:
        raise InvalidTransition(f"{call.ref} is not pending.")
    entry = _set_status(call, actor, CallStatus.OPEN, note)
    _touch(call)
    return entry


def change_priority(call: Call, actor, priority_id: int, reason: str = ""):
    require(actor, "change_call", call)
    new = get_priority(priority_id)
    if new.id == call.priority_id:
        return None
    old = call.priority
    call.priority = new
    clock.targets_changed(call)  # the new priority's targets, the business time used kept
    entry = record(
        call, EntryKind.CHANGE, actor, f"Priority {old.name} → {new.name}", reason,
        details={"field": "priority", "from": old.id, "to": new.id}, flush=False,
    )
    _touch(call)
    return entry


def change_sla(call: Call, actor, sla_id: int | None, reason: str = ""):
    """Puts the call on another SLA (None: none); its targets are recomputed with the business
    time used so far (switchboard.slm.clock)."""
    from switchboard.slm.models import Sla

    require(actor, "change_call", call)
    new = db.session.get(Sla, sla_id) if sla_id is not None else None
    if sla_id is not None and (new is None or not new.active):
        raise InvalidInput(f"There is no active SLA {sla_id}.", field="sla")
    if new is call.sla:
        return None
    old = call.sla
    clock.targets_changed(call, sla=new)
    entry = record(
        call, EntryKind.CHANGE, actor, f"SLA {old.name if old else 'none'} → {new.name if new else 'none'}", reason,
        details={"field": "sla", "from": old.id if old else None, "to": new.id if new else None}, flush=False,
    )
    _touch(call)
    return entry


def _set_status(call: Call, actor, new: CallStatus, text: str):
    """Changes the status and writes its entry, unflushed: every caller ends with _touch,
    whose one flush writes the call in one UPDATE (status, clock, updated_at) with the entry."""
    old = call.status
    call.status = new
    clock.status_changed(call, old, new)  # only an Open call's SLA clock runs
    return record(
        call,
        EntryKind.STATUS,
        actor,
        f"Status {old.label} → {new.label}",
        text or "",
        details={"from": old.value, "to": new.value},
        flush=False,
    )


def _responded(call: Call, actor) -> None:
    if call.first_response_at is None and actor.is_staff and actor.id != call.customer_id:
        call.first_response_at = utcnow()
        clock.responded(call)  # the response target stops


def _touch(call: Call) -> None:
    """The last step of every change: one flush for the call and its new entries."""
    call.updated_at = utcnow()
    flush()


def _assignment(analyst, group) -> dict:
    return {"analyst_id": analyst.id if analyst else None, "group_id": group.id if group else None}


def _assignment_line(analyst, group) -> str:
    parts = [p for p in (analyst.display_name if analyst else None, group.name if group else None) if p]
    return "Forwarded to " + " / ".join(parts) if parts else "Unassigned"
