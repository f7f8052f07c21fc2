"""Server time of the portal at scale: fills a fresh database of its own with
100,000 calls, 1,000,000 timeline rows, 200 analysts and 20 groups (bulk
inserts), serves it with gunicorn as `make run` does (1 worker, 16 threads, a
process of its own), and measures p50/p95 of each page and htmx action from a
client over loopback, one request at a time. The yardstick, measured in the
same run against the same server: a static file (no database, no template). Beside the
wall times, the CPU the portal's process spent per request (what a busy machine does not
inflate; PostgreSQL's own CPU is in the wall time only).

    .venv/bin/python bench/portal.py [--database sqlite|postgresql|both] [--reps 30]
                                     [--action-reps N] [--calls 100000] [--entries 1000000]
                                     [--reuse]

Pages are asked for round robin (each round asks for every page once), so a noisy
stretch of a shared machine lands on all of them alike.

Nothing here touches the test database: SQLite gets a file in a temporary
folder, PostgreSQL a database of its own (bench/poll.py's), dropped at the end;
with --reuse both are kept for the next run (filling takes a minute or two).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import PG_ADMIN_URL  # noqa: E402
from bench.poll import _database, _drop  # noqa: E402  (a fresh database of the bench's own)

PASSWORD = "bench-password-1"
ANALYSTS, GROUPS, CUSTOMERS = 200, 20, 10_000
BIG, SMALL = 5_000, 50  # the timelines of the two calls measured on their own
WORDS = (
    "printer jams paper tray floor vpn drops laptop screen flickers mailbox full password expired "
    "invoice portal slow badge reader door wifi meeting room projector cable licence renewal "
    "keyboard sticky phone voicemail backup failed disk warning calendar sync shared drive access"
).split()
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
STYLESHEET = re.compile(r'<link[^>]+rel="stylesheet"[^>]+href="([^"]+)"|<link[^>]+href="([^"]+)"[^>]+rel="stylesheet"')


# -- the database ------------------------------------------------------------------------------


def _chunks(rows, size=20_000):
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def fill(url: str, calls: int, entries: int, seed: int = 42) -> dict:
    """Migrates and fills the database with Core bulk inserts (columns every version of the
    schema has; the others take their defaults). Returns the ids the measurements use."""
    import sqlalchemy as sa
    from flask_migrate import upgrade
    from werkzeug.security import generate_password_hash

    from switchboard.db import db
    from tests.conftest import make_test_app

    rng = random.Random(seed)
    app = make_test_app(url)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with app.app_context():
        upgrade()
        t = db.metadata.tables
        person, group, membership = t["person"], t["analyst_group"], t["group_membership"]
        call, entry, attachment, blob = t["call"], t["history_entry"], t["attachment"], t["blob"]
        hashed = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
        started = time.perf_counter()
        with db.engine.begin() as conn:
            conn.execute(group.insert(), [{"id": g, "name": f"Group {g:02d}", "active": True}
                                          for g in range(1, GROUPS + 1)])
            people = [
                {"id": a, "email": f"analyst{a}@desk.test", "name": f"Analyst {a:03d}", "is_customer": False,
                 "is_analyst": True, "is_admin": a == 1, "active": True, "password_hash": hashed,
                 "session_version": 1, "created_at": now}
                for a in range(1, ANALYSTS + 1)
            ] + [
                {"id": ANALYSTS + c, "email": f"customer{c}@example.org", "name": f"Customer {c}",
                 "is_customer": True, "is_analyst": False, "is_admin": False, "active": True,
                 "password_hash": None, "session_version": 1, "created_at": now}
                for c in range(1, CUSTOMERS + 1)
            ]
            for batch in _chunks(people):
                conn.execute(person.insert(), batch)
            conn.execute(membership.insert(), [
                {"group_id": g, "person_id": a}
                for a in range(1, ANALYSTS + 1) for g in {1 + a % GROUPS, 1 + (a * 7) % GROUPS}
            ])
            blobs = []
            for i in range(20):
                data = f"bench attachment {i}\n".encode() * (50 + i * 40)
                sha = hashlib.sha256(data).hexdigest()
                blobs.append(sha)
                conn.execute(blob.insert(), {"sha256": sha, "size": len(data), "data": data, "created_at": now})

            statuses = ["open"] * 20 + ["pending"] * 5 + ["resolved"] * 10 + ["closed"] * 65
            call_rows = []
            for c in range(1, calls + 1):
                logged = now - timedelta(minutes=rng.randrange(2 * 365 * 24 * 60))
                unassigned = rng.random() < 0.1
                call_rows.append({
                    "id": c, "summary": " ".join(rng.sample(WORDS, 4)), "description": "A problem. " * 10,
                    "priority_id": rng.randint(1, 4), "status": rng.choice(statuses),
                    "customer_id": ANALYSTS + rng.randint(1, CUSTOMERS), "logged_by_id": rng.randint(1, ANALYSTS),
                    "assigned_analyst_id": None if unassigned else rng.randint(1, ANALYSTS),
                    "assigned_group_id": rng.randint(1, GROUPS), "source": "email",
                    "logged_at": logged, "updated_at": logged + timedelta(minutes=rng.randrange(60 * 24 * 30)),
                })
            # The two measured calls are open, assigned to analyst 1 (the one who logs in).
            big_id, small_id = calls // 2, calls // 2 + 1
            for c in (big_id, small_id):
                call_rows[c - 1].update(status="open", assigned_analyst_id=1)
            for batch in _chunks(call_rows):
                conn.execute(call.insert(), batch)

            # The timeline rows: the two measured calls get theirs, the rest share what is left.
            def owners():
                yield from [big_id] * BIG
                yield from [small_id] * SMALL
                others = entries - BIG - SMALL
                for i in range(others):
                    c = 1 + i * calls // others
                    yield c if c not in (big_id, small_id) else 1

            # EntryKind is stored by name, CallStatus by value.
            kinds = ["NOTE"] * 6 + ["EMAIL_IN"] * 2 + ["EMAIL_OUT", "STATUS", "FORWARD"]
            entry_id = 0
            attach_rows = []
            for batch in _chunks(owners()):
                rows = []
                for owner in batch:
                    entry_id += 1
                    created = now - timedelta(minutes=rng.randrange(365 * 24 * 60), seconds=entry_id % 60)
                    rows.append({
                        "id": entry_id, "call_id": owner, "kind": rng.choice(kinds),
                        "author_id": rng.choice((rng.randint(1, ANALYSTS), None)), "created_at": created,
                        "summary": "Note added", "body": "Checked with the customer. " * rng.randint(1, 8),
                        "internal": rng.random() < 0.2, "sender_unverified": False, "details": None,
                    })
                    # One entry in ten on the measured calls has a file, one in fifty elsewhere.
                    if rng.random() < (0.1 if owner in (big_id, small_id) else 0.02):
                        sha = rng.choice(blobs)
                        attach_rows.append({"entry_id": entry_id, "blob_sha256": sha, "filename": "log.txt",
                                            "content_type": "text/plain", "size": 1000, "content_id": None})
                conn.execute(entry.insert(), rows)
            for batch in _chunks(attach_rows):
                conn.execute(attachment.insert(), batch)
            if conn.dialect.name == "postgresql":
                # Rows inserted with explicit ids: move the sequences past them.
                for table in ("person", "analyst_group", "call", "history_entry", "attachment"):
                    conn.execute(sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                    ))
        if db.engine.dialect.name == "postgresql":
            # What autovacuum does to a database this size within minutes.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
        # The keyset of the first call on page 1000 of "all calls" (newest update first), for
        # the keyset equivalent of ?page=1000.
        page = min(1000, calls // 50)
        with db.engine.connect() as conn:
            row = conn.execute(sa.text(
                f"SELECT id, updated_at FROM call ORDER BY updated_at DESC, id DESC LIMIT 1 OFFSET {(page - 1) * 50 - 1}"
            )).first()
        db.engine.dispose()
    print(f"  filled in {time.perf_counter() - started:.0f} s: {calls} calls, {entries} timeline rows, "
          f"{len(attach_rows)} attachments", flush=True)
    return {"big": big_id, "small": small_id, "page": page, "last_before_page": tuple(row), "calls": calls,
            "entries": entries}


# -- the server --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(url: str, tree: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "bench-secret-key", "SESSION_COOKIE_SECURE": "false",
           "LOGIN_RATE_LIMIT": "1000 per minute"}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "16",
         "--no-control-socket",
         "wsgi:create_app()"],
        cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    import requests

    for _ in range(600):
        try:
            requests.get(base + "/login", timeout=120)
            return server, base
        except requests.RequestException:
            if server.poll() is not None:
                raise SystemExit("gunicorn ended: " + log.read_text()[-2000:])
            time.sleep(0.1)
    server.terminate()
    server.wait(30)
    raise SystemExit("gunicorn did not answer")


# -- the measurements --------------------------------------------------------------------------


class Client:
    def __init__(self, base: str):
        import requests

        self.base = base
        self.session = requests.Session()
        self.token = None

    def login(self):
        page = self.session.get(self.base + "/login").text
        token = CSRF.search(page).group(1)
        r = self.session.post(self.base + "/login", data={"email": "analyst1@desk.test", "password": PASSWORD,
                                                          "csrf_token": token}, allow_redirects=False)
        assert r.status_code in (302, 303), r.status_code
        self.token = CSRF.search(self.session.get(self.base + "/").text).group(1)

    def timed(self, method: str, path: str, data=None, htmx=False) -> tuple[float, int, int]:
        """One request as a browser sends it (a same-origin fetch that takes brotli or gzip:
        the portal compresses pages only for those), timed until the body is read and
        decoded. The size returned is what went over the wire."""
        headers = {"Sec-Fetch-Site": "same-origin", "Accept-Encoding": "br, gzip"}
        if htmx:
            headers.update({"HX-Request": "true", "X-CSRFToken": self.token})
        started = time.perf_counter()
        r = self.session.request(method, self.base + path, data=data, headers=headers, allow_redirects=False)
        body = r.content
        elapsed = (time.perf_counter() - started) * 1000
        return elapsed, r.status_code, int(r.headers.get("Content-Length") or len(body))


def _older_link(html: str) -> str | None:
    """The "older" control of a paged timeline, if this version of the portal has one."""
    match = re.search(r'hx-get="([^"]*before=[^"]*)"', html) or re.search(r'href="([^"]*before=[^"]*)"', html)
    return match.group(1).replace("&amp;", "&") if match else None


def _next_link(html: str) -> str | None:
    match = re.search(r'<a [^>]*href="([^"]+)"[^>]*rel="next"', html)
    return match.group(1).replace("&amp;", "&") if match else None


def _server_cpu_ms(master: int) -> float:
    """CPU the gunicorn worker(s) have used so far (Linux /proc): what serving cost, apart
    from the waiting a busy machine adds to the wall time."""
    total = 0
    for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total * 1000 / os.sysconf("SC_CLK_TCK")


def measure(base: str, ids: dict, reps: int, master: int, action_reps: int) -> list[tuple[str, list[float], int, int, float]]:
    client = Client(base)
    client.login()
    big, small = ids["big"], ids["small"]
    home = client.session.get(base + "/").text
    found = STYLESHEET.search(home)
    stylesheet = (found.group(1) or found.group(2)) if found else "/static/desk.css"

    # Page 1000 of all calls: by number where the portal pages by number; where it pages by
    # keyset, the URL its "Next" link gives after the 999th page's last call.
    first = client.session.get(base + "/calls/?status=all").text
    nxt = _next_link(first) or ""
    if "page=" in nxt:
        page_1000 = f"/calls/?status=all&page={ids['page']}"
    else:
        last_id, last_updated = ids["last_before_page"]
        page_1000 = _keyset_url(nxt, last_id, last_updated)
    big_page = client.session.get(f"{base}/calls/{big}").text
    older = _older_link(big_page)

    pages = [
        ("yardstick: a static file", stylesheet),
        ("My work", "/"),
        ("calls list (not closed)", "/calls/"),
        ("calls list: open, mine", "/calls/?status=open&scope=mine"),
        ("calls list: any status, my groups", "/calls/?status=all&scope=groups"),
        ("calls list: closed", "/calls/?status=closed"),
        ("search text 'printer' (any status)", "/calls/?status=all&q=printer"),
        ("search reference CALL-42039", "/calls/?status=all&q=CALL-42039"),
        (f"page {ids['page']} of all calls", page_1000),
        (f"call page, {SMALL} timeline rows", f"/calls/{small}"),
        (f"call page, {BIG} timeline rows", f"/calls/{big}"),
    ]
    if older:
        pages.append((f"'older' on the {BIG}-row timeline (htmx)", older))
    # Round robin: every round asks for each page once, so a noisy stretch of this shared
    # machine lands on all pages alike instead of on whichever page was being measured.
    for label, path in pages:  # warm the caches of the server and the database
        for _ in range(2):
            client.timed("GET", path, htmx=label.endswith("(htmx)"))
    times = {label: [] for label, _ in pages}
    cpus = {label: 0.0 for label, _ in pages}
    sizes = {}
    for _ in range(reps):
        for label, path in pages:
            cpu = _server_cpu_ms(master)
            ms, status, size = client.timed("GET", path, htmx=label.endswith("(htmx)"))
            cpus[label] += (_server_cpu_ms(master) - cpu) / reps
            assert status == 200, (label, path, status)
            times[label].append(ms)
            sizes[label] = size
    results = []
    for label, _ in pages:
        results.append((label, times[label], 200, sizes[label], cpus[label]))
        print(f"  {label}: p50 {_p(times[label], 50):.1f} ms, p95 {_p(times[label], 95):.1f} ms, "
              f"{sizes[label]:,} bytes, server CPU {cpus[label]:.1f} ms", flush=True)

    # The htmx actions, on the big call, as its page's forms post them; pairs that undo each
    # other alternate so every request finds the call in a state the action fits.
    cycle = [
        ("note (update)", "update", {"update-note": "Bench note", "update-internal": "y"}),
        ("forward", "forward", None),
        ("priority", "priority", None),
        ("hold", "hold", {"hold-reason": "the customer"}),
        ("resume", "resume", {"resume-note": "back"}),
        ("resolve", "resolve", {"resolve-resolution": "Fixed"}),
        ("reopen", "reopen", {"reopen-reason": "Not fixed"}),
        ("close", "close", {"close-note": "Done"}),
        ("reopen after close", "reopen", {"reopen-reason": "Again"}),
    ]
    action_times = {label: [] for label, _, _ in cycle}
    action_cpu = {label: 0.0 for label, _, _ in cycle}
    sizes = {}
    for i in range(action_reps + 1):
        for label, action, data in cycle:
            if action == "forward":
                data = {"forward-analyst": str(2 - i % 2), "forward-group": "", "forward-note": "over to you"}
            if action == "priority":
                data = {"priority-priority": str(1 + i % 4), "priority-reason": "bench"}
            cpu = _server_cpu_ms(master)
            ms, status, size = client.timed("POST", f"/calls/{big}/{action}", data={**data, "csrf_token":
                                                                                     client.token}, htmx=True)
            assert status == 200, (label, status)
            if i:  # the first round warms up
                action_times[label].append(ms)
                action_cpu[label] += (_server_cpu_ms(master) - cpu) / action_reps
            sizes[label] = size
    for label, times in action_times.items():
        results.append((f"htmx action: {label}", times, 200, sizes[label], action_cpu[label]))
        print(f"  htmx action {label}: p50 {_p(times, 50):.1f} ms, p95 {_p(times, 95):.1f} ms, "
              f"server CPU {action_cpu[label]:.1f} ms", flush=True)
    return results


def _keyset_url(next_link: str, last_id: int, last_updated) -> str:
    """Rewrites the first page's "Next" link to continue after the given call instead."""
    from portal.pagination import encode_position

    if not isinstance(last_updated, datetime):  # SQLite hands back text
        last_updated = datetime.fromisoformat(str(last_updated))
    position = encode_position((last_updated.replace(tzinfo=timezone.utc), last_id))
    return re.sub(r"after=[^&]*", f"after={position}", next_link)


