"""Polling each IMAP/POP3 account at its own interval, several at once, so an
account that is slow or failing never delays the others.

The `poll-accounts` job only hands the accounts that are due to a bounded pool
of threads (SCHEDULER_POLL_THREADS); an account still being polled is not
handed again. Each thread stores its account's mail through the scheduler's
write gate (receiver.worker.WriteGate, the receiver's own single-writer
discipline: on SQLite one writing transaction at a time, storing before
acting) and then acts on what it stored, a batch per gated transaction. A
hanging server holds one thread until the account's own timeout; the others
go on."""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import sqlalchemy as sa

from receiver.poll import POLLED, poll_account
from receiver.worker import WriteGate, run_in_app
from switchboard.db import db, utcnow
from switchboard.inbound.models import IncomingAccount

log = logging.getLogger(__name__)

ACT_BATCH = 50  # messages acted on per transaction


class AccountPolls:
    """The scheduler's pollers: one per app, made by the runner (or on first use)."""

    def __init__(self, app, *, threads: int, gate: WriteGate | None = None):
        self.app = app
        self.gate = gate or WriteGate.for_app(app)
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="poll")
        self._polling: set[int] = set()  # accounts handed to a thread and not finished
        self._lock = threading.Lock()

    def due_accounts(self, now) -> list[int]:
        rows = db.session.execute(
            sa.select(IncomingAccount.id, IncomingAccount.last_poll_at, IncomingAccount.poll_interval_seconds)
            .where(IncomingAccount.active, IncomingAccount.protocol.in_(POLLED))
            .order_by(IncomingAccount.last_poll_at.is_not(None), IncomingAccount.last_poll_at, IncomingAccount.id)
        ).all()
        db.session.commit()
        return [account_id for account_id, last, interval in rows
                if last is None or last + timedelta(seconds=interval) <= now]

    def dispatch(self) -> int:
        """Hands every due account not being polled to a thread. Returns how many."""
        handed = 0
        for account_id in self.due_accounts(utcnow()):
            with self._lock:
                if account_id in self._polling:
                    continue
                self._polling.add(account_id)
            self._pool.submit(self._poll, account_id)
            handed += 1
        return handed

    def polling(self) -> set[int]:
        with self._lock:
            return set(self._polling)

    def _poll(self, account_id: int) -> None:
        try:
            run_in_app(self.app, poll_and_act, account_id, self.gate)
        except Exception:
            log.exception("polling account %s failed", account_id)
        finally:
            with self._lock:
                self._polling.discard(account_id)

    def shutdown(self) -> None:
        # Threads stuck on a silent server end at its timeout; nobody waits for them.
        self._pool.shutdown(wait=False, cancel_futures=True)


def poll_and_act(account_id: int, gate: WriteGate) -> None:
    """Polls one account, then acts on the mail it stored; logs one line."""
    result = poll_account(account_id, gate=gate)  # records its own outcome on the account
    counts = act_on(result.inbound_ids, gate)
    if result.ok:
        acted = sum(counts.values())
        detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        log.info("poll %s: %s; acted on %d%s", result.account, result.summary(), acted,
                 f" ({detail})" if detail else "")
    # A failure is logged by poll_account (and kept on the account).


def act_on(ids: list[int] | None, gate: WriteGate) -> dict[str, int]:
    """Acts on the given messages (None: on everything still new), a batch per
    transaction, each taking its turn at the gate. Returns outcomes by status."""
    from switchboard.inbound.process import process_batch

    counts: dict[str, int] = {}
    pending = list(ids) if ids is not None else None
    while pending is None or pending:
        chunk = None if pending is None else pending[:ACT_BATCH]
        with gate.background():
            try:
                done = process_batch(chunk, limit=ACT_BATCH)
                db.session.commit()
            except Exception:
                db.session.rollback()
                raise
        for result in done:
            counts[result.status] = counts.get(result.status, 0) + 1
        if pending is None:
            if not done:
                break
        else:
            pending = pending[ACT_BATCH:]
    return counts


_polls: dict[int, AccountPolls] = {}
_polls_lock = threading.Lock()


def polls_for(app) -> AccountPolls:
    """The app's pollers, made on first use with SCHEDULER_POLL_THREADS threads."""
    with _polls_lock:
        polls = _polls.get(id(app))
        if polls is None:
            polls = _polls[id(app)] = AccountPolls(app, threads=app.config["SCHEDULER_POLL_THREADS"])
        return polls


def stop_polls(app) -> None:
    with _polls_lock:
        polls = _polls.pop(id(app), None)
    if polls is not None:
        polls.shutdown()
