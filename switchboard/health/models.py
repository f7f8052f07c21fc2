"""One heartbeat row per scheduler job, written after every run."""

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from switchboard.db import UTCDateTime, db, utcnow


class JobHeartbeat(db.Model):
    """A scheduler job's last run: when it started, how long it took, how it
    ended. Registered (with its interval) when a scheduler becomes active, so a
    job that never runs shows as stale too."""

    __tablename__ = "job_heartbeat"

    job: Mapped[str] = mapped_column(sa.String(60), primary_key=True)
    interval_seconds: Mapped[int]
    registered_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    started_at = mapped_column(UTCDateTime)
    finished_at = mapped_column(UTCDateTime)
    duration_seconds: Mapped[float | None] = mapped_column(sa.Float)
    outcome: Mapped[str | None] = mapped_column(sa.String(10))  # ok, failed
    error: Mapped[str | None] = mapped_column(sa.Text)
    last_ok_at = mapped_column(UTCDateTime)
    runner: Mapped[str | None] = mapped_column(sa.String(300))  # host:pid of the scheduler that ran it