def _p(values: list[float], pct: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def one_database(kind: str, args, tree: Path) -> list:
    print(f"{kind}:", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-portal-") as tmp:
        if args.reuse:
            url, name, ids = _reused(kind, args)
        else:
            url, name = _database(kind, tmp)
            ids = None
        server = None
        try:
            if ids is None:
                ids = fill(url, args.calls, args.entries)
                if args.reuse:
                    _remember(kind, ids)
            log = Path(tmp) / "gunicorn.log"
            server, base = serve(url, tree, log)
            try:
                return measure(base, ids, args.reps, server.pid, args.action_reps or args.reps)
            except BaseException:
                print(log.read_text()[-3000:], file=sys.stderr)
                raise
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
            if not args.reuse:
                _drop(name)


# --reuse: the filled database is kept between runs (filling takes a minute or two), in
# this folder for SQLite and as this database on PostgreSQL; a run after a new migration
# upgrades it first.
REUSED = Path(tempfile.gettempdir()) / "switchboard-bench-portal"
REUSED_PG = "bench_portal_reuse"


def _reused(kind: str, args) -> tuple[str, str | None, dict | None]:
    import json

    import sqlalchemy as sa

    REUSED.mkdir(exist_ok=True)
    remembered = REUSED / f"{kind}-{args.calls}-{args.entries}.json"
    if kind == "sqlite":
        url = f"sqlite:///{REUSED}/bench-{args.calls}-{args.entries}.db"
    else:
        url = sa.engine.make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg", database=REUSED_PG)
        url = url.render_as_string(hide_password=False)
    if not remembered.exists():
        if kind == "sqlite":
            Path(sa.engine.make_url(url).database).unlink(missing_ok=True)
        else:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{REUSED_PG}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{REUSED_PG}"')
        return url, None, None
    ids = json.loads(remembered.read_text())
    ids["last_before_page"] = (ids["last_before_page"][0], datetime.fromisoformat(ids["last_before_page"][1]))
    from flask_migrate import upgrade

    from tests.conftest import make_test_app

    app = make_test_app(url)
    with app.app_context():
        upgrade()
    print(f"  reusing the database filled earlier ({remembered})", flush=True)
    return url, None, ids


def _remember(kind: str, ids: dict) -> None:
    import json

    last_id, last_updated = ids["last_before_page"]
    if not isinstance(last_updated, datetime):
        last_updated = datetime.fromisoformat(str(last_updated))
    (REUSED / f"{kind}-{ids['calls']}-{ids['entries']}.json").write_text(
        json.dumps({**ids, "last_before_page": [last_id, last_updated.isoformat()]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--action-reps", type=int, help="rounds of the htmx actions (default: --reps)")
    parser.add_argument("--reuse", action="store_true",
                        help=f"keep the filled database for the next run ({REUSED}, PostgreSQL {REUSED_PG})")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results = {kind: one_database(kind, args, ROOT) for kind in kinds}
    print(f"\n{args.calls:,} calls, {args.entries:,} timeline rows, {ANALYSTS} analysts, {GROUPS} groups; "
          f"gunicorn (1 worker, 16 threads) on loopback, one request at a time, {args.reps} each; "
          f"{os.cpu_count()} cores. ms, p50 / p95 (mean CPU of the portal's process per request); "
          "bytes on the wire (brotli, as a browser gets them)")
    print_table(kinds, results)


def print_table(kinds: list[str], results: dict) -> None:
    """The figures as a Markdown table: a row per page or action, a column per database (p50 /
    p95, the portal's CPU), and the size of the first database's answer."""
    print("| what | " + " | ".join(kinds) + " | bytes |")
    print("| --- | " + " | ".join("---" for _ in kinds) + " | --- |")
    first = results[kinds[0]]
    for i, (label, *_rest) in enumerate(first):
        cells = []
        for kind in kinds:
            _label, times, _status, _size, cpu = results[kind][i]
            cells.append(f"{_p(times, 50):.1f} / {_p(times, 95):.1f} ({cpu:.1f})")
        print(f"| {label} | " + " | ".join(cells) + f" | {first[i][3]:,} |")


if __name__ == "__main__":
    main()
