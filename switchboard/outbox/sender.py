"""The sender job: claims due mail from the outbox, renders and composes it, hands it to the
outgoing SMTP servers over connections kept open for the batch, and marks every row sent,
deferred (tried again later, with growing back-off) or failed (for an admin to see).

Claiming is one statement (`UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)
RETURNING` on PostgreSQL; the same UPDATE takes SQLite's write lock), committed before any
mail goes out, so senders on any number of hosts never take the same row. A claimed row
carries a lease; one left in "sending" by a sender that died is claimed again after the
lease and sent again with the same Message-ID, so mail clients show it once.

Partly refused mail: when a server takes a message for some recipients and refuses others,
the row keeps one outcome per address in `recipient_results`. Refused-for-now addresses are
tried again on the same row (same Message-ID, same To/Cc lines, so it is the same message
reaching the rest of its recipients, as an MTA's queue would do), never the ones that got it;
the row is "sent" once no address is left to try, "failed" if nobody got it or the
attempts ran out. Permanent refusals stay in `recipient_results` for the admin.

`send_due` owns its transactions (it is a job, like inbound.process.process_pending): it
commits the claim, then commits each mark of mail a server accepted right after the
server's answer, before the next mail goes out; marks of mail nobody took (deferred,
failed, handed back) wait for the next commit. So a sender killed at any moment resends at
most the one mail that was in flight (accepted, its mark not yet committed): delivery is at
least once, with at most one duplicate per crash. Those commits do not wait for the disk;
every MARK_EVERY_ROWS marks (or MARK_EVERY_SECONDS) one does, so a power cut of the
database's machine resends at most that many.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import selectinload

from switchboard.blobs import Blob
from switchboard.calls import customer_link
from switchboard.calls.models import Call
from switchboard.db import db, utcnow
from switchboard.history.models import EntryKind, HistoryEntry
from switchboard.inbound.models import InboundMessage
from switchboard.outbox import catalogue, settings
from switchboard.outbox.compose import (
    Attachment, ComposeError, compose_message, message_to_bytes, one_line,
)
from switchboard.outbox.models import OutboxMessage, OutboxStatus, TemplateOverride
from switchboard.outbox.queue import mail_domain
from switchboard.outbox.servers import usable_servers
from switchboard.outbox.smtp import Outcome, SendResult, SmtpServerSettings, Transport
from switchboard.outbox.templates import TemplateError

log = logging.getLogger(__name__)

# Waits after the 1st, 2nd, ... temporary failure; the last one repeats.
BACKOFF_SECONDS = (60, 300, 900, 3600, 4 * 3600)
DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_MAX_AGE_HOURS = 48
# When no server can be reached at all, mail waits this long and keeps its attempts:
# a relay that is down for an afternoon must not fail the desk's mail.
RELAY_DOWN_RETRY_SECONDS = 60
# A mark of mail a server accepted is committed at once (a crash of the sender must not
# resend it), without waiting for the disk (SQLite synchronous=NORMAL, PostgreSQL
# synchronous_commit=off: the commit survives the sender's death, only a power cut or an OS
# crash could undo it); a commit that waits for the disk follows every this many marks or
# MARK_EVERY_SECONDS, and takes the marks nobody is waiting on (deferred, failed) with it.
# Measured on SQLite: a commit waiting for the disk per mail cost 4-9 ms of wall time here.
MARK_EVERY_ROWS = 25
MARK_EVERY_SECONDS = 1.0
# Stop starting new mail when this share of the lease has gone, so a slow server never
# lets another sender reclaim a row this one is still about to send.
LEASE_SAFETY = 0.8


@dataclass
class SendReport:
    """What one `send_due` call did."""

    claimed: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    # Mail was due and no outgoing server could be used (none configured, none reachable).
    unreachable: bool = False
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"sent {self.sent}, deferred {self.deferred}, failed {self.failed}"

    def add(self, other: SendReport) -> None:
        self.claimed += other.claimed
        self.sent += other.sent
        self.deferred += other.deferred
        self.failed += other.failed
        self.unreachable = self.unreachable or other.unreachable
        self.problems += [p for p in other.problems if p not in self.problems]


class Connections:
    """SMTP connections kept open from one `send_due` call to the next (send_all_due, the
    CLI's loop); opened again when the configured servers change. Close when done."""

    def __init__(self):
        self._servers: list[SmtpServerSettings] | None = None
        self._transport: Transport | None = None

    def transport(self, servers: list[SmtpServerSettings]) -> Transport:
        if self._transport is None or servers != self._servers:
            self.close()
            self._transport, self._servers = Transport(servers), list(servers)
        return self._transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = self._servers = None

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def send_due(limit: int = 100, lease_seconds: int = 300, *,
             connections: Connections | None = None) -> SendReport:
    """Claim up to `limit` due rows (queued or deferred whose time has come, or "sending"
    past its lease), send them, and mark them. Commits. `connections` keeps the SMTP
    connections open for the next call (otherwise they close at the end)."""
    if limit < 1 or lease_seconds < 1:
        raise ValueError("limit and lease_seconds must be positive")
    session = db.session
    session.commit()  # the claim must start its own transaction (SQLite takes the write lock)
    report = SendReport()
    servers = usable_servers()
    report.problems += servers.problems
    if not servers.settings:
        due = _count_due(utcnow())
        session.commit()
        if due:
            report.unreachable = True
            report.problems.append(f"{due} mail(s) due but no usable outgoing server "
                                   "(add one with `flask --app wsgi mail servers add`)")
        return report

    now = utcnow()
    lease_until = now + timedelta(seconds=lease_seconds)
    ids = _claim(now, lease_until, limit)
    session.commit()
    report.claimed = len(ids)
    if not ids:
        return report
    started = time.monotonic()
    config = _Config.load(servers.settings[0])
    jobs, marks = _prepare(ids, config, lease_until)
    session.commit()  # end the read: marks then start with a write (no stale SQLite snapshot)

    own_transport = connections is None
    connections = connections or Connections()
    with _Marks(report) as pending_marks:
        pending_marks.extend(marks)  # template and compose failures
        try:
            transport = connections.transport(servers.settings)
            for index, job in enumerate(jobs):
                if time.monotonic() - started > lease_seconds * LEASE_SAFETY:
                    pending_marks.extend(_release(j, relay_down=False) for j in jobs[index:])
                    break
                result = transport.send(None, job.envelope, job.data)
                if result.server is None and result.server_failed:
                    # No server at all: this mail and the rest wait for the relay.
                    report.unreachable = True
                    report.problems.append(result.message)
                    pending_marks.extend(_release(j, relay_down=True) for j in jobs[index:])
                    break
                pending_marks.append(_outcome(job, result, config))
                if result.accepted:
                    # The server has it: its mark is committed before the next mail goes out,
                    # so a crash from here on never sends it again.
                    pending_marks.flush(on_disk=pending_marks.due())
                elif pending_marks.due():
                    pending_marks.flush(on_disk=True)
        finally:
            if own_transport:
                connections.close()
        pending_marks.flush(on_disk=True)
    return report


def send_all_due(*, limit: int = 100, lease_seconds: int = 300,
                 max_batches: int | None = None) -> SendReport:
    """`send_due` until nothing is due (or no server can be reached)."""
    total = SendReport()
    batches = 0
    with Connections() as connections:
        while max_batches is None or batches < max_batches:
            report = send_due(limit=limit, lease_seconds=lease_seconds, connections=connections)
            total.add(report)
            batches += 1
            if report.claimed < limit or report.unreachable:
                break
    return total


# -- claiming ---------------------------------------------------------------------------------

def _due(now: datetime):
    t = OutboxMessage
    return sa.or_(
        sa.and_(t.status.in_([OutboxStatus.QUEUED, OutboxStatus.DEFERRED]), t.next_attempt_at <= now),
        sa.and_(t.status == OutboxStatus.SENDING, t.lease_until < now),
    )


def _count_due(now: datetime) -> int:
    return db.session.scalar(sa.select(sa.func.count(OutboxMessage.id)).where(_due(now)))


def _claim(now: datetime, lease_until: datetime, limit: int) -> list[int]:
    t = OutboxMessage
    inner = sa.select(t.id).where(_due(now)).order_by(t.id).limit(limit)
    if db.session.get_bind().dialect.name == "postgresql":
        inner = inner.with_for_update(skip_locked=True)
    # Attempts count at the claim, so a row that kills its sender every time (it is
    # reclaimed after each lease) still runs out of attempts.
    claimed = db.session.execute(
        sa.update(t)
        .where(t.id.in_(inner.scalar_subquery()))
        .values(status=OutboxStatus.SENDING, lease_until=lease_until, attempts=t.attempts + 1)
        .returning(t.id)
        .execution_options(synchronize_session=False)
    ).scalars().all()
    return sorted(claimed)


# -- rendering and composing ------------------------------------------------------------------

@dataclass(frozen=True)
class _Config:
    desk_name: str
    desk_url: str
    origin: str
    from_address: str  # the first server's: the desk's address unless an override says else
    from_name: str | None
    max_attempts: int
    max_age: timedelta

    @classmethod
    def load(cls, primary: SmtpServerSettings) -> _Config:
        config = current_app.config
        return cls(
            desk_name=config.get("DESK_NAME") or "Switchboard",
            desk_url=_setting("DESK_URL", "http://127.0.0.1:5000").rstrip("/"),
            origin=mail_domain(),
            from_address=primary.from_address,
            from_name=primary.from_name,
            max_attempts=max(1, int(_setting("OUTBOX_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))),
            max_age=timedelta(hours=float(_setting("OUTBOX_MAX_AGE_HOURS", DEFAULT_MAX_AGE_HOURS))),
        )


def _setting(name: str, default):
    value = current_app.config.get(name)
    if value in (None, ""):
        value = os.environ.get(name)
    return default if value in (None, "") else value


@dataclass
class _Job:
    """One claimed row, composed and ready to hand to a server."""

    id: int
    lease_until: datetime
    attempts: int
    created_at: datetime  # or when an admin requeued it: the age limit counts from here
    envelope: list[str]
    data: bytes
    results: dict  # address -> {outcome, code, message}, from earlier attempts too
    sent_at: datetime | None
    owner: dict | None  # {"call_id": 42} for mail about a record
    timeline: dict | None  # what to write on the record's timeline once sent
    subject: str  # without the token, for the timeline


@dataclass
class _Mark:
    values: dict  # columns of outbox_message
    entries: list = field(default_factory=list)  # history_entry rows to insert (None skipped)
    counted_as: str = "deferred"


def _prepare(ids: list[int], config: _Config, lease_until: datetime) -> tuple[list[_Job], list[_Mark]]:
    rows = db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.id.in_(ids)).order_by(OutboxMessage.id)
        .options(selectinload(OutboxMessage.recipient_person))
    ).all()
    overrides = db.session.scalars(sa.select(TemplateOverride)).all()
    accounts = _accounts_of(rows) if any(o.account_id is not None for o in overrides) else {}
    blobs = _blobs_of(rows)
    customers = _customers_of(rows)
    jobs, marks = [], []
    for row in rows:
        base = dict(id=row.id, lease_until=lease_until, attempts=row.attempts,
                    created_at=row.requeued_at or row.created_at, results=dict(row.recipient_results or {}),
                    sent_at=row.sent_at)
        try:
            jobs.append(_compose(row, config, overrides, accounts.get(row.id), blobs, base, customers))
        except (TemplateError, ComposeError, KeyError, ValueError, TypeError) as error:
            # No broken mail goes out: the row fails with the reason, for the admin.
            kind = "template" if isinstance(error, TemplateError) else "composing"
            message = f"{kind} error: {error}"
            log.warning("outbox %s not sent: %s", row.id, message)
            marks.append(_Mark(_values(base, OutboxStatus.FAILED, last_message=message),
                               [_failure_entry(row, message)], "failed"))
    return jobs, marks


def _compose(row: OutboxMessage, config: _Config, overrides, account_id, blobs, base,
             customers=None) -> _Job:
    key = row.template_key or row.message_type
    info = catalogue.get(key)
    found = settings.resolve_overrides(info.type, account_id, overrides)
    from_address = row.from_address or found.from_address or config.from_address
    from_name = row.from_name or found.from_name or config.from_name or config.desk_name
    person = row.recipient_person
    recipient = person if person is not None else (row.to[0] if row.to else None)
    # The call's customer (who has no login) gets a link to a read-only page of the call
    # instead of the portal's; made now, per mail, and never stored (a credential in a URL).
    link_token = None
    if (row.call_id is not None and person is not None and not person.is_staff
            and (customers or {}).get(row.call_id) == person.id):
        link_token = customer_link.make_token(row.call_id, person.id)

    if row.template_key:
        variables = _derived(row, config, from_address, link_token)
        variables.update(catalogue.base_variables(
            desk_name=config.desk_name, desk_address=from_address, desk_url=config.desk_url,
            recipient=recipient, token=row.reply_token))
        variables.update(row.context or {})
        rendered = catalogue.render_message(info.type, variables, found.templates)
        subject, text, html = rendered.subject, rendered.text, rendered.html
        # Written-out parts win over the template (a manual mail's own subject).
        subject = row.subject if row.subject is not None else subject
        text = row.text_body if row.text_body is not None else text
        html = row.html_body if row.html_body is not None else html
    else:
        subject, text, html = row.subject, row.text_body, row.html_body
    if found.signature:
        text = f"{text.rstrip()}\n\n-- \n{found.signature.strip()}\n"
        if html is not None:
            html += f'<pre style="font-family:inherit">-- \n{escape(found.signature.strip())}</pre>'

    # Auto-Submitted as the type says (none for mail a person wrote, whatever the row says).
    automatic = info.auto_submitted if row.automatic and info.auto_submitted else False
    attachments = [Attachment(a.get("filename") or "attachment",
                              a.get("content_type") or "application/octet-stream",
                              blobs[a["sha256"]]) for a in (row.attachments or [])]
    message = compose_message(
        from_addr=from_address, from_name=from_name, to=row.to, cc=row.cc or (),
        subject=subject, text=text, html=html, message_id=row.message_id,
        in_reply_to=row.in_reply_to, references=row.references or (),
        reply_token=row.reply_token, automatic=automatic, attachments=attachments,
        origin=config.origin)
    addresses = list(dict.fromkeys([*row.to, *(row.cc or [])]))
    done = {a for a, r in base["results"].items() if r.get("outcome") in ("sent", "permanent")}
    envelope = [a for a in addresses if a not in done]
    timeline = None
    if row.automatic and _owner(row):
        internal = person is not None and person.is_staff
        # The token is the recipient's to prove they got the mail (approvals): it never
        # shows on a timeline others can read.
        body = _redact(text, row.reply_token)
        if link_token:
            body = body.replace(link_token, "…")  # the link is the customer's, as the token is
        timeline = dict(**_owner(row), kind=EntryKind.EMAIL_OUT, author_id=None,
                        summary="", body=body, internal=internal,
                        details={"outbox_id": row.id, "message_id": row.message_id,
                                 "message_type": info.number})
    return _Job(envelope=envelope or addresses, data=message_to_bytes(message),
                owner=_owner(row), timeline=timeline, subject=_redact(one_line(subject), row.reply_token), **base)


def _redact(text: str, token: str | None) -> str:
    return text.replace(f"[SB-{token}]", "").replace(token, "…").strip() if token else text


def _derived(row: OutboxMessage, config: _Config, desk_address: str, link_token: str | None = None) -> dict:
    """Links every type may use, built at send time from the desk's address and URL."""
    values = {"call_url": "", "task_url": ""}
    token = row.reply_token
    if row.call_id is not None:
        values["call_url"] = (f"{config.desk_url}{customer_link.PATH}{link_token}" if link_token
                              else f"{config.desk_url}/calls/{row.call_id}")
        if token:
            values["reopen_mailto"] = catalogue.reopen_mailto(desk_address, row.call_id, token)
    if row.task_id is not None:
        request_id = row.request_id or _nested(row.context, "task", "request", "id")
        values["task_url"] = (f"{config.desk_url}/requests/{request_id}#task-{row.task_id}"
                              if request_id else "")
        if token:
            values["approve_mailto"] = catalogue.approval_mailto(desk_address, row.task_id, token,
                                                                 "Approve")
            values["reject_mailto"] = catalogue.approval_mailto(desk_address, row.task_id, token,
                                                                "Reject")
    elif row.request_id is not None:
        values["task_url"] = f"{config.desk_url}/requests/{row.request_id}"
    return values


def _nested(data, *keys):
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _owner(row: OutboxMessage) -> dict | None:
    for column in ("call_id", "task_id", "request_id"):
        if getattr(row, column) is not None:
            return {column: getattr(row, column)}
    return None


def _accounts_of(rows) -> dict[int, int]:
    """The incoming account each row's mail is about: the mail it answers, or the mail
    that logged its call (only looked up when an admin set per-account overrides)."""
    found: dict[int, int] = {}
    inbound_ids = {r.inbound_id for r in rows if r.inbound_id}
    call_ids = {r.call_id for r in rows if r.call_id and not r.inbound_id}
    by_inbound = dict(db.session.execute(
        sa.select(InboundMessage.id, InboundMessage.account_id).where(InboundMessage.id.in_(inbound_ids))
    ).all()) if inbound_ids else {}
    by_call: dict[int, int] = {}
    if call_ids:
        first = (sa.select(InboundMessage.call_id, sa.func.min(InboundMessage.id).label("first"))
                 .where(InboundMessage.call_id.in_(call_ids)).group_by(InboundMessage.call_id)
                 .subquery())
        by_call = dict(db.session.execute(
            sa.select(first.c.call_id, InboundMessage.account_id)
            .join(InboundMessage, InboundMessage.id == first.c.first)).all())
    for row in rows:
        account = by_inbound.get(row.inbound_id) if row.inbound_id else by_call.get(row.call_id)
        if account is not None:
            found[row.id] = account
    return found


def _customers_of(rows) -> dict[int, int]:
    """call id -> its customer's id, for the calls this batch's mail is about."""
    wanted = {r.call_id for r in rows if r.call_id is not None and r.recipient_person_id is not None}
    if not wanted:
        return {}
    return dict(db.session.execute(sa.select(Call.id, Call.customer_id).where(Call.id.in_(wanted))).all())


def _blobs_of(rows) -> dict[str, bytes]:
    wanted = {a["sha256"] for r in rows for a in (r.attachments or []) if a.get("sha256")}
    if not wanted:
        return {}
    return dict(db.session.execute(sa.select(Blob.sha256, Blob.data).where(Blob.sha256.in_(wanted))).all())


# -- marking ----------------------------------------------------------------------------------

def _values(base: dict, status: OutboxStatus, **values) -> dict:
    out = {
        "b_id": base["id"], "b_lease": base["lease_until"], "status": status,
        "attempts": base["attempts"], "next_attempt_at": values.pop("next_attempt_at", None),
        "lease_until": None, "last_code": values.pop("last_code", None),
        "last_message": values.pop("last_message", None),
        "recipient_results": base["results"] or None, "server_name": values.pop("server_name", None),
        "sent_at": base["sent_at"],
    }
    out.update(values)
    return out


def _outcome(job: _Job, result: SendResult, config: _Config) -> _Mark:
    now = utcnow()
    results = dict(job.results)
    for r in result.recipients:
        results[r.address] = {"outcome": r.outcome.value, "code": r.code, "message": r.message[:500]}
    base = {"id": job.id, "lease_until": job.lease_until, "attempts": job.attempts,
            "results": results, "sent_at": job.sent_at}
    accepted = result.accepted
    if accepted and base["sent_at"] is None:
        base["sent_at"] = now
    waiting = [a for a, r in results.items() if r["outcome"] == Outcome.TEMPORARY.value]
    refused = [a for a, r in results.items() if r["outcome"] == Outcome.PERMANENT.value]
    delivered_ever = any(r["outcome"] == Outcome.SENT.value for r in results.values())
    detail = _describe(result, refused, waiting)
    common = dict(last_code=result.code, last_message=detail, server_name=result.server)
    entries = []
    if accepted and job.timeline is not None:
        entries.append(dict(job.timeline,
                            summary=f"Mail sent to {', '.join(accepted)}: {job.subject}"[:300]))

    if waiting:
        too_old = now - job.created_at > config.max_age
        if job.attempts >= config.max_attempts or too_old:
            why = "too old" if too_old else f"{job.attempts} attempts"
            message = f"gave up ({why}): {detail}"
            entries.append(_failure_entry_for(job, waiting, message))
            return _Mark(_values(base, OutboxStatus.FAILED, **dict(common, last_message=message)),
                         entries, "failed")
        wait = BACKOFF_SECONDS[min(job.attempts, len(BACKOFF_SECONDS)) - 1]
        return _Mark(_values(base, OutboxStatus.DEFERRED, next_attempt_at=now + timedelta(seconds=wait),
                             **common), entries, "deferred")
    if delivered_ever:
        return _Mark(_values(base, OutboxStatus.SENT, **common), entries, "sent")
    message = f"refused: {detail}"
    entries.append(_failure_entry_for(job, refused, message))
    return _Mark(_values(base, OutboxStatus.FAILED, **dict(common, last_message=message)),
                 entries, "failed")


def _release(job: _Job, *, relay_down: bool) -> _Mark:
    """Hand an unsent row back without using up an attempt: for a minute when no server
    could be reached, at once when the batch ran short of lease."""
    base = {"id": job.id, "lease_until": job.lease_until, "attempts": max(0, job.attempts - 1),
            "results": job.results, "sent_at": job.sent_at}
    if relay_down:
        return _Mark(_values(base, OutboxStatus.DEFERRED,
                             next_attempt_at=utcnow() + timedelta(seconds=RELAY_DOWN_RETRY_SECONDS),
                             last_message="waiting for an outgoing server"), [], "deferred")
    return _Mark(_values(base, OutboxStatus.QUEUED, next_attempt_at=utcnow(),
                         last_message="handed back untried: the batch ran short of its lease"),
                 [], "deferred")


def _describe(result: SendResult, refused: list[str], waiting: list[str]) -> str:
    if result.outcome is Outcome.SENT and not refused and not waiting:
        return f"{result.code} {result.message}".strip()
    parts = []
    if result.outcome is not Outcome.SENT:
        stage = f" at {result.stage.value}" if result.stage else ""
        code = f"{result.code} " if result.code else ""
        parts.append(f"{code}{result.message}{stage}".strip())
    if refused:
        parts.append("refused for " + ", ".join(refused))
    if waiting and result.outcome is Outcome.SENT:
        parts.append("to try again for " + ", ".join(waiting))
    return "; ".join(parts)[:2000]


def _failure_entry(row: OutboxMessage, message: str) -> dict | None:
    owner = _owner(row)
    if owner is None:
        return None
    return dict(**owner, kind=EntryKind.EMAIL_OUT, author_id=None, internal=True,
                summary=f"Mail to {', '.join(row.to)} not sent"[:300], body=message,
                details={"outbox_id": row.id, "message_id": row.message_id, "failed": True})


def _failure_entry_for(job: _Job, addresses: list[str], message: str) -> dict | None:
    if job.owner is None:
        return None
    return dict(**job.owner, kind=EntryKind.EMAIL_OUT, author_id=None, internal=True,
                summary=f"Mail to {', '.join(addresses)} not delivered: {job.subject}"[:300],
                body=message, details={"outbox_id": job.id, "failed": True})


_outbox = OutboxMessage.__table__
# Built once: a statement built per commit missed SQLAlchemy's compiled cache (about 1 ms of
# CPU each, measured; with one commit per mail that was a third of the sender's time).
# Only the sender holding the lease marks a row: if the lease ran out and another sender took
# the row meanwhile, that one's outcome counts.
_MARK = (
    sa.update(_outbox)
    .where(_outbox.c.id == sa.bindparam("b_id"), _outbox.c.status == OutboxStatus.SENDING,
           _outbox.c.lease_until == sa.bindparam("b_lease"))
    .values({c: sa.bindparam(c) for c in (
        "status", "attempts", "next_attempt_at", "lease_until", "last_code",
        "last_message", "recipient_results", "server_name", "sent_at")})
)
_TIMELINE_ENTRY = sa.insert(HistoryEntry.__table__)


class _Marks(list):
    """Marks waiting to be written; `flush` writes and commits them, on a connection of their
    own held for the batch (a commit per accepted mail must stay cheap: no pool check-out and
    ping each time). A context manager: the connection goes back to the pool as it came."""

    def __init__(self, report: SendReport):
        super().__init__()
        self.report = report
        self.connection = None
        self.since_on_disk = 0  # marks committed since the last commit that waited for the disk
        self.sqlite_full = True  # the connection's synchronous setting, as the app sets it
        self.on_disk_at = time.monotonic()

    def __enter__(self) -> _Marks:
        self.connection = db.engine.connect()
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.connection.rollback()  # what a failed flush left
            if self.connection.dialect.name == "sqlite":
                self.connection.exec_driver_sql("PRAGMA synchronous=FULL")  # as the app sets it
                self.connection.commit()
        except Exception:
            # Never hand the pool a connection left at NORMAL (or broken): drop it.
            self.connection.invalidate()
        finally:
            self.connection.close()

    def due(self) -> bool:
        """Whether the next commit should wait for the disk."""
        return (len(self) + self.since_on_disk >= MARK_EVERY_ROWS
                or time.monotonic() - self.on_disk_at > MARK_EVERY_SECONDS)

    def flush(self, *, on_disk: bool) -> None:
        if not self:
            return
        connection = self.connection
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            if on_disk != self.sqlite_full:
                # Before the first write, so outside SQLite's transaction: it applies to this commit.
                connection.exec_driver_sql(f"PRAGMA synchronous={'FULL' if on_disk else 'NORMAL'}")
                self.sqlite_full = on_disk
        elif not on_disk:
            connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")  # this transaction only
        rows = []
        for mark in self:
            values = dict(mark.values)
            if values["next_attempt_at"] is None:
                values["next_attempt_at"] = utcnow()
            rows.append(values)
        connection.execute(_MARK, rows)
        entries = [e for m in self for e in m.entries if e is not None]
        if entries:
            now = utcnow()
            connection.execute(_TIMELINE_ENTRY, [
                {"call_id": None, "task_id": None, "request_id": None, "created_at": now, **e}
                for e in entries])
        connection.commit()
        if on_disk:
            self.since_on_disk, self.on_disk_at = 0, time.monotonic()
        else:
            self.since_on_disk += len(self)
        for mark in self:
            setattr(self.report, mark.counted_as, getattr(self.report, mark.counted_as) + 1)
        self.clear()
