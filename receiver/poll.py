"""Polling incoming mailboxes (IMAP, POP3, Microsoft Graph): one account at a time, each in
its own try, its outcome recorded on the account for admins and monitoring.

The order for every batch: fetch, store all, commit together with the
mailbox receipts, and only then move, flag or delete in the mailbox; the
receipts are marked settled after that. A run interrupted anywhere resumes
without losing or duplicating a message: a receipt that exists means "stored",
so the next run only settles it."""

import contextlib
import logging
import socket
import sys
import ssl
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from switchboard.db import db, utcnow
from switchboard.errors import DeskError
from switchboard.inbound.models import IncomingAccount, MailboxReceipt, Protocol

log = logging.getLogger(__name__)


@dataclass
class PollResult:
    account: str
    ok: bool = True
    error: str | None = None
    stored: int = 0  # new messages stored this run
    duplicates: int = 0  # stored before (the same mail by another path): counted only
    resumed: int = 0  # stored by an earlier, interrupted run: settled without fetching again
    settled: int = 0  # moved, flagged or deleted in the mailbox: only what the server did
    kept: int = 0  # left on a POP3 server as the account says ("seen"), remembered by UIDL
    not_stored: int = 0  # could not be stored: left in the mailbox for the next run
    inbound_ids: list[int] = field(default_factory=list)
    step: str = "connect"  # where a failure happened, for the error message
    # How this run stores, set by whoever runs it: a write gate to store through
    # (acting processes run meanwhile) and who to hand the new ids once committed.
    gate: object = field(default=None, repr=False)
    on_stored: object = field(default=None, repr=False)

    def summary(self) -> str:
        text = f"stored {self.stored} new"
        if self.duplicates:
            text += f", {self.duplicates} already received"
        if self.resumed:
            text += f", {self.resumed} from an interrupted run"
        text += f", settled {self.settled} in the mailbox"
        if self.kept:
            text += f", {self.kept} kept on the server"
        return text


class PollError(Exception):
    """A failure with a message fit for the admin (no secrets in it)."""


def tls_context(trusted_ca_pem: str | None) -> ssl.SSLContext:
    """Verifies the certificate and host name; a per-account CA (a self-signed
    server) replaces the system's trust store for that account."""
    if trusted_ca_pem:
        return ssl.create_default_context(cadata=trusted_ca_pem)
    return ssl.create_default_context()


def chunks(items: list, size: int):
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + size]


# Messages fetched and stored in one go take at most about this much memory
# (a batch of a hundred 25 MB messages would not fit).
FETCH_BYTES = 64 * 1024 * 1024


def by_size(items: list, sizes: dict, budget: int | None = None):
    """Splits `items` into runs whose sizes add up to at most `budget` (at least one item each)."""
    budget = budget or FETCH_BYTES
    run, total = [], 0
    for item in items:
        size = int(sizes.get(item) or 0)
        if run and total + size > budget:
            yield run
            run, total = [], 0
        run.append(item)
        total += size
    if run:
        yield run


def known_receipts(account_id: int, keys) -> set[str]:
    keys = list(keys)
    found: set[str] = set()
    for part in chunks(keys, 500):
        found.update(db.session.scalars(
            sa.select(MailboxReceipt.mailbox_key)
            .where(MailboxReceipt.account_id == account_id, MailboxReceipt.mailbox_key.in_(part))
        ))
    return found


def store_fetched(account: IncomingAccount, messages: list[tuple[str, bytes]], source: str,
                  result: PollResult) -> set[str]:
    """Stores a batch, each message with its receipt, and commits. Should that
    fail, each message is stored and committed alone, so one that cannot be
    stored is left out (and left in the mailbox), not the whole batch.
    Returns the keys that are now safely stored."""
    with result.gate.urgent() if result.gate is not None else contextlib.nullcontext():
        stored = _store_batch(account, messages, source, result)
    new_ids = []
    for inbound_id, duplicate in stored.values():
        if duplicate:
            result.duplicates += 1
        else:
            result.stored += 1
            new_ids.append(inbound_id)
    result.inbound_ids.extend(new_ids)
    if new_ids and result.on_stored is not None:
        result.on_stored(new_ids)
    return set(stored)


def _store_batch(account: IncomingAccount, messages, source: str, result: PollResult) -> dict[str, tuple[int, bool]]:
    account_id = account.id
    try:
        stored = _store_each(account, messages, source)
        db.session.commit()
    except Exception:
        db.session.rollback()
        if len(messages) == 1:
            stored = {}
            _not_stored(result, account, messages[0][0], source)
        else:
            stored = {}
            account = db.session.get(IncomingAccount, account_id)
            for message in messages:
                try:
                    done = _store_each(account, [message], source)
                    db.session.commit()
                except Exception:
                    db.session.rollback()
                    _not_stored(result, account, message[0], source)
                    account = db.session.get(IncomingAccount, account_id)
                    continue
                stored.update(done)
    return stored


def _store_each(account: IncomingAccount, messages, source: str) -> dict[str, tuple[int, bool]]:
    from switchboard.inbound.store import Incoming, store_messages

    session = db.session
    outcomes = store_messages([Incoming(raw, source, account.id) for _, raw in messages])
    stored = {key: (outcome.inbound_id, outcome.duplicate) for (key, _), outcome in zip(messages, outcomes)}
    if stored:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        now = utcnow()
        # One statement for the batch; two pollers at once (a manual run beside
        # the scheduler) must not collide here.
        session.execute(
            insert(MailboxReceipt)
            .values([dict(account_id=account.id, mailbox_key=key, inbound_id=inbound_id, stored_at=now, settled=False)
                     for key, (inbound_id, _) in stored.items()])
            .on_conflict_do_nothing(index_elements=["account_id", "mailbox_key"])
        )
    return stored


