"""`mail ingest`: a message handed over by a file or a pipe (an MTA's pipe
transport, a script). Stored and committed first, then acted on at once.

Exit statuses follow sysexits.h, which MTAs understand: 75 (EX_TEMPFAIL)
when a message could not be stored, so the MTA keeps it and retries."""

import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator

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


# --- mbox files -----------------------------------------------------------------------------

_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
# Fields a mail store or an MTA's delivery writes at the top of each message it keeps. A
# "From " line is a separator when the header after it has one, or when the message before it
# is a multipart that has ended: a bounce that quotes the mail it returns, "From " line and
# all, is one message, not two.
_DELIVERY_FIELD = re.compile(
    rb"(?i)(?:return-path|received|delivered-to|x-original-to|envelope-to|x-envelope-from|status|"
    rb"x-status|x-uid|x-keywords|x-mozilla-status|x-gm-thrid|x-gmail-labels)[ \t]*:")
_BOUNDARY = re.compile(rb'(?is)^content-type:[ \t]*multipart/.*?boundary[ \t]*=[ \t]*"?([^"\r\n;]+)', re.MULTILINE)
_PIECE = 1 << 20  # lines are read at most this long, so a file without line breaks stays bounded
_MAX_HEADER_LINES = 500  # of a possible separator's header, read ahead before deciding


def starts_like_mbox(start: bytes) -> bool:
    """Whether a file beginning with `start` is an mbox: its first line an mbox `From ` line."""
    return start.removeprefix(b"\xef\xbb\xbf").startswith(b"From ")


def _is_separator(lines: list[bytes], previous_ended: bool) -> bool:
    """Whether a "From " line (lines[0]) and the lines after it begin a message of an mbox."""
    if len(lines) < 2 or not _FIELD.match(lines[1]):
        return False
    return previous_ended or any(_DELIVERY_FIELD.match(line) for line in lines[1:])


def mbox_messages(source: BinaryIO, limit: int) -> Iterator[bytes | int]:
    """The messages of an mbox, read as it streams by, each without its `From ` separator line
    and the empty line before the next one. The first line of the file is a separator; any
    other is a line starting with "From " after an empty line, followed by a header that has a
    field a mail store writes (a body line that happens to start with "From " is not one). A
    message larger than `limit` bytes is not kept: its size is yielded instead, and reading
    goes on with the next."""
    kept: list[bytes] = []
    size = 0
    at_line_start, after_blank = True, True
    ahead: list[bytes] | None = None  # a "From " line and the header lines after it, undecided
    started = False
    head: list[bytes] | None = []  # the current message's header lines, until its empty line
    closing: bytes | None = None  # the closing delimiter of the current message, if multipart
    ended = False  # whether that closing delimiter has been seen

    def add(piece: bytes) -> None:
        nonlocal size, head, closing, ended
        if head is not None:
            if piece.strip() and len(head) < _MAX_HEADER_LINES:
                head.append(piece)
            else:
                found = _BOUNDARY.search(b"".join(head))
                closing = b"--" + found.group(1).strip() + b"--" if found else None
                head = None
        elif closing is not None and not ended and piece.startswith(closing):
            ended = not piece[len(closing):].strip()
        size += len(piece)
        if size > limit:
            kept.clear()  # only its size is wanted now
        else:
            kept.append(piece)

    def finished() -> bytes | int:
        nonlocal size, head, closing, ended
        head, closing, ended = [], None, False
        if size > limit:
            whole: bytes | int = size
        else:
            if kept and kept[-1] in (b"\n", b"\r\n"):
                kept.pop()  # the empty line before the next separator is the mbox's
            whole = b"".join(kept)
        kept.clear()
        size = 0
        return whole

    def decide(lines: list[bytes]) -> Iterator[bytes | int]:
        nonlocal started
        if not started or _is_separator(lines, ended):
            if started:
                yield finished()
            started = True
            lines = lines[1:]
        for line in lines:
            add(line)

    while piece := source.readline(_PIECE):
        if ahead is not None:
            header_goes_on = _FIELD.match(piece) or (piece[:1] in (b" ", b"\t") and len(ahead) > 1)
            if header_goes_on and len(ahead) < _MAX_HEADER_LINES:
                ahead.append(piece)
                at_line_start = piece.endswith(b"\n")
                continue
            yield from decide(ahead)
            ahead = None
        if at_line_start and after_blank and piece.startswith((b"From ", b"\xef\xbb\xbfFrom ")):
            ahead = [piece]
            after_blank, at_line_start = False, piece.endswith(b"\n")
            continue
        add(piece)
        after_blank = at_line_start and piece in (b"\n", b"\r\n")
        at_line_start = piece.endswith(b"\n")
    if ahead is not None:
        yield from decide(ahead)
    if started or size:
        yield finished()
