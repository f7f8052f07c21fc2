"""The SLAs as each process keeps them: an SLA's targets, escalation levels and business
calendar (zone, hours, holidays) as plain values, read once and kept for PLAN_SECONDS, so an
action on a call under an SLA reads none of them (it read the SLA, its targets, levels,
calendar, hours and holidays: six statements an action). The clock (switchboard.slm.clock)
asks here; the admin pages and the sweep read the database.

The same rules as the mail settings' copy (switchboard.outbox.settings; both are a
switchboard.process_copy.ProcessCopy):
- a change made in this process (slm.admin: save_sla, save_calendar) is in force here as soon
  as its transaction commits: the writer drops the copy at the write and again when that
  transaction ends;
- every other process (portal worker, receiver, scheduler) sees it at most PLAN_SECONDS after
  the commit (its copy expires);
- the transaction that made a change reads the SLAs from the database until it ends, so it sees
  its own uncommitted change and no copy ever holds one."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import sqlalchemy as sa

from switchboard.db import db
from switchboard.process_copy import ProcessCopy
from switchboard.slm.calendars import TWENTY_FOUR_SEVEN, BusinessCalendar
from switchboard.slm.models import CalendarHoliday, CalendarHours, Sla, SlaCalendar, SlaLevel, SlaTarget, Target

PLAN_SECONDS = 5.0
_clock = time.monotonic  # the copy's age; a test moves it on
# The copy: sla id -> SlaPlan (None: no such SLA), filled as calls ask.
_plans = ProcessCopy("switchboard.slm.plans.written")


@dataclass(frozen=True)
class TargetPlan:
    """Business seconds to respond and to fix a call of one priority (None: no target)."""

    response_seconds: int | None
    fix_seconds: int | None

    def seconds(self, target: Target) -> int | None:
        return self.response_seconds if target is Target.RESPONSE else self.fix_seconds


@dataclass(frozen=True)
class LevelPlan:
    """An escalation level: at `percent` of a target (100: the breach)."""

    target: Target
    number: int
    percent: int

    @property
    def is_breach(self) -> bool:
        return self.percent >= 100

    def threshold(self, target_seconds: int) -> int:
        return -(-target_seconds * self.percent // 100)  # as SlaLevel.threshold: never early


@dataclass(frozen=True)
class SlaPlan:
    """What the clock needs of an SLA, with the methods of Sla it calls."""

    id: int
    targets: dict = field(hash=False)  # priority id -> TargetPlan
    levels: tuple  # LevelPlan, by target then number (as Sla.levels)
    calendar: BusinessCalendar

    def target_for(self, priority_id: int) -> TargetPlan | None:
        return self.targets.get(priority_id)

    def business_calendar(self) -> BusinessCalendar:
        return self.calendar


def plan(sla_id: int) -> SlaPlan | None:
    """The SLA's plan: from this process's copy, or from the database inside a transaction
    that changed an SLA or a calendar."""
    copy = _plans.get(dict, _clock, PLAN_SECONDS)
    if copy is None:
        return _load(sla_id)
    if sla_id not in copy:
        copy[sla_id] = _load(sla_id)
    return copy[sla_id]


def plan_of(call) -> SlaPlan | None:
    """The plan of the call's SLA, by its id: the SLA itself is not read. A call whose SLA was
    set in this transaction (logged, SLA changed) has it in the session; otherwise the column
    says which."""
    state = sa.inspect(call)
    if "sla" not in state.unloaded:
        sla = call.sla
        sla_id = sla.id if sla is not None else None
    else:
        sla_id = call.sla_id
    return plan(sla_id) if sla_id is not None else None


def forget_plans() -> None:
    """Drops this process's copy for the current database: the next read loads the plans again.
    For the writers (slm.admin), and for anything that changes the SLA tables behind them (a
    test emptying its database)."""
    _plans.forget()


def written() -> None:
    """A writer changed an SLA or a calendar: from here to the end of its transaction, plans are
    read from the database; the copy is dropped now and once more when the transaction ends."""
    _plans.written()


def _load(sla_id: int) -> SlaPlan | None:
    # Column reads, no ORM objects; pending rows of other tables cannot change the answer, so
    # nothing is flushed for it (the SLA tables are flushed by their writers).
    with db.session.no_autoflush:
        row = db.session.execute(
            sa.select(Sla.id, Sla.calendar_id, SlaCalendar.time_zone)
            .outerjoin(SlaCalendar, SlaCalendar.id == Sla.calendar_id)
            .where(Sla.id == sla_id)
        ).first()
        if row is None:
            return None
        targets = {
            t.priority_id: TargetPlan(t.response_seconds, t.fix_seconds)
            for t in db.session.execute(
                sa.select(SlaTarget.priority_id, SlaTarget.response_seconds, SlaTarget.fix_seconds)
                .where(SlaTarget.sla_id == sla_id))
        }
        levels = tuple(
            LevelPlan(lv.target, lv.number, lv.percent)
            for lv in db.session.execute(
                sa.select(SlaLevel.target, SlaLevel.number, SlaLevel.percent)
                .where(SlaLevel.sla_id == sla_id).order_by(SlaLevel.target, SlaLevel.number))
        )
        calendar = TWENTY_FOUR_SEVEN if row.calendar_id is None else _calendar(row.calendar_id, row.time_zone)
    return SlaPlan(row.id, targets, levels, calendar)


def _calendar(calendar_id: int, zone: str) -> BusinessCalendar:
    """As SlaCalendar.business_calendar(), from the hours and holidays' columns."""
    week = [[] for _ in range(7)]
    for span in db.session.execute(
            sa.select(CalendarHours.weekday, CalendarHours.start_minute, CalendarHours.end_minute)
            .where(CalendarHours.calendar_id == calendar_id)):
        week[span.weekday].append((span.start_minute, span.end_minute))
    holidays = db.session.execute(
        sa.select(CalendarHoliday.day, CalendarHoliday.yearly).where(CalendarHoliday.calendar_id == calendar_id)
    ).all()
    return BusinessCalendar(
        zone=zone,
        week=tuple(tuple(sorted(spans)) for spans in week),
        holidays=frozenset(h.day for h in holidays if not h.yearly),
        yearly=frozenset((h.day.month, h.day.day) for h in holidays if h.yearly),
    )
