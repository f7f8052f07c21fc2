"""Counts by status, for `desk stats --json`, scripts and monitoring.

The shape is a contract (DESIGN.md): {"calls": {"open": 3, ...}, ...} with
every status present, lower-case keys, zero where there is none."""

import sqlalchemy as sa

from switchboard.calls.models import Call, CallStatus
from switchboard.db import db
from switchboard.inbound.models import InboundMessage, InboundStatus
from switchboard.outbox.models import OutboxMessage, OutboxStatus
from switchboard.requests.models import Request, RequestStatus, Task, TaskStatus

# (key in the output, status column, every status). Later features append.
SOURCES = [
    ("calls", Call.status, CallStatus),
    ("requests", Request.status, RequestStatus),
    ("tasks", Task.status, TaskStatus),
    ("inbound", InboundMessage.status, InboundStatus),
    ("outbox", OutboxMessage.status, OutboxStatus),
]


def register(key: str, column, statuses) -> None:
    if key not in {k for k, _, _ in SOURCES}:
        SOURCES.append((key, column, statuses))


def desk_stats() -> dict:
    out = {}
    for key, column, statuses in SOURCES:
        counts = {_key(s): 0 for s in statuses}
        for status, count in db.session.execute(sa.select(column, sa.func.count()).group_by(column)):
            counts[_key(status)] = count
        out[key] = counts
    out["inbound"]["warnings"] = inbound_with_warnings()
    return out


def inbound_with_warnings() -> int:
    """Not a status: how many inbound messages left warnings when read (what was cut, guessed
    or repaired). Warnings are a JSON list of strings, so a non-empty one starts with '["'
    (SQLite and PostgreSQL alike)."""
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(InboundMessage)
        .where(sa.cast(InboundMessage.warnings, sa.Text).like('["%'))) or 0


def _key(status) -> str:
    return str(getattr(status, "value", status)).lower()
