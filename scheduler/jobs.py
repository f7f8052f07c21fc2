"""The timed jobs. Each runs in its own app context and commits its own
work; each is idempotent, so a second scheduler started by mistake, or a job
that runs late, does no harm."""

import logging
from datetime import timedelta

import sqlalchemy as sa

from switchboard.db import db, utcnow
from switchboard.inbound.models import IncomingAccount, Protocol

log = logging.getLogger(__name__)


def poll_due_accounts() -> int:
    """Polls each active IMAP/POP3 account whose interval has passed, then
    acts on what arrived. Returns how many accounts were polled."""
    from receiver.poll import poll_account
    from switchboard.inbound.process import process_pending

    now = utcnow()
    accounts = db.session.execute(
        sa.select(IncomingAccount.id, IncomingAccount.last_poll_at, IncomingAccount.poll_interval_seconds)
        .where(IncomingAccount.active, IncomingAccount.protocol.in_([Protocol.IMAP, Protocol.POP3]))
        .order_by(IncomingAccount.id)
    ).all()
    db.session.commit()
    polled = 0
    for account_id, last_poll_at, interval in accounts:
        if last_poll_at is not None and last_poll_at + timedelta(seconds=max(interval, 10)) > now:
            continue
        result = poll_account(account_id)  # records its own success or error
        polled += 1
        if not result.ok:
            log.warning("poll of %s failed: %s", result.account, result.error)
    if polled:
        process_pending()
    return polled


def send_outbox() -> None:
    from switchboard.outbox.sender import send_all_due

    report = send_all_due()
    if report.claimed:
        log.info("outbox: %s", report.summary())
    for problem in report.problems:
        log.warning("outbox: %s", problem)


def sweep_inbound() -> None:
    """Acts on messages left new (a receiver that stopped between storing
    and acting); the receiver normally does this itself at once."""
    from switchboard.inbound.process import process_pending

    results = process_pending()
    if results:
        log.info("inbound sweep acted on %d message(s)", len(results))
