"""Step one for every transport: keep the raw message, durably, once.

The transport (LMTP, IMAP, POP3, pipe) calls `store_message`, commits, and
only then acknowledges (250 / move / delete). Acting on the message is a
separate step (`switchboard.inbound.process`), so a failure there loses
nothing. Storing the same message again is harmless: it is recognised by its
fingerprint within the account's scope and only counted. The same message
brought by another account is stored for that account too (its audit trail),
but acted on once per desk: the first copy stored claims it (MessageClaim)."""

import functools
import hashlib
import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from switchboard.blobs import digest, store as blob_store
from switchboard.db import db, utcnow
from switchboard.inbound.bounds import MAX_HEADER_LINES, bound_head
from switchboard.inbound.models import (
    IncomingAccount, IncomingAddress, InboundMessage, InboundStatus, MessageClaim,
)
from switchboard.inbound.mime import strip_leading
from switchboard.inbound.parse import decode_header_text, first_address, parse_message_ids

# Headers that say what the message is, not how it travelled: the same mail
# fetched by IMAP and pushed over LMTP differs only in trace headers
# (Received, Delivered-To, Return-Path...) and maybe line endings. Used, with
# the body, for a message without a Message-ID.
IDENTITY_HEADERS = ("message-id", "from", "to", "cc", "date", "subject")
# With a Message-ID these say which message it is: a gateway that adds a footer
# or an "external sender" banner to the body (Exchange Online does) leaves them
# as they were, so its copy is still the same message.
MESSAGE_ID_IDENTITY = ("message-id", "from", "date", "subject")

# A header field line: a name of printable characters but the colon, then a colon
# (RFC 5322 section 2.2, with the whitespace before the colon obsolete syntax allows).
_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")


@dataclass(frozen=True)
class Stored:
    inbound_id: int
    # Nothing to act on: the account had it already (its deliveries counted), or another
    # account's copy claimed it (copy_of: the inbound message acted on).
    duplicate: bool
    copy_of: int | None = None


