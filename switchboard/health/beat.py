"""Writing heartbeats: the scheduler registers its jobs when it becomes active
and records every run (switchboard never imports the scheduler: it is told)."""

import logging
import os
import socket

import sqlalchemy as sa

from switchboard.db import db, utcnow
from switchboard.health.models import JobHeartbeat

log = logging.getLogger(__name__)

ERROR_CHARS = 2000  # of an error's text kept on the heartbeat (the log has the traceback)


def runner_name() -> str:
    """Which scheduler ran a job: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"[:300]


def register_jobs(intervals: dict[str, int]) -> None:
    """Called by the scheduler that just became active: its jobs, at their
    intervals. Rows of jobs it does not run (renamed, removed) are dropped, so
    they never read as stale; the others keep their last run."""
    now = utcnow()
    db.session.execute(sa.delete(JobHeartbeat).where(JobHeartbeat.job.not_in(list(intervals))))
    for job, seconds in intervals.items():
        row = db.session.get(JobHeartbeat, job)
        if row is None:
            db.session.add(JobHeartbeat(job=job, interval_seconds=int(seconds), registered_at=now))
        else:
            row.interval_seconds = int(seconds)
            row.registered_at = now
    db.session.commit()


def record_run(job: str, interval_seconds: int, started_at, duration: float, error: str | None) -> None:
    """One run of `job` ended (error None: it succeeded). Commits; never raises:
    a heartbeat that cannot be written (the database is down) is logged, and
    the staleness it leaves is what `desk health` reports."""
    try:
        row = db.session.get(JobHeartbeat, job)
        if row is None:
            row = JobHeartbeat(job=job, interval_seconds=int(interval_seconds), registered_at=started_at)
            db.session.add(row)
        row.interval_seconds = int(interval_seconds)
        row.started_at = started_at
        row.finished_at = utcnow()
        row.duration_seconds = round(duration, 6)
        row.outcome = "ok" if error is None else "failed"
        row.error = None if error is None else error[:ERROR_CHARS]
        if error is None:
            row.last_ok_at = row.finished_at
        row.runner = runner_name()
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("writing the heartbeat of job %s failed", job)
