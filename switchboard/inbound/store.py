"""Step one for every transport: keep the raw message, durably, once.

The transport (LMTP, IMAP, POP3, pipe) calls `store_message`, commits, and
only then acknowledges (250 / move / delete). Acting on the message is a
separate step (`switchboard.inbound.process`), so a failure there loses
nothing. Storing the same message again is harmless: it is recognised by its
fingerprint within the account's scope and only counted."""

import functools
import hashlib
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from switchboard.blobs import digest, store as blob_store
from switchboard.db import db, utcnow
from switchboard.inbound.bounds import bound_head
from switchboard.inbound.models import IncomingAccount, IncomingAddress, InboundMessage, InboundStatus
from switchboard.inbound.parse import decode_header_text, first_address, parse_message_ids

# Headers that say what the message is, not how it travelled: the same mail
# fetched by IMAP and pushed over LMTP differs only in trace headers
# (Received, Delivered-To, Return-Path...) and maybe line endings.
IDENTITY_HEADERS = ("message-id", "from", "to", "cc", "date", "subject")


@dataclass(frozen=True)
class Stored:
    inbound_id: int
    duplicate: bool


def _split(raw: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n", b"\r\r"):
        at = raw.find(sep)
        if at != -1:
            return raw[:at], raw[at + len(sep):]
    return raw, b""


def _normalise(data: bytes) -> bytes:
    return b"\n".join(line.rstrip() for line in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")).strip()


def fingerprint(raw: bytes, headers) -> str:
    h = hashlib.sha256()
    for name in IDENTITY_HEADERS:
        for value in headers.get_all(name, []):
            h.update(name.encode() + b":" + " ".join(str(value).split()).encode("utf-8", "replace") + b"\n")
    h.update(b"\n")
    h.update(_normalise(_split(raw)[1]))
    return h.hexdigest()


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
        # The head only: given the whole message the parser would still read the body line by
        # line. Bounded as the full parse bounds it (inbound.bounds), since this answers the MTA.
        head, _ = bound_head(_split(raw)[0].replace(b"\r\n", b"\n"))
        headers = BytesHeaderParser(policy=compat32).parsebytes(head + b"\n\n")
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
    results = []
    for index, row in enumerate(rows):
        identity = (row["scope"], row["fingerprint"])
        if first[identity] == index and identity in inserted:
            results.append(Stored(inserted[identity], duplicate=False))
            continue
        existing = session.execute(
            sa.update(InboundMessage)
            .where(InboundMessage.scope == identity[0], InboundMessage.fingerprint == identity[1])
            .values(deliveries=InboundMessage.deliveries + 1)
            .returning(InboundMessage.id)
        ).scalar_one()
        results.append(Stored(existing, duplicate=True))
    return results


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
