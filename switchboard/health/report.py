"""What the health page and `desk health` show, and what counts as unhealthy:
a job that has not run for three of its intervals, an account whose polls
have failed for an hour, and (a problem, not an exit status) incoming mail that
reached the desk-wide cap on the staff mail it causes in the last hour."""

from datetime import datetime, timedelta

import sqlalchemy as sa

from switchboard.db import db, utcnow
from switchboard.health.models import JobHeartbeat
from switchboard.inbound.accounts import account_state
from switchboard.inbound.models import IncomingAccount, Protocol
from switchboard.outbox.limits import limits as reply_limits, staff_mail_held
from switchboard.outbox.models import OutboxMessage

STALE_INTERVALS = 3  # a job not started for this many of its intervals is stale
ACCOUNT_FAILING = timedelta(hours=1)  # an account failing this long raises the alarm

# `desk health` exit statuses (bits: both problems give 3). The README lists them.
EXIT_OK = 0
EXIT_STALE_JOB = 1
EXIT_FAILING_ACCOUNT = 2


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _age(now: datetime, value: datetime | None) -> float | None:
    return round((now - value).total_seconds(), 3) if value is not None else None


def job_is_stale(row: JobHeartbeat, now: datetime) -> bool:
    """Not started for STALE_INTERVALS of its intervals (since it was registered, if never)."""
    since = row.started_at or row.registered_at
    return now - since > timedelta(seconds=STALE_INTERVALS * max(1, row.interval_seconds))


def account_alarm(account: IncomingAccount, now: datetime) -> bool:
    """Failing for an hour, or at once when its OAuth2 grant needs reconnecting: the desk
    does not try that one again until an admin acts, so waiting cannot help."""
    if account.active and account_state(account) == "needs-reconnecting":
        return True
    return (account.active and account.failing_since is not None
            and now - account.failing_since >= ACCOUNT_FAILING)


def desk_health(now: datetime | None = None) -> dict:
    """The whole report, as `desk health --json` prints it (a stable shape: the README
    documents it). Times are UTC ISO 8601 with a Z; ages are seconds."""
    now = now or utcnow()
    problems: list[str] = []
    jobs = []
    rows = db.session.scalars(sa.select(JobHeartbeat).order_by(JobHeartbeat.job)).all()
    if not rows:
        problems.append("no scheduler has ever run here (start `flask --app wsgi scheduler run`)")
    for row in rows:
        stale = job_is_stale(row, now)
        if stale:
            last = f"last started {_iso(row.started_at)}" if row.started_at else "never run"
            problems.append(f"job {row.job} has not run for {STALE_INTERVALS} of its "
                            f"{row.interval_seconds} s intervals ({last})")
        jobs.append({
            "job": row.job,
            "interval_seconds": row.interval_seconds,
            "started_at": _iso(row.started_at),
            "finished_at": _iso(row.finished_at),
            "duration_seconds": row.duration_seconds,
            "outcome": row.outcome,
            "error": row.error,
            "last_ok_at": _iso(row.last_ok_at),
            "runner": row.runner,
            "stale": stale,
        })
    accounts = []
    polled = db.session.scalars(
        sa.select(IncomingAccount)
        .where(IncomingAccount.protocol != Protocol.LMTP)  # every mailbox the desk reads itself
        .order_by(IncomingAccount.name)
    ).all()
    for account in polled:
        alarm = account_alarm(account, now)
        if alarm:
            problems.append(f"account {account.name} has failed since {_iso(account.failing_since)}: "
                            f"{account.last_error}")
        accounts.append({
            "account": account.name,
            "protocol": account.protocol.value,
            "state": account_state(account),
            "interval_seconds": account.poll_interval_seconds,
            "last_poll_at": _iso(account.last_poll_at),
            "last_success_at": _iso(account.last_success_at),
            "last_error": account.last_error if account.failing_since else None,
            "last_error_at": _iso(account.last_error_at),
            "failing_since": _iso(account.failing_since),
            "alarm": alarm,
        })
    held = staff_mail_held(now)
    if held is not None:
        problems.append(f"staff mail caused by incoming mail reached the desk-wide limit "
                        f"({reply_limits()['staff_hour']} an hour) at {_iso(held)}: some incoming mail "
                        "did not tell staff by mail (the inbound log says which); a flood of mail, or a "
                        "limit set too low (Admin → Mail → Notifications)")
    report = {
        "ok": not problems,
        "checked_at": _iso(now),
        "jobs": jobs,
        "accounts": accounts,
        "outbox": outbox_due(now),
        "problems": problems,
    }
    return report


def outbox_due(now: datetime) -> dict:
    """How many mails are due, and the one waiting longest."""
    from switchboard.outbox.sender import _due  # the sender's own definition of "due"

    due = _due(now)
    count = db.session.scalar(sa.select(sa.func.count(OutboxMessage.id)).where(due))
    oldest = db.session.execute(
        sa.select(OutboxMessage.id, OutboxMessage.next_attempt_at)
        .where(due).order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(1)
    ).first()
    return {
        "due": count,
        "oldest_due_id": oldest.id if oldest else None,
        "oldest_due_at": _iso(oldest.next_attempt_at) if oldest else None,
        "oldest_due_age_seconds": _age(now, oldest.next_attempt_at) if oldest else None,
    }


def exit_status(report: dict) -> int:
    status = EXIT_OK
    if any(job["stale"] for job in report["jobs"]) or not report["jobs"]:
        status |= EXIT_STALE_JOB
    if any(account["alarm"] for account in report["accounts"]):
        status |= EXIT_FAILING_ACCOUNT
    return status
