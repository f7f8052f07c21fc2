"""Runs the jobs in one APScheduler process, guarded so only one scheduler
is active per database: a PostgreSQL advisory lock (held on a connection of
its own for the process's life) or, on SQLite, a lock file beside the
database. A second scheduler waits as a standby and takes over when the
first one's lock goes.

Every run of every job leaves a heartbeat in the database (switchboard.health):
when it started, how long it took, how it ended."""

import fcntl
import logging
import os
import time
from datetime import datetime, timezone

import sqlalchemy as sa
from apscheduler.schedulers.blocking import BlockingScheduler

from scheduler import jobs
from switchboard.db import db, lock_path, utcnow
from switchboard.health.beat import record_run, register_jobs

log = logging.getLogger(__name__)

# An arbitrary constant naming "the Switchboard scheduler" among advisory locks.
ADVISORY_LOCK_KEY = 0x5B_5C_ED_01

# (job id, function, seconds between runs; SCHEDULER_INTERVALS overrides them)
JOBS = [
    # Only hands due accounts to the polling threads: each account has its own interval.
    ("poll-accounts", jobs.poll_due_accounts, 5),
    ("send-outbox", jobs.send_outbox, 5),
    ("sweep-inbound", jobs.sweep_inbound, 60),
    ("housekeeping", jobs.housekeeping, 3600),
    ("slm-sweep", jobs.sweep_slm, 60),
    ("oauth-notices", jobs.notify_refused_grants, 60),
]


def lock_file(app, engine) -> str:
    """Beside the SQLite database (`<file>.scheduler-lock`): one lock per database, as with
    PostgreSQL, whatever folder a scheduler runs from; in the instance folder for an
    in-memory database."""
    return lock_path(engine, "scheduler-lock", app.instance_path)


class SingleScheduler:
    """Holds the one-active-scheduler lock."""

    def __init__(self, app):
        self.app = app
        self._connection = None
        self._file = None

    def try_acquire(self) -> bool:
        with self.app.app_context():
            engine = db.engine
            if engine.dialect.name == "postgresql":
                # Its own connection for the process's life: if the process
                # dies, PostgreSQL ends the session and frees the lock.
                connection = engine.connect()
                got = connection.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY}).scalar()
                connection.commit()
                if got:
                    self._connection = connection
                    return True
                connection.invalidate()
                return False
            path = lock_file(self.app, engine)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            handle = open(path, "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
            self._file = handle
            return True

    def release(self) -> None:
        if self._connection is not None:
            # A pooled connection would keep the session (and its lock) alive.
            self._connection.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
            self._connection.invalidate()
            self._connection = None
        if self._file is not None:
            self._file.close()
            self._file = None


def intervals(app) -> dict[str, int]:
    """Each job's seconds between runs: JOBS's, or SCHEDULER_INTERVALS's
    (`job=seconds,...`, e.g. `housekeeping=600`)."""
    chosen = {job_id: seconds for job_id, _, seconds in JOBS}
    for part in (app.config.get("SCHEDULER_INTERVALS") or "").split(","):
        if not part.strip():
            continue
        job_id, _, seconds = part.partition("=")
        job_id = job_id.strip()
        if job_id not in chosen:
            raise ValueError(f"SCHEDULER_INTERVALS: no job named {job_id!r} (jobs: {', '.join(chosen)})")
        try:
            chosen[job_id] = int(seconds)
        except ValueError:
            raise ValueError(f"SCHEDULER_INTERVALS: {job_id} needs whole seconds, not {seconds.strip()!r}") from None
        if chosen[job_id] < 1:
            raise ValueError(f"SCHEDULER_INTERVALS: {job_id} needs at least 1 second")
    return chosen


def _wrap(app, function, job_id: str | None = None, seconds: int = 60):
    """The job as the scheduler runs it: in its own app context, a failure logged (never
    raised into APScheduler), and its heartbeat written whatever happened."""
    job_id = job_id or function.__name__

    def run():
        with app.app_context():
            started, clock = utcnow(), time.monotonic()
            error = None
            try:
                function()
            except Exception as exc:
                db.session.rollback()
                error = f"{type(exc).__name__}: {exc}"
                log.exception("job %s failed", function.__name__)
            try:
                record_run(job_id, seconds, started, time.monotonic() - clock, error)
            finally:
                db.session.remove()

    run.__name__ = function.__name__
    return run


def run(app, *, standby_retry: float = 10.0) -> None:
    from scheduler.polling import stop_polls

    every = intervals(app)
    guard = SingleScheduler(app)
    while not guard.try_acquire():
        log.info("another scheduler is active; standing by")
        time.sleep(standby_retry)
    with app.app_context():
        try:
            register_jobs(every)
        except Exception:
            # The jobs still run (each reports its own failure); their heartbeats make the rows.
            db.session.rollback()
            log.exception("registering the jobs' heartbeats failed")
        finally:
            db.session.remove()
    scheduler = BlockingScheduler(timezone="UTC")
    for job_id, function, _ in JOBS:
        seconds = every[job_id]
        scheduler.add_job(
            _wrap(app, function, job_id, seconds),
            "interval",
            seconds=seconds,
            id=job_id,
            name=job_id,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(30, seconds * 2),
            next_run_time=datetime.now(timezone.utc),  # each job runs once at start, then on its interval
        )
    log.info("scheduler active: %s", ", ".join(j[0] for j in JOBS))
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        stop_polls(app)
        guard.release()
