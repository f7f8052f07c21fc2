"""Server time of the request pages at scale: bench/portal.py's database (calls, timeline
rows, 200 analysts, 20 groups) plus 20,000 requests with 3-5 tasks each, one request
with 5,000 timeline entries (and a task with 300), served by gunicorn as bench/portal.py
serves it; p50/p95 of the requests list, a search, a request's page, its "Older
entries" and the task actions (a note, a forward), one request at a time over loopback.

    .venv/bin/python bench/portal_requests.py [--database sqlite|postgresql|both] [--reps 30]
                                              [--calls 100000] [--entries 1000000]
                                              [--requests 20000]
                                              [--reuse sqlite=FILE.json,postgresql=FILE.json]
                                              [--tree DIR]

Like bench/portal.py it fills a database of its own (a temporary SQLite file, or a
PostgreSQL database dropped at the end) and touches nothing else. --reuse measures a
database filled before instead: a JSON file with its "url" and the ids fill_requests
returned (the database is used as it is; the task actions add entries to it). --tree
serves another checkout of the portal (e.g. `git archive` of an older commit) against
the same database, for before/after figures from one fill.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.poll import _database, _drop  # noqa: E402
from bench.portal import (  # noqa: E402
    ANALYSTS,
    CUSTOMERS,
    GROUPS,
    STYLESHEET,
    WORDS,
    Client,
    _chunks,
    _older_link,
    _p,
    _server_cpu_ms,
    fill,
    print_table,
    serve,
)

BIG_REQUEST, SMALL_REQUEST = 5_000, 50  # the timelines of the two requests measured on their own
BIG_TASK = 300  # one task of the big request has a timeline this long


def fill_requests(url: str, requests: int, seed: int = 7) -> dict:
    """Adds `requests` requests with 3-5 tasks each (an approval first, then actions, in
    stages) and their timelines to a database bench.portal.fill made. Analyst 1 (the one
    who logs in) owns the two measured requests, decides the approval of each and works
    their first action, so every task action fits. Returns the ids the measurements use."""
    import sqlalchemy as sa

    from switchboard.db import db
    from tests.conftest import make_test_app

    rng = random.Random(seed)
    app = make_test_app(url)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    started = time.perf_counter()
    with app.app_context():
        t = db.metadata.tables
        request_t, task_t, entry_t = t["service_request"], t["task"], t["history_entry"]
        with db.engine.connect() as conn:
            entry_id = conn.execute(sa.select(sa.func.coalesce(sa.func.max(entry_t.c.id), 0))).scalar()
        big_id, small_id = requests // 2, requests // 2 + 1
        request_rows, task_rows, entry_rows = [], [], []
        task_id = 0
        for r in range(1, requests + 1):
            created = now - timedelta(minutes=rng.randrange(2 * 365 * 24 * 60))
            updated = created + timedelta(minutes=rng.randrange(60 * 24 * 20))
            status = rng.choice(["open"] * 2 + ["in_progress"] * 2 + ["completed"] * 5 + ["rejected"])
            measured = r in (big_id, small_id)
            if measured:
                status = "in_progress"
            request_rows.append({
                "id": r, "title": " ".join(rng.sample(WORDS, 4)), "description": "What is needed. " * 5,
                "status": status, "requester_id": ANALYSTS + rng.randint(1, CUSTOMERS),
                "owner_id": 1 if measured else rng.randint(1, ANALYSTS), "created_at": created,
                "updated_at": updated, "completed_at": updated if status == "completed" else None,
            })
            entry_id += 1
            entry_rows.append({"id": entry_id, "request_id": r, "kind": "LOGGED", "author_id": rng.randint(1, ANALYSTS),
                               "created_at": created, "summary": "Raised", "body": "", "internal": False,
                               "sender_unverified": False, "details": None})
            for n in range(rng.randint(3, 5)):
                task_id += 1
                approval = n == 0
                if status == "completed":
                    task_status = "approved" if approval else "done"
                elif status == "rejected":
                    task_status = "rejected" if approval else "cancelled"
                elif status == "open":
                    task_status = "awaiting_decision" if approval else "pending"
                else:  # in progress: the approval given, stage 2 working
                    task_status = "approved" if approval else ("in_progress" if n == 1 else "pending")
                row = {
                    "id": task_id, "request_id": r, "stage": 1 if approval else n + 1,
                    "kind": "approval" if approval else "action", "title": " ".join(rng.sample(WORDS, 3)),
                    "description": "", "status": task_status,
                    "assigned_analyst_id": None if approval else rng.choice((None, rng.randint(1, ANALYSTS))),
                    "assigned_group_id": None if approval else rng.randint(1, GROUPS),
                    "approver_id": rng.randint(1, ANALYSTS) if approval else None,
                    "created_at": created, "started_at": created, "finished_at": None, "decided_at": None,
                    "decision_reason": None,
                }
                if measured:
                    # Analyst 1 decides the approval (waiting) and works stage 2.
                    row.update(status={0: "awaiting_decision", 1: "in_progress"}.get(n, "pending"),
                               approver_id=1 if approval else None, assigned_analyst_id=None if approval else 1)
                task_rows.append(row)
                for k in range(BIG_TASK if r == big_id and n == 1 else rng.randint(0, 2)):
                    entry_id += 1
                    entry_rows.append({
                        "id": entry_id, "task_id": task_id, "kind": "NOTE", "author_id": rng.randint(1, ANALYSTS),
                        "created_at": created + timedelta(minutes=1 + k), "summary": f"Task note {k}",
                        "body": "Worked on it. " * rng.randint(1, 4), "internal": False,
                        "sender_unverified": False, "details": None,
                    })
            extra = {big_id: BIG_REQUEST, small_id: SMALL_REQUEST}.get(r, rng.randint(0, 3))
            for k in range(extra):
                entry_id += 1
                entry_rows.append({
                    "id": entry_id, "request_id": r, "kind": rng.choice(["NOTE", "NOTE", "STATUS"]),
                    "author_id": rng.choice((rng.randint(1, ANALYSTS), None)),
                    "created_at": created + timedelta(minutes=1 + k, seconds=k % 60), "summary": f"Request note {k}",
                    "body": "Checked with the requester. " * rng.randint(1, 6), "internal": rng.random() < 0.2,
                    "sender_unverified": False, "details": None,
                })
        with db.engine.begin() as conn:
            for table, rows in ((request_t, request_rows), (task_t, task_rows), (entry_t, entry_rows)):
                for batch in _chunks(rows):
                    # Rows of one batch carry the same keys (an entry is a request's or a task's).
                    for keys in {tuple(sorted(row)) for row in batch}:
                        conn.execute(table.insert(), [row for row in batch if tuple(sorted(row)) == keys])
            if conn.dialect.name == "postgresql":
                for table in ("service_request", "task", "history_entry"):
                    conn.execute(sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                    ))
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
        else:
            with db.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        big_tasks = [row["id"] for row in task_rows if row["request_id"] == big_id]
        db.engine.dispose()
    print(f"  requests filled in {time.perf_counter() - started:.0f} s: {requests} requests, {len(task_rows)} tasks, "
          f"{len(entry_rows)} timeline rows", flush=True)
    return {"big_request": big_id, "small_request": small_id, "approval_task": big_tasks[0],
            "action_task": big_tasks[1]}


def measure(base: str, ids: dict, reps: int, master: int) -> list[tuple[str, list[float], int, int, float]]:
    client = Client(base)
    client.login()
    big, small, task = ids["big_request"], ids["small_request"], ids["action_task"]
    big_page = client.session.get(f"{base}/requests/{big}").text
    older = _older_link(big_page.split('id="timeline-h"', 1)[-1])
    found = STYLESHEET.search(big_page)
    stylesheet = (found.group(1) or found.group(2)) if found else "/static/desk.css"
    pages = [
        ("yardstick: a static file", stylesheet),
        ("requests list (open or in progress)", "/requests/"),
        ("requests list: any status", "/requests/?status=all"),
        ("requests list: mine", "/requests/?status=all&scope=mine"),
        ("search text 'printer' (any status)", "/requests/?status=all&q=printer"),
        (f"search reference REQ-{small}", f"/requests/?status=all&q=REQ-{small}"),
        (f"request page, {SMALL_REQUEST} timeline rows", f"/requests/{small}"),
        (f"request page, {BIG_REQUEST} timeline rows", f"/requests/{big}"),
    ]
    if older:
        pages.append((f"'older' on the {BIG_REQUEST}-row timeline (htmx)", older))
    results = []
    for label, path in pages:
        htmx = label.endswith("(htmx)")
        for _ in range(2):
            client.timed("GET", path, htmx=htmx)
        times = []
        cpu = _server_cpu_ms(master)
        for _ in range(reps):
            ms, status, size = client.timed("GET", path, htmx=htmx)
            assert status == 200, (label, path, status)
            times.append(ms)
        cpu = (_server_cpu_ms(master) - cpu) / reps
        results.append((label, times, status, size, cpu))
        print(f"  {label}: p50 {_p(times, 50):.1f} ms, p95 {_p(times, 95):.1f} ms, {size:,} bytes, "
              f"server CPU {cpu:.1f} ms", flush=True)

    # One round: a note on the big request's working task, then a forward of it (to analyst 1
    # again, so the next round finds it the same), as the page's forms post them.
    cycle = [
        ("task note", "note", {f"task{task}-note-note": "Bench note"}),
        ("task forward", "forward", {f"task{task}-forward-analyst": "1", f"task{task}-forward-group": "",
                                     f"task{task}-forward-note": "back to me"}),
    ]
    times = {label: [] for label, _, _ in cycle}
    spent = {label: 0.0 for label, _, _ in cycle}
    sizes = {}
    for i in range(reps + 1):
        for label, action, data in cycle:
            cpu = _server_cpu_ms(master)
            ms, status, size = client.timed("POST", f"/requests/tasks/{task}/{action}",
                                            data={**data, "csrf_token": client.token}, htmx=True)
            assert status == 200, (label, status)
            if i:  # the first round warms up
                times[label].append(ms)
                spent[label] += (_server_cpu_ms(master) - cpu) / reps
            sizes[label] = size
    for label, values in times.items():
        results.append((f"htmx action: {label}", values, 200, sizes[label], spent[label]))
        print(f"  htmx action {label}: p50 {_p(values, 50):.1f} ms, p95 {_p(values, 95):.1f} ms, "
              f"server CPU {spent[label]:.1f} ms", flush=True)
    return results


def one_database(kind: str, args) -> list:
    print(f"{kind}:", flush=True)
    tree = Path(args.tree).resolve() if args.tree else ROOT
    with tempfile.TemporaryDirectory(prefix="bench-requests-") as tmp:
        reused = dict(item.split("=", 1) for item in args.reuse.split(",")) if args.reuse else {}
        name = None
        if kind in reused:
            import json

            ids = json.loads(Path(reused[kind]).read_text())
            url = ids["url"]
        else:
            url, name = _database(kind, tmp)
        server = None
        try:
            if kind not in reused:
                fill(url, args.calls, args.entries)
                ids = fill_requests(url, args.requests)
            log = Path(tmp) / "gunicorn.log"
            server, base = serve(url, tree, log)
            try:
                return measure(base, ids, args.reps, server.pid)
            except BaseException:
                print(log.read_text()[-3000:], file=sys.stderr)
                raise
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
            _drop(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--reuse", help="measure databases filled before: sqlite=FILE.json,postgresql=FILE.json")
    parser.add_argument("--tree", help="the checkout of the portal to serve (default: this one)")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results = {kind: one_database(kind, args) for kind in kinds}
    print(f"\n{args.requests:,} requests (3-5 tasks each) beside {args.calls:,} calls and {args.entries:,} "
          f"timeline rows; gunicorn (1 worker, 16 threads) on loopback, one request at a time, {args.reps} each; "
          f"{os.cpu_count()} cores. ms, p50 / p95 (mean CPU of the portal's process per request); size of the answer")
    print_table(kinds, results)


if __name__ == "__main__":
    main()
