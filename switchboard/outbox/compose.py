"""Builds every outgoing mail: headers, threading, reply token and loop-protection marks.

One composer for all message types. Headers are set only through the `email` API, so
text that came from a customer (a call summary, a display name) can never add a header.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime
from typing import NamedTuple

# Our own mail carries this header; the inbound side ignores mail that has it, so a
# notification bounced or auto-forwarded back to the desk never becomes a call.
OUR_MARKER_HEADER = "X-Switchboard-Origin"

# The reply token as it appears in subjects and body footers: "[SB-<token>]".
REPLY_TOKEN_RE = re.compile(r"\[SB-([A-Za-z0-9_-]{16,40})\]")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,40}")

AUTO_SUBMITTED_VALUES = ("auto-generated", "auto-replied")

# Headers the composer owns; callers may not set them through extra_headers.
_RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "In-Reply-To",
        "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
        "Content-Disposition", "Auto-Submitted", "X-Auto-Response-Suppress",
        OUR_MARKER_HEADER, "Return-Path", "Received",
    )
)
_HEADER_NAME_RE = re.compile(r"^[!-9;-~]+$")  # RFC 5322 ftext: printable ASCII except ':'
_MSGID_RE = re.compile(r"^<[^<>\s]+@[^<>\s]+>$")
_MAX_REFERENCES = 20


# RFC 5322 2.1.1: lines SHOULD stay within 78 characters, MUST within 998; RFC 2047 2: an
# encoded word is at most 75 characters.
_LINE = 78
_LONGEST_BARE_WORD = 900
_ENCODED_BYTES = 45  # 60 base64 characters, 72 with "=?utf-8?b?" and "?=": within 75


def fold_subject(subject: str, linesep: str = "\r\n") -> str:
    """The Subject header line(s), folded only between words and never before
    the first: Python's folder puts a long first word on a line of its own
    ("Subject:" CRLF " CALL-1 ..."), which its own parser then reads back with
    a leading space (some clients show it). Words are kept as typed; a run of
    non-ASCII words (or anything that would read as an encoded word) becomes
    RFC 2047 encoded words, the spaces inside the run encoded with it, because
    readers drop the whitespace between two encoded words."""
    atoms: list[str] = []
    run: list[str] = []
    for word in one_line(subject).split(" "):
        if word and word.isascii() and "=?" not in word and len(word) <= _LONGEST_BARE_WORD:
            if run:
                atoms.extend(_encoded_words(" ".join(run)))
                run = []
            atoms.append(word)
        elif word:
            run.append(word)
    if run:
        atoms.extend(_encoded_words(" ".join(run)))
    lines = ["Subject:"]
    for index, atom in enumerate(atoms):
        if index and len(lines[-1]) + 1 + len(atom) > _LINE:
            lines.append(" " + atom)
        else:
            lines[-1] += " " + atom
    return linesep.join(lines) + linesep


def _encoded_words(text: str) -> list[str]:
    """`text` as UTF-8 base64 encoded words of at most 75 characters, split between characters."""
    words, chunk = [], b""
    for char in text:
        data = char.encode("utf-8")
        if chunk and len(chunk) + len(data) > _ENCODED_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += data
    if chunk:
        words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words]


class _DeskPolicy(EmailPolicy):
    """policy.SMTP, with the Subject folded by fold_subject."""

    def fold(self, name, value):
        if name.lower() == "subject":
            return fold_subject(str(value), self.linesep)
        return super().fold(name, value)

    def fold_binary(self, name, value):
        if name.lower() == "subject":
            return fold_subject(str(value), self.linesep).encode("ascii")
        return super().fold_binary(name, value)


_POLICY = _DeskPolicy(linesep="\r\n")


class ComposeError(ValueError):
    """The mail cannot be built as asked (bad address, bad header, bad Message-ID)."""


class Attachment(NamedTuple):
    """A file to attach; a plain (filename, content_type, data) tuple works too."""

    filename: str
    content_type: str
    data: bytes


def new_message_id(domain: str) -> str:
    """A fresh, unguessable Message-ID such as `<kq3V0x2tJc1mA9fRkW8Zp3nL@desk.example.org>`."""
    if not domain or any(c.isspace() or c in "<>@" or ord(c) > 126 for c in domain):
        raise ComposeError(f"not a usable Message-ID domain: {domain!r}")
    # 144 random bits: unique without a clock or pid, and short enough not to be folded.
    return f"<{secrets.token_urlsafe(18)}@{domain}>"


def new_reply_token() -> str:
    """An unguessable token (24 characters of [A-Za-z0-9_-], 144 random bits)."""
    return secrets.token_urlsafe(18)


def find_reply_token(text: str) -> str | None:
    """The first `[SB-<token>]` in a subject or body, or None."""
    match = REPLY_TOKEN_RE.search(text or "")
    return match.group(1) if match else None


def subject_with_token(subject: str, token: str | None) -> str:
    """The subject flattened to one line, with ` [SB-<token>]` appended unless present."""
    subject = one_line(subject)
    if token and f"[SB-{token}]" not in subject:
        subject = f"{subject} [SB-{token}]" if subject else f"[SB-{token}]"
    return subject


def one_line(text: str | None) -> str:
    """Collapse every run of whitespace (CR, LF, tabs...) to one space."""
    return " ".join((text or "").split())


def compose_message(
    *,
    from_addr: str,
    from_name: str | None,
    to: Sequence[str],
    cc: Sequence[str] | None = (),
    subject: str,
    text: str,
    html: str | None = None,
    message_id: str,
    in_reply_to: str | None = None,
    references: Iterable[str] = (),
    reply_token: str | None = None,
    automatic: bool | str = True,
    attachments: Iterable[Attachment | tuple[str, str, bytes]] = (),
    extra_headers: Mapping[str, str] | None = None,
    origin: str = "switchboard",
    date: datetime | None = None,
) -> EmailMessage:
    """Build one outgoing mail.

    Subjects and display names are flattened to one line (they often come from what
    customers typed); addresses and Message-IDs that are not valid raise ComposeError.
    `automatic` is True for `Auto-Submitted: auto-generated`, the string "auto-replied"
    for a reply to an incoming mail (RFC 3834), or False for mail an analyst wrote.
    `origin` is the value of our marker header (the desk's instance name).
    """
    if not to and not cc:
        raise ComposeError("a mail needs at least one recipient")
    if reply_token is not None and not _TOKEN_RE.fullmatch(reply_token):
        raise ComposeError("a reply token is 16-40 characters of [A-Za-z0-9_-]")

    msg = EmailMessage(policy=_POLICY)
    msg["From"] = _address(from_addr, from_name)
    if to:
        msg["To"] = [_address(a) for a in to]
    if cc:
        msg["Cc"] = [_address(a) for a in cc]
    msg["Subject"] = subject_with_token(subject, reply_token)
    msg["Date"] = format_datetime(date or datetime.now(timezone.utc))
    msg["Message-ID"] = _msgid(message_id, strict=True)

    parent = _msgid(in_reply_to) if in_reply_to else None
    chain = [_msgid(r) for r in references if r and r.strip()]
    if parent and parent not in chain:
        chain.append(parent)
    if len(chain) > _MAX_REFERENCES:
        # Keep the thread's root and the most recent ids (RFC 5322 3.6.4 suggests this).
        chain = chain[:1] + chain[-(_MAX_REFERENCES - 1):]
    if parent:
        msg["In-Reply-To"] = parent
    if chain:
        msg["References"] = " ".join(chain)

    auto = _auto_submitted(automatic)
    if auto:
        msg["Auto-Submitted"] = auto
        # Exchange/Outlook: no out-of-office or delivery-receipt replies to us.
        msg["X-Auto-Response-Suppress"] = "All"
    msg[OUR_MARKER_HEADER] = one_line(origin) or "switchboard"

    for name, value in (extra_headers or {}).items():
        if not _HEADER_NAME_RE.match(name) or name.lower() in _RESERVED_HEADERS:
            raise ComposeError(f"header {name!r} cannot be set as an extra header")
        try:
            msg[name] = value
        except ValueError as error:
            raise ComposeError(f"header {name!r}: {error}") from None

    msg.set_content(_with_text_footer(text, reply_token), **_text_encoding(text))
    if html is not None:
        msg.add_alternative(_with_html_footer(html, reply_token), subtype="html",
                            cte="quoted-printable")
    for attachment in attachments:
        filename, content_type, data = attachment
        maintype, _, subtype = (content_type or "").partition("/")
        if not maintype or not subtype:
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(bytes(data), maintype=maintype, subtype=subtype,
                           filename=one_line(filename) or "attachment")
    return msg


def message_to_bytes(msg: EmailMessage) -> bytes:
    """The mail as bytes with CRLF line endings, ready for SMTP DATA."""
    return msg.as_bytes(policy=_POLICY)


def mailto_link(address: str, subject: str, body: str = "") -> str:
    """A `mailto:` URL that opens a reply with the given subject (and body) filled in."""
    from urllib.parse import quote

    query = "subject=" + quote(one_line(subject), safe="")
    if body:
        query += "&body=" + quote(body, safe="")
    return f"mailto:{quote(address, safe='@')}?{query}"


def _address(addr: str, name: str | None = None) -> Address:
    addr = (addr or "").strip()
    try:
        if not addr or any(c in addr for c in "\r\n"):
            raise ValueError("empty or contains a line break")
        address = Address(display_name=one_line(name), addr_spec=addr)
    except (ValueError, IndexError, HeaderParseError) as error:
        raise ComposeError(f"not a valid email address: {addr!r} ({error})") from None
    if not address.username or not address.domain:
        raise ComposeError(f"not a valid email address: {addr!r}")
    return address


def _msgid(value: str, *, strict: bool = False) -> str:
    value = (value or "").strip()
    if value and not value.startswith("<") and not strict:
        value = f"<{value}>"
    if not _MSGID_RE.match(value) or any(ord(c) < 33 or ord(c) > 126 for c in value):
        raise ComposeError(f"not a valid Message-ID: {value!r}")
    return value


def _auto_submitted(automatic: bool | str) -> str | None:
    if automatic is True:
        return "auto-generated"
    if not automatic:
        return None
    if automatic not in AUTO_SUBMITTED_VALUES:
        raise ComposeError(f"automatic must be True, False or one of {AUTO_SUBMITTED_VALUES}")
    return automatic


def _text_encoding(text: str) -> dict[str, str]:
    # Plain ASCII with short lines stays readable as 7bit; anything else is
    # quoted-printable so no relay needs 8BITMIME.
    if text.isascii() and all(len(line) <= 78 for line in text.splitlines()):
        return {}
    return {"cte": "quoted-printable"}


def _footer_line(token: str) -> str:
    return f"Ref: [SB-{token}] (please keep this line when you reply)"


def _with_text_footer(text: str, token: str | None) -> str:
    text = text or ""
    if not token or f"[SB-{token}]" in text:
        return text
    return f"{text.rstrip()}\n\n{_footer_line(token)}\n"


def _with_html_footer(html: str, token: str | None) -> str:
    if not token or f"[SB-{token}]" in html:
        return html
    footer = f'<p style="color:#666;font-size:12px">{_footer_line(token)}</p>'
    at = html.lower().rfind("</body>")
    if at == -1:
        return html + footer
    return html[:at] + footer + html[at:]