def _split(raw: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n", b"\r\r"):
        at = raw.find(sep)
        if at != -1:
            return raw[:at], raw[at + len(sep):]
    return raw, b""


def _body(raw: bytes) -> bytes:
    """What follows the header section, as a parser reads it: after the first
    empty line, or from the first line that is neither a field nor a folded
    continuation (a message without a blank line, or without any header, is
    all body from there)."""
    if b"\n" not in raw:
        raw = raw.replace(b"\r", b"\n")  # bare CR line ends, old Mac style
    at, end, first = 0, len(raw), True
    for _ in range(MAX_HEADER_LINES):  # bounded as the header is (this answers the MTA)
        if at >= end:
            return b""
        stop = raw.find(b"\n", at)
        stop = end if stop == -1 else stop
        line = raw[at:stop].rstrip(b"\r")
        if not line:
            return raw[stop + 1:]
        if not (_FIELD.match(line) or (not first and line[:1] in b" \t")):
            return raw[at:]
        first = False
        at = stop + 1
    return raw[at:]  # past the header's bound, the rest counts as body


def _normalise(data: bytes) -> bytes:
    return b"\n".join(line.rstrip() for line in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")).strip()


def _header_line(name: str, value) -> bytes:
    return name.encode() + b":" + " ".join(str(value).split()).encode("utf-8", "replace") + b"\n"


def fingerprint(raw: bytes, headers) -> str:
    """Which message this is, the same for every copy whatever path brought it.
    With a Message-ID: that and From, Date, Subject (unfolded), never the body,
    which gateways alter. Without: the identity headers and the whole body."""
    h = hashlib.sha256()
    if any(str(value).strip() for value in headers.get_all("message-id", [])):
        h.update(b"message-id identity\n")
        for name in MESSAGE_ID_IDENTITY:
            for value in headers.get_all(name, []):
                h.update(_header_line(name, value))
        return h.hexdigest()
    for name in IDENTITY_HEADERS:
        for value in headers.get_all(name, []):
            h.update(_header_line(name, value))
    h.update(b"\n")
    h.update(_normalise(_body(raw)))
    return h.hexdigest()


def read_head(raw: bytes):
    """The header fields storing reads (From, Subject, Message-ID and the identity headers).

    The head only: given the whole message the parser would still read the body line by
    line. Bounded as the full parse bounds it (inbound.bounds), since this answers the MTA.
    What some systems put before the first field (a byte-order mark, blank lines, an mbox
    From line) is skipped as the parse skips it: read as a header, it hid every field."""
    head, _ = bound_head(_split(strip_leading(raw)[0])[0].replace(b"\r\n", b"\n"))
    return BytesHeaderParser(policy=compat32).parsebytes(head + b"\n\n")


def _scope(account_id: int | None) -> str:
    return f"account:{account_id}" if account_id is not None else "default"


@dataclass(frozen=True)
class Incoming:
    """One message as a transport received it."""

    raw: bytes
    source: str
    account_id: int | None = None
    envelope_from: str | None = None
    envelope_to: tuple = ()


def store_message(
    raw: bytes,
    *,
    source: str,
    account: IncomingAccount | None = None,
    envelope_from: str | None = None,
    envelope_to=(),
) -> Stored:
    """Adds the message (or counts a repeat). The caller commits."""
    account_id = account.id if account is not None else None
    return store_messages([Incoming(raw, source, account_id, envelope_from, tuple(envelope_to))])[0]


def store_messages(items: list[Incoming]) -> list[Stored]:
    """Adds many messages (or counts repeats) with a few statements: the raw
    bytes in one, the new rows in another (many rows per INSERT). The caller
    commits. A message seen before, or twice in `items`, is stored once and its
    deliveries counted."""
    rows, blobs = [], {}
    for item in items:
        raw = item.raw
        headers = read_head(raw)
        ids = parse_message_ids(str(headers.get("message-id", "") or ""))
        subject = decode_header_text(str(headers.get("subject", "") or ""))
        from_header = str(headers.get("from", "") or "")
        sha = digest(raw)
        blobs[sha] = raw
        rows.append(dict(
            scope=_scope(item.account_id),
            fingerprint=fingerprint(raw, headers),
            raw_sha256=sha,
            size=len(raw),
            source=item.source,
            account_id=item.account_id,
            envelope_from=(item.envelope_from or "")[:320] or None,
            envelope_to=list(item.envelope_to) or None,
            message_id=ids[0][:998] if ids else None,
            from_address=first_address(from_header),
            subject=" ".join(subject.split())[:300],
            received_at=utcnow(),
            deliveries=1,
            status=InboundStatus.NEW,
            outcome="",
            attempts=0,
        ))
    if not rows:
        return []
    blob_store.put_many(blobs)
    session = db.session
    first: dict[tuple[str, str], int] = {}
    for index, row in enumerate(rows):
        first.setdefault((row["scope"], row["fingerprint"]), index)
    inserted = {
        (scope, key): row_id
        for row_id, scope, key in session.execute(
            _insert_statement(session.get_bind().dialect.name), [rows[i] for i in sorted(first.values())])
    }
    claimed = _claim(session, [(rows[index]["fingerprint"], inserted[identity])
                               for identity, index in first.items() if identity in inserted])
    results = []
    for index, row in enumerate(rows):
        identity = (row["scope"], row["fingerprint"])
        if first[identity] == index and identity in inserted:
            inbound_id = inserted[identity]
            owner = claimed[row["fingerprint"]]
            results.append(Stored(inbound_id, duplicate=owner != inbound_id,
                                  copy_of=owner if owner != inbound_id else None))
            continue
        existing = session.execute(
            sa.update(InboundMessage)
            .where(InboundMessage.scope == identity[0], InboundMessage.fingerprint == identity[1])
            .values(deliveries=InboundMessage.deliveries + 1)
            .returning(InboundMessage.id)
        ).scalar_one()
        results.append(Stored(existing, duplicate=True))
    return results


def _claim(session, candidates: list[tuple[str, int]]) -> dict[str, int]:
    """{fingerprint: the inbound id acted on} for the rows just inserted: each
    claims its message unless a copy already did (another account's, stored
    before or a moment ago by another receiver, or earlier in this batch). The
    claim's primary key decides, so two transactions storing the same message
    at once still act once: the second waits for the first's commit, then finds
    its claim. Copies that lost are recorded as such, never acted on."""
    owners: dict[str, int] = {}
    for key, inbound_id in candidates:
        owners.setdefault(key, inbound_id)  # the batch's first copy of each message
    if not owners:
        return {}
    dialect = session.get_bind().dialect.name
    # In fingerprint order, so two batches that share messages take their locks in one order.
    won = dict(session.execute(_claim_statement(dialect),
                               [dict(fingerprint=key, inbound_id=owners[key]) for key in sorted(owners)]).all())
    lost = [key for key in owners if key not in won]
    if lost:
        won.update(session.execute(sa.select(MessageClaim.fingerprint, MessageClaim.inbound_id)
                                   .where(MessageClaim.fingerprint.in_(lost))).all())
    claimed = {key: won[key] for key, _ in candidates}
    copies = [(inbound_id, claimed[key]) for key, inbound_id in candidates if claimed[key] != inbound_id]
    now = utcnow()
    for inbound_id, owner in copies:
        session.execute(
            sa.update(InboundMessage).where(InboundMessage.id == inbound_id)
            .values(status=InboundStatus.IGNORED, processed_at=now,
                    outcome=f"the same message as inbound message #{owner}, which another account "
                            "brought first: acted on once, there")
        )
    return claimed


@functools.cache
def _claim_statement(dialect: str):
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(MessageClaim.__table__)
        .on_conflict_do_nothing(index_elements=["fingerprint"])
        .returning(MessageClaim.__table__.c.fingerprint, MessageClaim.__table__.c.inbound_id)
    )


@functools.cache
def _insert_statement(dialect: str):
    """Built once per dialect: the values come as parameters, so each store
    skips building (and coercing) a 17-column statement. It returns the
    identity of each row inserted: rows already there are left out."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(InboundMessage.__table__)
        .on_conflict_do_nothing(index_elements=["scope", "fingerprint"])
        .returning(InboundMessage.__table__.c.id, InboundMessage.__table__.c.scope,
                   InboundMessage.__table__.c.fingerprint)
    )


def account_for_recipient(address: str) -> IncomingAccount | None:
    """The active account an address belongs to: an exact address first,
    then an `@domain` catch-all."""
    address = (address or "").strip().lower()
    if "@" not in address:
        return None
    domain = "@" + address.rsplit("@", 1)[1]
    rows = db.session.execute(
        sa.select(IncomingAddress.address, IncomingAccount)
        .join(IncomingAccount)
        .where(IncomingAddress.address.in_([address, domain]), IncomingAccount.active)
    ).all()
    by_address = {row[0]: row[1] for row in rows}
    return by_address.get(address) or by_address.get(domain)
