"""`mail ingest`: a message handed over by a file or a pipe (an MTA's pipe
transport, a script). Stored and committed first, then acted on at once.

Exit statuses follow sysexits.h, which MTAs understand: 75 (EX_TEMPFAIL)
when a message could not be stored, so the MTA keeps it and retries."""

from dataclasses import dataclass

from receiver.storage import describe
from switchboard.db import db, rollback_or_drop

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65  # larger than LMTP_MAX_MESSAGE_BYTES: the MTA bounces it
EX_NOINPUT = 66
EX_NOUSER = 67
EX_TEMPFAIL = 75


@dataclass(frozen=True)
class Ingested:
    inbound_id: int | None
    status: str  # processed, rejected, ignored, failed, new; "not stored" when storing failed
    outcome: str
    stored: bool


def ingest(raw: bytes, *, account_id: int | None = None, sender: str | None = None,
           recipients=()) -> Ingested:
    """Stores and commits one message, then acts on it and commits again.
    A failure while acting leaves it stored (new or failed) for the sweep or
    an admin; only a failure to store answers `stored=False`."""
    from switchboard.inbound.models import IncomingAccount, InboundMessage
    from switchboard.inbound.process import process_batch
    from switchboard.inbound.store import store_message

    try:
        account = db.session.get(IncomingAccount, account_id) if account_id is not None else None
        result = store_message(raw, source="pipe", account=account, envelope_from=sender or None,
                               envelope_to=list(recipients))
        db.session.commit()
    except Exception as exc:
        # Stored means committed: whatever failed (the statements or the COMMIT itself), nothing is.
        rollback_or_drop()
        return Ingested(None, "not stored", describe(exc), stored=False)
    if not result.duplicate:
        try:
            process_batch([result.inbound_id], limit=1)
            db.session.commit()
        except Exception:
            db.session.rollback()
    try:
        row = db.session.get(InboundMessage, result.inbound_id)
        status, outcome, deliveries = row.status.value, row.outcome, row.deliveries
    except Exception:
        db.session.rollback()
        return Ingested(result.inbound_id, "new", "stored; the next sweep acts on it", stored=True)
    if status == "new":
        outcome = "stored; the next sweep acts on it"
    if result.duplicate:
        outcome = f"already received (delivery {deliveries}); {outcome or 'waiting to be acted on'}"
    return Ingested(result.inbound_id, status, outcome, stored=True)