def _not_stored(result: PollResult, account, key: str, source: str) -> None:
    exc = sys.exc_info()[1]
    result.not_stored += 1
    result.error = result.error or f"a message could not be stored ({type(exc).__name__}: {str(exc)[:300]})"
    log.exception("storing %s message %s for account %s failed", source, key, result.account)


def mark_settled(account_id: int, keys) -> None:
    for part in chunks(list(keys), 500):
        db.session.execute(
            sa.update(MailboxReceipt)
            .where(MailboxReceipt.account_id == account_id, MailboxReceipt.mailbox_key.in_(part))
            .values(settled=True)
        )
    db.session.commit()


def forget_receipts(account_id: int) -> None:
    db.session.execute(sa.delete(MailboxReceipt).where(MailboxReceipt.account_id == account_id))


def describe_error(exc: BaseException, account: IncomingAccount, step: str) -> str:
    """What went wrong, in words an admin can act on. Never the password."""
    where = f"{account.host}:{account.port}"
    if isinstance(exc, (PollError, DeskError)):
        return str(getattr(exc, "message", exc))
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"the TLS certificate of {where} is not trusted ({exc.verify_message}); "
                "set the account's trusted CA if the server uses its own")
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "WRONG_VERSION_NUMBER":
            return f"{where} does not speak TLS there (is the port or the security setting wrong?)"
        return f"TLS with {where} failed during {step}: {exc.reason or exc}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"{where} did not answer within {account.timeout_seconds} s during {step}"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {where}: connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot find the host {account.host!r}: {exc.strerror or exc}"
    if isinstance(exc, sa.exc.SQLAlchemyError):
        cause = getattr(exc, "orig", None) or exc
        return f"the database failed during {step}: {type(cause).__name__}: {str(cause)[:300]}"
    if isinstance(exc, OSError):
        return f"connection to {where} failed during {step}: {exc.strerror or exc}"
    text = exc.args[0] if exc.args else str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = str(text)
    if text.startswith(("b'", 'b"')) and text.endswith(text[1]):  # imaplib quotes the server's bytes
        text = text[2:-1]
    if step == "login":
        return f"login refused by {where} for {account.username}: {text}"[:1000]
    return f"{step} failed on {where}: {text}"[:1000]


def poll_account(account_id: int, *, gate=None, on_stored=None) -> PollResult:
    """Polls one account once, never raising: the outcome is recorded on the
    account (last_success_at, or last_error and last_error_at). `gate` and
    `on_stored`: see PollResult."""
    from receiver import graph, imap, pop3
    from receiver.signin import credentials_for

    account = db.session.get(IncomingAccount, account_id)
    result = PollResult(account.name, gate=gate, on_stored=on_stored)
    started = utcnow()
    try:
        if not account.active:
            raise PollError("the account is inactive")
        if account.protocol is Protocol.LMTP:
            raise PollError("an LMTP account is not polled: the MTA delivers its mail")
        result.step = "reading the password"
        credentials = credentials_for(account)
        if account.protocol is Protocol.IMAP:
            imap.poll(account, credentials, result)
        elif account.protocol is Protocol.GRAPH:
            graph.poll(account, credentials, result)
        else:
            pop3.poll(account, credentials, result)
    except Exception as exc:
        db.session.rollback()
        account = db.session.get(IncomingAccount, account_id)
        result.ok = False
        result.error = describe_error(exc, account, result.step)
        log.warning("polling %s failed: %s", account.name, result.error)
    else:
        if result.not_stored:
            result.ok = False
            result.error = f"{result.not_stored} message(s) left in the mailbox: {result.error}"
    try:
        account = db.session.get(IncomingAccount, account_id)
        account.last_poll_at = started
        if result.ok:
            account.last_success_at = utcnow()
            account.failing_since = None
        else:
            account.last_error = result.error
            account.last_error_at = utcnow()
            account.failing_since = account.failing_since or account.last_error_at
            if account.oauth_grant_id is not None:
                _announce_refused_grants()
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("recording the poll outcome of %s failed", result.account)
    return result


def _announce_refused_grants() -> None:
    """The admins hear of a refused OAuth2 grant once, with this poll's outcome; in a savepoint,
    so a failure here (logged; the scheduler's job tries again) never loses the outcome."""
    from switchboard.oauth.notices import notify_refused_grants

    try:
        with db.session.begin_nested():
            notify_refused_grants()
    except Exception:
        log.exception("queueing the 'needs reconnecting' notice failed")


# The protocols whose mailboxes the desk reads itself (LMTP accounts are delivered to).
POLLED = (Protocol.IMAP, Protocol.POP3, Protocol.GRAPH)


def pollable_accounts(name: str | None = None) -> list[int]:
    query = sa.select(IncomingAccount.id).order_by(IncomingAccount.name)
    if name is not None:
        query = query.where(IncomingAccount.name == name)
    else:
        query = query.where(IncomingAccount.active, IncomingAccount.protocol.in_(POLLED))
    return list(db.session.scalars(query))


def poll_accounts(name: str | None = None, *, gate=None, on_stored=None) -> list[PollResult]:
    """Polls every active IMAP/POP3 account (or the named one) once; one
    failing account never stops the others."""
    return [poll_account(account_id, gate=gate, on_stored=on_stored) for account_id in pollable_accounts(name)]

