"""The SLM sweep over many open calls: N open calls with SLAs bulk-inserted (untimed; half on
the 24x7 calendar, half on a London office calendar), of which --crossing have crossed a level
since the last sweep (a third of those two levels); then one `run_sweep` timed, which finds
them through the next_due_at index, fires their levels and queues their mail. Printed beside
the yardstick, measured in the same run on the same database: reading every open call's id
and due time as plain rows, less than a sweep that loops over every open call in Python must
do (it would also build and save each one). Medians of --runs runs; the sweep's work is undone between runs. Also prints
the query plan of the sweep's search for due calls.

    .venv/bin/python bench/slm.py [--calls 100000] [--crossing 1000] [--runs 3]
                                  [--database sqlite|postgresql|both]
    .venv/bin/python bench/slm.py --calls 1000000 --database postgresql --runs 1
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.poll import _database, _drop  # noqa: E402

# Wednesday 11:00 in London (10:00 UTC): inside the office calendar's hours.
NOW = datetime(2026, 6, 10, 10, 0, tzinfo=timezone.utc)
FIX_SECONDS = {1: 4 * 3600, 2: 8 * 3600, 3: 24 * 3600, 4: 72 * 3600}
RESPONSE_SECONDS = {1: 900, 2: 3600, 3: 4 * 3600, 4: 8 * 3600}
CHUNK = 10_000


def setup(url: str, calls: int, crossing: int) -> None:
    import sqlalchemy as sa
    from flask_migrate import upgrade

    from switchboard.calls.models import Call, CallStatus
    from switchboard.db import db
    from switchboard.people.services import create_group, create_person
    from switchboard.slm import admin
    from switchboard.slm.admin import LevelSpec
    from switchboard.slm.models import Target
    from tests.conftest import make_test_app

    app = make_test_app(url)
    with app.app_context():
        upgrade()
        boss = create_person("boss@desk.test", "Bea Boss", admin=True, customer=False)
        analysts = [create_person(f"analyst{i}@desk.test", f"Analyst {i}", analyst=True, customer=False)
                    for i in range(20)]
        groups = [create_group(f"Group {g}", members=analysts[g * 5:(g + 1) * 5]) for g in range(4)]
        customers = [create_person(f"customer{i}@example.org", f"Customer {i}") for i in range(200)]
        office = admin.save_calendar(boss, "London office", "Europe/London", {d: "08:00-18:00" for d in range(5)},
                                     [(datetime(2026, 12, 25).date(), "Christmas", True)])
        levels = [LevelSpec(50), LevelSpec(75), LevelSpec(90, group_members=True),
                  LevelSpec(100, escalation_person_id=boss.id)]
        targets = {p: (RESPONSE_SECONDS[p], FIX_SECONDS[p]) for p in FIX_SECONDS}
        slas = [admin.save_sla(boss, "Around the clock", targets=targets, is_default=True,
                               levels={Target.RESPONSE: levels, Target.FIX: levels}),
                admin.save_sla(boss, "Office hours", calendar_id=office.id, targets=targets,
                               levels={Target.RESPONSE: levels, Target.FIX: levels})]
        db.session.commit()
        calendars = [sla.business_calendar() for sla in slas]
        analyst_ids = [a.id for a in analysts]
        group_ids = [g.id for g in groups]
        customer_ids = [c.id for c in customers]
        rng = random.Random(7)
        crossing_at = set(rng.sample(range(calls), crossing))
        rows = []
        started = time.perf_counter()
        for i in range(calls):
            which = i % 2
            calendar, sla = calendars[which], slas[which]
            priority = 1 + i % 4
            fix = FIX_SECONDS[priority]
            responded = i % 3 != 0  # most calls have had their answer: only the fix clock runs
            if i in crossing_at:
                used = fix * (0.80 if i % 3 == 0 else 0.60)  # past 50% (and 75% for a third)
            else:
                used = fix * rng.uniform(0.0, 0.45)  # the next level is still ahead
            # Every clock (re)started a minute ago having used `used` business seconds: the
            # crossing calls' next level is due, the others' is ahead.
            start = NOW - timedelta(seconds=60)
            used_at_start = int(used)
            ahead = [t for t in (0.5 * fix, 0.75 * fix, 0.9 * fix, fix) if t > used_at_start]
            next_due = start if i in crossing_at else calendar.add(start, ahead[0] - used_at_start)
            rows.append({
                "summary": f"Bench call {i}", "description": "", "priority_id": priority,
                "status": CallStatus.OPEN, "customer_id": customer_ids[i % len(customer_ids)],
                "logged_by_id": analyst_ids[i % 20], "assigned_analyst_id": analyst_ids[i % 20],
                "assigned_group_id": group_ids[i % 4], "source": "portal",
                "logged_at": start - timedelta(seconds=used), "updated_at": start,
                "first_response_at": start if responded else None,
                "sla_id": sla.id, "sla_clock_started_at": start, "sla_used_seconds": used_at_start,
                "fix_due_at": calendar.add(start, max(1, fix - used_at_start)), "next_due_at": next_due,
                "sla_level": 0, "sla_breached": False,
            })
            if len(rows) == CHUNK:
                _insert(db, rows)
                rows = []
        if rows:
            _insert(db, rows)
        db.session.commit()
        print(f"  inserted {calls:,} open calls in {time.perf_counter() - started:.1f}s "
              f"({crossing:,} with a level crossed)", flush=True)
        _keep_due(db)
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
        else:
            db.session.execute(sa.text("ANALYZE"))
            db.session.commit()
        db.session.remove()
        db.engine.dispose()


def _insert(db, rows) -> None:
    """Many rows at once: COPY on PostgreSQL (a million rows in minutes, not hours), an
    executemany INSERT on SQLite."""
    import sqlalchemy as sa

    from switchboard.calls.models import Call

    if db.engine.dialect.name != "postgresql":
        db.session.execute(sa.insert(Call), rows)
        db.session.commit()
        return
    columns = list(rows[0])
    raw = db.session.connection().connection.driver_connection
    with raw.cursor() as cursor:
        with cursor.copy(f"COPY call ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([_plain(row[c]) for c in columns])
    db.session.commit()


def _plain(value):
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return getattr(value, "value", value)  # CallStatus is stored by its value


def _keep_due(db) -> None:
    import sqlalchemy as sa

    db.session.execute(sa.text("CREATE TABLE bench_due AS SELECT id, next_due_at FROM call WHERE next_due_at <= :now"),
                       {"now": NOW.replace(tzinfo=None)})
    db.session.commit()


def undo(db) -> None:
    """Puts back what one sweep changed, so the next run finds the same work."""
    import sqlalchemy as sa

    for statement in (
        "DELETE FROM sla_firing",
        "DELETE FROM history_entry WHERE kind = 'ESCALATION'",
        "DELETE FROM outbox_message",
        "UPDATE call SET sla_level = 0, sla_breached = false, next_due_at = "
        "(SELECT b.next_due_at FROM bench_due b WHERE b.id = call.id) WHERE id IN (SELECT id FROM bench_due)",
    ):
        db.session.execute(sa.text(statement))
    db.session.commit()


def one_database(kind: str, calls: int, crossing: int, runs: int) -> None:
    import sqlalchemy as sa

    from switchboard.calls.models import Call, CallStatus
    from switchboard.db import db
    from switchboard.slm.sweep import run_sweep
    from tests.conftest import make_test_app

    with tempfile.TemporaryDirectory(prefix="bench-slm-") as tmp:
        url, pg_name = _database(kind, tmp)
        try:
            print(f"{kind}:", flush=True)
            setup(url, calls, crossing)
            app = make_test_app(url)
            with app.app_context():
                sweeps, scans, report, plan = [], [], None, []
                for _ in range(runs):
                    undo(db)
                    db.session.remove()
                    plan = _plan(db)  # with the due calls in place, as the sweep finds them
                    db.session.rollback()
                    started = time.perf_counter()
                    report = run_sweep(NOW)
                    sweeps.append(time.perf_counter() - started)
                    db.session.remove()
                    started = time.perf_counter()
                    open_calls = db.session.execute(
                        sa.select(Call.id, Call.next_due_at).where(Call.status == CallStatus.OPEN)).all()
                    scans.append(time.perf_counter() - started)
                    assert len(open_calls) == calls
                    del open_calls
                    db.session.remove()
                sweep, scan = statistics.median(sweeps), statistics.median(scans)
                print(f"  sweep: {sweep:.3f}s median of {runs} ({', '.join(f'{s:.3f}' for s in sweeps)}); "
                      f"{report.summary()}")
                print(f"  yardstick, reading every open call's id and due time (no objects): {scan:.3f}s median "
                      f"({', '.join(f'{s:.3f}' for s in scans)}); sweep / yardstick = {sweep / scan:.3f}")
                print("  plan of the search for due calls:")
                for line in plan:
                    print(f"    {line}")
                db.session.remove()
                db.engine.dispose()
        finally:
            _drop(pg_name)


def _plan(db) -> list[str]:
    import sqlalchemy as sa

    from switchboard.calls.models import Call
    from switchboard.slm.models import SlaTarget

    query = (sa.select(Call.id, Call.sla_id, Call.sla_clock_started_at, Call.sla_used_seconds,
                       Call.first_response_at, Call.next_due_at, Call.response_due_at, Call.fix_due_at,
                       SlaTarget.response_seconds, SlaTarget.fix_seconds)
             .join(SlaTarget, sa.and_(SlaTarget.sla_id == Call.sla_id, SlaTarget.priority_id == Call.priority_id))
             .where(Call.next_due_at <= NOW, Call.sla_clock_started_at.is_not(None))
             .order_by(Call.next_due_at).limit(2000))
    compiled = query.compile(db.engine, compile_kwargs={"literal_binds": True})
    if db.engine.dialect.name == "postgresql":
        rows = db.session.execute(sa.text(f"EXPLAIN ANALYZE {compiled}")).all()
        return [r[0] for r in rows]
    rows = db.session.execute(sa.text(f"EXPLAIN QUERY PLAN {compiled}")).all()
    return [str(r[-1]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--crossing", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    print(f"bench/slm.py: {args.calls:,} open calls, {args.crossing:,} crossing; sweep at {NOW:%Y-%m-%d %H:%M} UTC",
          flush=True)
    for kind in (["sqlite", "postgresql"] if args.database == "both" else [args.database]):
        one_database(kind, args.calls, args.crossing, args.runs)


if __name__ == "__main__":
    main()
