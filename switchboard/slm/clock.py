"""A call's SLA clock: which SLA a call gets, its response and fix due times, and the instant
of its next escalation level (next_due_at, the one column the sweep looks at).

The rules (README "Service level management"):
- the SLA is the customer's default, else the assigned group's, else the desk's default SLA;
  the call's priority picks the targets within it;
- the clock runs while the call is Open; Pending, Open/Resolved and Closed stop it, and the
  business time used so far is kept, so the time left resumes when the call is Open again;
- the response target stops at the first response (calls.services: a staff note the customer
  can see, a mail to the customer, or resolving); resolving or closing stops both;
- a change of priority or SLA keeps the business time used and measures it against the new
  targets (levels already fired stay fired; levels the new targets put in the past fire at the
  next sweep).
Functions change the call and flush nothing; the calls service that calls them flushes."""

from __future__ import annotations

import functools
from datetime import datetime

import sqlalchemy as sa

from switchboard.calls.models import Call, CallStatus
from switchboard.db import db, transaction_cache, utcnow
from switchboard.slm.models import Sla, SlaFiring, Target
from switchboard.slm.plans import plan, plan_of


def choose_sla(call: Call) -> Sla | None:
    for owner in (call.customer, call.assigned_group):
        sla_id = getattr(owner, "default_sla_id", None)
        if sla_id is not None:
            sla = db.session.get(Sla, sla_id)
            if sla is not None and sla.active:
                return sla
    # Asked once per transaction: a batch of mail logs many calls.
    cache = transaction_cache()
    if "default_sla" not in cache:
        cache["default_sla"] = db.session.scalars(
            sa.select(Sla).where(Sla.is_default, Sla.active).order_by(Sla.id).limit(1)
        ).first()
    return cache["default_sla"]


def _unflushed(function):
    """Reading the SLA's parts (its targets, levels, calendar, the call's firings) must not
    flush the call's pending changes: each read would write them in an UPDATE of its own,
    when the calls service's one flush writes them together (what is read here is never
    pending in the session: SLAs are saved and flushed by the admin, firings by the sweep's
    INSERT)."""

    @functools.wraps(function)
    def unflushed(*args, **kwargs):
        with db.session.no_autoflush:
            return function(*args, **kwargs)

    return unflushed


@_unflushed
def call_logged(call: Call, now: datetime | None = None) -> None:
    """Starts the clock of a call just logged."""
    now = now or call.logged_at or utcnow()
    call.sla = choose_sla(call)
    call.sla_used_seconds = 0
    call.sla_level = 0
    call.sla_breached = False
    call.sla_clock_started_at = now if call.status is CallStatus.OPEN else None
    refresh(call, now, fired=())


@_unflushed
def status_changed(call: Call, old: CallStatus, new: CallStatus, now: datetime | None = None) -> None:
    now = now or utcnow()
    if old is CallStatus.OPEN and new is not CallStatus.OPEN:
        _stop(call, now)
    elif new is CallStatus.OPEN and old is not CallStatus.OPEN and call.sla_clock_started_at is None:
        call.sla_clock_started_at = now
    refresh(call, now)


@_unflushed
def responded(call: Call, now: datetime | None = None) -> None:
    """The response target stops (call.first_response_at is set by the caller)."""
    refresh(call, now or utcnow())


@_unflushed
def targets_changed(call: Call, now: datetime | None = None, *, sla: Sla | None | bool = False) -> None:
    """After a change of priority, or of SLA (`sla`: the new one, None for none): the business
    time used so far is kept and measured against the new targets."""
    now = now or utcnow()
    if sla is not False:
        running = call.sla_clock_started_at is not None
        if plan_of(call) is None and sla is not None:
            # No clock ran without an SLA: count from the logging on the new calendar.
            call.sla_used_seconds = int(plan(sla.id).business_calendar().between(call.logged_at, now))
            call.sla_clock_started_at = now if running or call.status is CallStatus.OPEN else None
        else:
            _stop(call, now)
            if running:
                call.sla_clock_started_at = now
        call.sla = sla
    refresh(call, now)


def used_seconds(call: Call, now: datetime) -> float:
    """Business seconds of the clock used by `now`."""
    used = float(call.sla_used_seconds or 0)
    sla = plan_of(call) if call.sla_clock_started_at is not None else None
    if sla is not None:
        used += sla.business_calendar().between(call.sla_clock_started_at, now)
    return used


def refresh(call: Call, now: datetime, fired=None) -> None:
    """Due times and next_due_at from the clock's state."""
    # The SLA's terms as this process keeps them (switchboard.slm.plans): no statement.
    sla = plan_of(call)
    # The priority object: a call logged inside batched writes has no priority_id until flushed.
    priority_id = call.priority.id if call.priority is not None else call.priority_id
    target = sla.target_for(priority_id) if sla is not None else None
    if target is None:
        call.response_due_at = call.fix_due_at = call.next_due_at = None
        return
    calendar = sla.business_calendar()
    start = call.sla_clock_started_at
    used = float(call.sla_used_seconds or 0)
    if call.status in (CallStatus.OPEN, CallStatus.PENDING):
        if call.first_response_at is None:
            call.response_due_at = _due(call.response_due_at, target.response_seconds, used, start, calendar)
        call.fix_due_at = _due(call.fix_due_at, target.fix_seconds, used, start, calendar)
    if start is None:
        call.next_due_at = None
        return
    if fired is None:
        fired = set()
        if call.id is not None:
            fired = set(db.session.execute(
                sa.select(SlaFiring.target, SlaFiring.level).where(SlaFiring.call_id == call.id)).all())
    call.next_due_at = next_level_at(call, sla, target, used, start, now, fired, calendar)


def next_level_at(call, sla, target, used, start, now, fired, calendar):
    """The instant of the earliest level not yet fired on a running target (a level whose
    share was used up while nobody swept fires at once: `now`)."""
    earliest = None
    for level in active_levels(sla, target, responded=call.first_response_at is not None):
        if (level.target, level.number) in fired:
            continue
        threshold = level.threshold(target.seconds(level.target))
        at = calendar.add(start, threshold - used) if threshold > used else now
        if earliest is None or at < earliest:
            earliest = at
    return earliest


def active_levels(sla, target, *, responded: bool) -> list:
    """`sla`: an Sla or its SlaPlan (switchboard.slm.plans): both list their levels."""
    return [level for level in sla.levels
            if target.seconds(level.target) is not None
            and not (level.target is Target.RESPONSE and responded)]


def _stop(call: Call, now: datetime) -> None:
    if call.sla_clock_started_at is None:
        return
    call.sla_used_seconds = int(used_seconds(call, now))
    call.sla_clock_started_at = None


def _due(current, seconds, used, start, calendar):
    if seconds is None:
        return None
    left = seconds - used
    if left <= 0:
        # Missed: keep when it was due, unless new targets put it earlier than that.
        known = [at for at in (current, start) if at is not None]
        return min(known) if known else None
    if start is None:
        return None  # stopped with time left: due again once the clock runs
    return calendar.add(start, left)
