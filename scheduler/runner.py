"""Runs the jobs in one APScheduler process, guarded so only one scheduler
is active per database: a PostgreSQL advisory lock (held on a connection of
its own for the process's life) or, on SQLite, a lock file beside the
database. A second scheduler waits as a standby and takes over when the
first one's lock goes."""

import fcntl
import logging
import os
import time

import sqlalchemy as sa
from apscheduler.schedulers.blocking import BlockingScheduler

from scheduler import jobs
from switchboard.db import db

log = logging.getLogger(__name__)

# An arbitrary constant naming "the Switchboard scheduler" among advisory locks.
ADVISORY_LOCK_KEY = 0x5B_5C_ED_01

# (job id, function, seconds between runs)
JOBS = [
    ("poll-accounts", jobs.poll_due_accounts, 15),
    ("send-outbox", jobs.send_outbox, 5),
    ("sweep-inbound", jobs.sweep_inbound, 60),
]


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
            path = os.path.join(self.app.instance_path, "scheduler.lock")
            os.makedirs(self.app.instance_path, exist_ok=True)
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


def _wrap(app, function):
    def run():
        with app.app_context():
            try:
                function()
            except Exception:
                db.session.rollback()
                log.exception("job %s failed", function.__name__)
            finally:
                db.session.remove()

    run.__name__ = function.__name__
    return run


def run(app, *, standby_retry: float = 10.0) -> None:
    guard = SingleScheduler(app)
    while not guard.try_acquire():
        log.info("another scheduler is active; standing by")
        time.sleep(standby_retry)
    scheduler = BlockingScheduler(timezone="UTC")
    for job_id, function, seconds in JOBS:
        scheduler.add_job(
            _wrap(app, function),
            "interval",
            seconds=seconds,
            id=job_id,
            name=job_id,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(30, seconds * 2),
        )
    log.info("scheduler active: %s", ", ".join(j[0] for j in JOBS))
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        guard.release()
