"""The timed jobs. Each runs in its own app context and commits its own
work; each is idempotent, so a second scheduler started by mistake, or a job
that runs late, does no harm."""

import logging
import time

from flask import current_app

log = logging.getLogger(__name__)

# The outbox job runs every 5 s: a problem that lasts (no outgoing server yet, on a fresh
# `make run` whose demo data queued mail) would fill the console with one line each run. The
# same line is said again only after this long; a changed one (another count) at once.
REPEAT_SECONDS = 300
_said: dict[str, float] = {}


def poll_due_accounts() -> int:
    """Hands each active IMAP/POP3 account whose interval has passed to a
    polling thread (scheduler.polling), unless it is being polled still; each
    thread acts on what its poll stored. Returns how many were handed."""
    from scheduler.polling import polls_for

    return polls_for(current_app._get_current_object()).dispatch()


def send_outbox() -> None:
    from switchboard.outbox.sender import send_all_due

    report = send_all_due()
    if report.claimed:
        log.info("outbox: %s", report.summary())
    now = time.monotonic()
    for problem in report.problems:
        if now - _said.get(problem, now - REPEAT_SECONDS) >= REPEAT_SECONDS:
            if len(_said) > 100:
                _said.clear()
            _said[problem] = now
            log.warning("outbox: %s", problem)


def sweep_inbound() -> None:
    """Acts on messages left new (a receiver that stopped between storing
    and acting); the receiver normally does this itself at once."""
    from scheduler.polling import act_on, polls_for

    # Through the pollers' write gate: on SQLite the sweep takes turns with their storing.
    counts = act_on(None, polls_for(current_app._get_current_object()).gate)
    if counts:
        log.info("inbound sweep acted on %d message(s)", sum(counts.values()))


def housekeeping() -> None:
    """Prunes raw mail and sent outbox rows past their retention (switchboard.housekeeping)."""
    from scheduler.polling import polls_for
    from switchboard.housekeeping import prune

    done = prune(turn=polls_for(current_app._get_current_object()).gate.background)
    if done.batches:
        log.info("housekeeping: %s", done.summary())


def notify_refused_grants() -> None:
    """Mails the admins once about each OAuth2 grant that needs reconnecting (a refused
    outgoing server's is met only here; a polled account's is announced by its poll too)."""
    from switchboard.db import db
    from switchboard.oauth.notices import notify_refused_grants as notify

    if notify():
        db.session.commit()


def sweep_slm() -> None:
    """Fires the SLA escalation levels and breaches that are due (switchboard.slm.sweep)."""
    from switchboard.slm.sweep import run_sweep

    report = run_sweep()
    if report.escalations or report.breaches:
        log.info("%s", report.summary())
