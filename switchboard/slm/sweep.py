"""The SLM sweep: finds every call that crossed an escalation level (or breached) since the last
sweep and, for each level crossed, once: a firing row, a timeline entry and the level's mail.

Set-based: one range scan of the next_due_at index finds the calls due (a call is found only
when a level of it is due, never because it is open), one INSERT ... ON CONFLICT DO NOTHING
writes the firings of a batch, and only the rows that INSERT reports as new go on to the
timeline and the outbox (so two sweeps at once fire each level once: the unique constraint on
(call, target, level) decides, not a check in Python). A late sweep fires every level a call
crossed meanwhile, in order. Work and memory are bounded by BATCH calls at a time, each batch
committed."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import selectinload

from switchboard.calls.models import Call
from switchboard.db import db, utcnow
from switchboard.history.models import EntryKind, HistoryEntry
from switchboard.slm.mail import queue_level_mail
from switchboard.slm.models import Sla, SlaCalendar, SlaFiring, SlaLevel, SlaTarget, Target

log = logging.getLogger(__name__)

BATCH = 2000  # calls per transaction


@dataclass
class SweepReport:
    calls: int = 0  # calls found with a level due
    escalations: int = 0
    breaches: int = 0
    mails: int = 0

    def summary(self) -> str:
        return (f"slm sweep: {self.calls} call(s) due, {self.escalations} escalation(s), "
                f"{self.breaches} breach(es), {self.mails} mail(s) queued")


@dataclass(frozen=True)
class Firing:
    call_id: int
    level: SlaLevel
    due_at: datetime | None  # when the target is (was) breached


def run_sweep(now: datetime | None = None, *, batch: int = BATCH) -> SweepReport:
    """Does the whole sweep, committing each batch; returns what it did."""
    now = now or utcnow()
    report = SweepReport()
    seen: set[int] = set()
    while True:
        rows = db.session.execute(
            sa.select(Call.id, Call.sla_id, Call.sla_clock_started_at, Call.sla_used_seconds,
                      Call.first_response_at, Call.next_due_at, Call.response_due_at, Call.fix_due_at,
                      SlaTarget.response_seconds, SlaTarget.fix_seconds)
            .join(SlaTarget, sa.and_(SlaTarget.sla_id == Call.sla_id, SlaTarget.priority_id == Call.priority_id))
            .where(Call.next_due_at <= now, Call.sla_clock_started_at.is_not(None))
            .order_by(Call.next_due_at)
            .limit(batch)
        ).all()
        fresh = [row for row in rows if row.id not in seen]
        if not fresh:
            db.session.commit()
            break
        seen.update(row.id for row in fresh)
        _sweep_batch(fresh, now, report)
        db.session.commit()
        if len(rows) < batch:
            break
    return report


def _sweep_batch(rows, now: datetime, report: SweepReport) -> None:
    slas = _load_slas({row.sla_id for row in rows})
    calendars = {sla_id: sla.business_calendar() for sla_id, sla in slas.items()}
    crossed: list[Firing] = []
    updates = []
    for row in rows:
        sla, calendar = slas[row.sla_id], calendars[row.sla_id]
        start, used = row.sla_clock_started_at, row.sla_used_seconds or 0
        used_now = used + calendar.between(start, now)
        next_at = None
        mine = []
        for level in sla.levels:
            seconds = row.response_seconds if level.target is Target.RESPONSE else row.fix_seconds
            if seconds is None or (level.target is Target.RESPONSE and row.first_response_at is not None):
                continue
            threshold = level.threshold(seconds)
            if threshold <= used_now:
                due = row.response_due_at if level.target is Target.RESPONSE else row.fix_due_at
                mine.append((threshold, level.target is Target.FIX, level.number, Firing(row.id, level, due)))
            else:
                at = calendar.add(start, threshold - used)
                next_at = at if next_at is None or at < next_at else next_at
        mine.sort(key=lambda item: item[:3])  # in the order they were crossed
        crossed.extend(item[3] for item in mine)
        updates.append({"b_id": row.id, "b_seen": row.next_due_at, "b_next": next_at})
    report.calls += len(rows)

    won = _insert_firings(crossed, now)
    fired = [f for f in crossed if (f.call_id, f.level.target, f.level.number) in won]
    level_reached: dict[int, int] = defaultdict(int)
    breached: set[int] = set()
    for firing in fired:
        if firing.level.is_breach:
            breached.add(firing.call_id)
            report.breaches += 1
        else:
            level_reached[firing.call_id] = max(level_reached[firing.call_id], firing.level.number)
            report.escalations += 1
    for update in updates:
        update["b_level"] = level_reached.get(update["b_id"], 0)
        update["b_breached"] = update["b_id"] in breached
    _write_timeline(fired, now)
    report.mails += queue_level_mail(fired, now)
    _update_calls(updates)


def _load_slas(ids) -> dict[int, Sla]:
    slas = db.session.scalars(
        sa.select(Sla).where(Sla.id.in_(ids)).options(
            selectinload(Sla.levels).selectinload(SlaLevel.escalation_person),
            selectinload(Sla.levels).selectinload(SlaLevel.escalation_group),
            selectinload(Sla.calendar).selectinload(SlaCalendar.hours),
            selectinload(Sla.calendar).selectinload(SlaCalendar.holidays),
        )
    ).all()
    return {sla.id: sla for sla in slas}


def _insert_firings(crossed: list[Firing], now: datetime) -> set[tuple]:
    """Inserts the firings; returns the (call, target, level) keys this sweep wrote (the
    others existed already: fired by an earlier or a concurrent sweep)."""
    if not crossed:
        return set()
    table = SlaFiring.__table__
    insert = postgresql.insert if db.engine.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["call_id", "target", "level"])
        .returning(table.c.call_id, table.c.target, table.c.level)
    )
    # One statement, sent many rows at a time (SQLAlchemy's "insertmanyvalues").
    rows = [{"call_id": f.call_id, "target": f.level.target, "level": f.level.number,
             "percent": f.level.percent, "fired_at": now} for f in crossed]
    return {(r.call_id, r.target, r.level) for r in db.session.execute(statement, rows)}


def _write_timeline(fired: list[Firing], now: datetime) -> None:
    if not fired:
        return
    dues: dict = {}
    db.session.execute(sa.insert(HistoryEntry.__table__), [_entry(f, now, dues) for f in fired])


def _entry(firing: Firing, now: datetime, dues: dict) -> dict:
    level = firing.level
    target = level.target.value
    due = dues.get(firing.due_at)
    if due is None:
        due = dues[firing.due_at] = (f" (due {firing.due_at:%Y-%m-%d %H:%M} UTC)" if firing.due_at else "")
    if level.is_breach:
        summary = f"SLA breach: the {target} target was missed{due}"
    else:
        summary = f"SLA escalation level {level.number}: {level.percent}% of the {target} target used{due}"
    return {
        "call_id": firing.call_id, "kind": EntryKind.ESCALATION, "author_id": None, "created_at": now,
        "summary": summary, "body": "", "internal": True, "sender_unverified": False,
        "details": {"target": target, "level": level.number, "percent": level.percent,
                    "breach": level.is_breach,
                    "due_at": firing.due_at.isoformat() if firing.due_at else None},
    }


def _update_calls(updates: list[dict]) -> None:
    """Moves each call's next_due_at on, unless the call changed meanwhile (a response, a
    status change: its own refresh then wrote the right value)."""
    if not updates:
        return
    c = Call.__table__.c
    statement = (
        sa.update(Call.__table__)
        .where(c.id == sa.bindparam("b_id"), c.next_due_at == sa.bindparam("b_seen"))
        .values(
            next_due_at=sa.bindparam("b_next"),
            sla_level=sa.case((c.sla_level < sa.bindparam("b_level"), sa.bindparam("b_level")),
                              else_=c.sla_level),
            sla_breached=sa.or_(c.sla_breached, sa.bindparam("b_breached", type_=sa.Boolean)),
        )
    )
    db.session.execute(statement, updates)
