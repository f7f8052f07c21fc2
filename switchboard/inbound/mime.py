"""Read the MIME structure of an incoming mail from its exact bytes, as RFC 2045/2046 describe it.

The email package's feed parser is kept for what it does well (header fields), but not for the
structure: it needed every line ending turned into LF first (which corrupted binary parts), it
only takes a delimiter line that is the boundary and nothing else, and it reads a message/rfc822
part as a message before its transfer encoding is undone. Here each part's body is the bytes
between its delimiter lines, untouched (RFC 2046: the line break before a delimiter belongs to
the delimiter), and the tree is built from email.message.Message objects so the rest of the
desk reads it as before. One pass of bytes.find per multipart level, bounded by the part limit
and the depth limit: no scan is repeated per part.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
from email import errors
from email.message import Message
from email.parser import BytesParser

UTF8_BOM = b"\xef\xbb\xbf"
_LINE_END = re.compile(rb"\r\n|\n|\r")
# The end of the header section: the first empty line (LF or CRLF line endings).
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_MBOX_FROM = re.compile(rb"From [^\r\n]*(?:\r\n|\n|\r|$)")
_NOT_BLANK = re.compile(rb"[^\r\n]")
_HEADER_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_BLANK_LINE = re.compile(rb"[ \t]*(?:\r\n|\n|\r)")

_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = bytes(b for b in range(256) if b not in _BASE64_ALPHABET + b"=")
_BASE64_OR_SPACE = _BASE64_ALPHABET + b"= \t\r\n"
_QP_SOFT_BREAK = re.compile(rb"=[ \t]+(?=\r?\n)")

# Where an attached message keeps the bytes it was read from (see original_bytes).
_ORIGINAL = "_desk_original_bytes"

_BLANKS = re.compile(r"[\s_]+")

IDENTITY_ENCODINGS = frozenset({"", "7bit", "8bit", "binary"})
DECODED_ENCODINGS = frozenset({"base64", "quoted-printable", "x-uuencode", "uuencode", "uue", "x-uue"})


def strip_leading(raw: bytes) -> tuple[bytes, list[str]]:
    """`raw` without what some systems put before the first header field: a UTF-8 byte-order
    mark, blank lines, an mbox `From ` envelope line. A removed mark or blank lines are named
    in a warning (they are faults of the sender); the envelope line is not."""
    warnings: list[str] = []
    start = 0
    if raw.startswith(UTF8_BOM):
        start = len(UTF8_BOM)
        warnings.append("a byte-order mark before the first header: removed")
    blank, at = 0, start
    while (match := _BLANK_LINE.match(raw, at)) is not None and blank < 1000:
        at, blank = match.end(), blank + 1
    # Only before a header field (or an mbox line): a message that starts with an empty line
    # and has none is all body, and stays so.
    if blank and (_HEADER_FIELD.match(raw, at) or raw.startswith(b"From ", at)):
        start = at
        warnings.append(f"{blank} blank line(s) before the first header: removed")
    if raw.startswith(b"From ", start) and (match := _MBOX_FROM.match(raw, start)) is not None:
        # The envelope line of mbox files and of MTAs' pipe transports: normal, not a fault.
        start = match.end()
    return (raw[start:] if start else raw), warnings


def split_head(data: bytes) -> tuple[bytes, bytes]:
    """(header section with its ending empty line, body) of one entity. Without an empty line
    everything is header section: the parser gives back what is not a field as body."""
    if data[:1] in (b"\n", b"\r"):
        match = _LINE_END.match(data)
        return data[:match.end()], data[match.end():]
    match = _HEAD_END.search(data)
    if match is None:
        return data, b""
    return data[:match.end()], data[match.end():]


def transfer_encoding(part: Message) -> str:
    """The part's Content-Transfer-Encoding as a token: case, blanks and quotes around it do
    not matter (`BASE64\\t`, `"base64"`), nor does what follows a ";" or "(" (a comment), and
    `quoted printable` is read as quoted-printable."""
    try:
        value = str(part.get("Content-Transfer-Encoding", "") or "")
    except Exception:
        return ""
    value = re.split(r"[;(]", value, maxsplit=1)[0].strip().strip("\"'").strip().lower()
    return _BLANKS.sub("-", value)


def decode_base64(data: bytes, warnings: list[str], what: str) -> bytes:
    """RFC 2045 6.8: characters outside the alphabet are skipped; "=" ends the data. A last
    group too short to make a byte is dropped (stray characters before a boundary), and said."""
    if data.translate(None, _BASE64_OR_SPACE):
        warnings.append(f"{what}: characters outside the base64 alphabet skipped")
    letters = data.translate(None, _NOT_BASE64)
    pad = letters.find(b"=")
    padded = pad >= 0
    if padded:
        if letters[pad:].strip(b"="):
            warnings.append(f"{what}: base64 data after the padding ignored")
        letters = letters[:pad]
    extra = len(letters) % 4
    if extra == 1 or (extra and not padded):
        # Complete groups are the data; an unpadded short group is junk, not bytes.
        warnings.append(f"{what}: {extra} stray base64 character(s) at the end ignored")
        letters = letters[:len(letters) - extra]
    elif extra:
        letters += b"=" * (4 - extra)
    try:
        return base64.b64decode(letters)
    except (binascii.Error, ValueError):  # cannot happen with the cleaning above; keep the bytes
        warnings.append(f"{what}: base64 could not be decoded: kept as sent")
        return data


def decode_quoted_printable(data: bytes) -> bytes:
    """RFC 2045 6.7; a soft line break followed by blanks (added in transit) is still one."""
    if b"=" not in data:
        return data
    return binascii.a2b_qp(_QP_SOFT_BREAK.sub(b"=", data))


def decode_transfer(data: bytes, cte: str, warnings: list[str], what: str) -> bytes:
    """The bytes the sender encoded. An unknown encoding keeps the bytes as sent, with a warning."""
    if cte in IDENTITY_ENCODINGS:
        return data
    if cte in DECODED_ENCODINGS and not data.strip():
        return b""
    if cte == "base64":
        return decode_base64(data, warnings, what)
    if cte == "quoted-printable":
        return decode_quoted_printable(data)
    if cte in DECODED_ENCODINGS:  # uuencode: the stdlib's reader, which copes with broken encoders
        from email.message import _decode_uu  # noqa: PLC0415 (a private helper, used where needed)
        try:
            return _decode_uu(data)
        except (ValueError, binascii.Error):
            warnings.append(f"{what}: uuencoded data could not be decoded: kept as sent")
            return data
    warnings.append(f"unknown transfer encoding {cte!r} in {what}: kept as is")
    return data


def original_bytes(msg: Message) -> bytes | None:
    """The exact bytes an attached message was read from (after its transfer encoding was
    undone), so it is kept as sent rather than as the email package would write it again."""
    return getattr(msg, _ORIGINAL, None)


def body_bytes(part: Message) -> bytes:
    """A leaf part's body as it was sent (still transfer-encoded). Message.get_payload()
    would decode 8-bit bytes with the declared charset first; the walk needs the bytes."""
    payload = part._payload  # noqa: SLF001 (what the email package's own generator reads)
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    return payload if isinstance(payload, bytes) else b""


class MimeReader:
    """Builds the Message tree of one mail. `max_parts` and `max_depth` bound the work: past
    them the rest is not split (and a warning says so)."""

    def __init__(self, policy, max_parts: int, max_depth: int):
        self.policy = policy
        self.max_parts = max_parts
        self.max_depth = max_depth
        self.parts = 0
        self.warnings: list[str] = []

    def read(self, head: bytes, body: bytes, depth: int = 0, default_type: str | None = None) -> Message:
        """One entity from its header section (ending with its empty line) and its body."""
        msg = BytesParser(policy=self.policy).parsebytes(head, headersonly=True)
        if default_type:
            msg.set_default_type(default_type)  # the parts of a multipart/digest are messages
        leftover = body_bytes(msg)
        if leftover:
            # A line in the head that is not a field: the parser says the body starts there.
            body = leftover + body
        self._fill(msg, body, depth)
        return msg

    def read_bytes(self, data: bytes, depth: int = 0, default_type: str | None = None) -> Message:
        head, body = split_head(data)
        return self.read(head, body, depth, default_type)

    def _fill(self, msg: Message, body: bytes, depth: int) -> None:
        self.parts += 1
        maintype = msg.get_content_maintype()
        if maintype in ("multipart", "message") and (depth >= self.max_depth or self.parts > self.max_parts):
            self.warnings.append("MIME structure too deep or too large: the rest was not read")
            msg.set_payload([] if maintype == "multipart" else body.decode("ascii", "surrogateescape"))
            return
        if maintype == "multipart":
            self._fill_multipart(msg, body, depth)
        elif maintype == "message":
            self._fill_message(msg, body, depth)
        else:
            msg.set_payload(body.decode("ascii", "surrogateescape"))

    def _encoded_composite(self, msg: Message, body: bytes, marker: bytes | None = None) -> bytes:
        """A multipart or message part is never transfer-encoded (RFC 2045 6.4); some senders
        encode it all the same. Undo that first, unless its body is plainly not encoded."""
        cte = transfer_encoding(msg)
        if cte in IDENTITY_ENCODINGS:
            return body
        if marker is not None and _find_delimiter(body, marker, 0) is not None:
            return body  # the delimiters are there as they are: the label is wrong, not the body
        what = f"a {msg.get_content_type()} part"
        if cte in ("base64", "quoted-printable"):
            self.warnings.append(f"{what} sent {cte}-encoded: decoded, then read")
            return decode_transfer(body, cte, self.warnings, what)
        self.warnings.append(f"unknown transfer encoding {cte!r} in {what}: read as it is")
        return body

    def _fill_message(self, msg: Message, body: bytes, depth: int) -> None:
        body = self._encoded_composite(msg, body)
        if msg.get_content_type() == "message/delivery-status":
            # Blocks of fields separated by empty lines, each read as the stdlib reads them.
            # Read by offsets: each block is copied once, however many there are.
            blocks = []
            at = 0
            while len(blocks) < 100 and (found := _NOT_BLANK.search(body, at)) is not None:
                at = found.start()  # after the empty lines between blocks: a line's start
                end = _HEAD_END.search(body, at)
                at_end = end.end() if end is not None else len(body)
                blocks.append(BytesParser(policy=self.policy).parsebytes(body[at:at_end], headersonly=True))
                at = at_end
            msg.set_payload(blocks)
            return
        inner = self.read_bytes(body, depth + 1)
        setattr(inner, _ORIGINAL, body)
        msg.set_payload([inner])

    def _fill_multipart(self, msg: Message, body: bytes, depth: int) -> None:
        boundary = _declared_boundary(msg)
        if boundary is None or not boundary.strip():
            msg.defects.append(errors.NoBoundaryInMultipartDefect())
            msg.set_payload(body.decode("ascii", "surrogateescape"))
            return
        if boundary != boundary.rstrip():
            # RFC 2046 forbids a boundary that ends in a blank: mailers write the delimiter
            # lines with or without the blanks, and the closing one as "--B  --". The blanks
            # are read as the transport padding a delimiter line may carry.
            self.warnings.append(f"{msg.get_content_type()}: boundary declared with trailing blanks: "
                                 "read without them")
            boundary = boundary.rstrip()
        marker = b"--" + boundary.encode("utf-8", "surrogateescape")
        body = self._encoded_composite(msg, body, marker)
        bodies, preamble, epilogue, closed, junk = _split_multipart(
            body, marker, self.max_parts - self.parts + 1)
        if bodies is None:
            msg.defects.append(errors.StartBoundaryNotFoundDefect())
            msg.set_payload(body.decode("ascii", "surrogateescape"))
            return
        if not bodies:
            msg.defects.append(errors.StartBoundaryNotFoundDefect())  # only a closing delimiter
        if junk:
            self.warnings.append(f"{msg.get_content_type()}: delimiter line(s) with text after the "
                                 "boundary: read as delimiters (RFC 2046 5.1.1)")
        if not closed:
            msg.defects.append(errors.CloseBoundaryNotFoundDefect())
        msg.preamble = preamble.decode("ascii", "surrogateescape") if preamble else None
        msg.epilogue = epilogue.decode("ascii", "surrogateescape") if epilogue is not None else None
        children = []
        default_type = "message/rfc822" if msg.get_content_type() == "multipart/digest" else None
        for part in bodies:
            if self.parts >= self.max_parts:
                self.warnings.append("MIME structure too deep or too large: the rest was not read")
                break
            children.append(self.read_bytes(part, depth + 1, default_type))
        msg.set_payload(children)


def _declared_boundary(msg: Message) -> str | None:
    """The boundary parameter as declared (the stdlib's get_boundary drops trailing blanks,
    which hides that the closing delimiter may carry them before its "--")."""
    try:
        value = msg.get_param("boundary")
    except Exception:
        value = None
    if isinstance(value, tuple):
        value = email.utils.collapse_rfc2231_value(value)
    if value is None:
        return msg.get_boundary()
    return str(value)


def _find_delimiter(body: bytes, marker: bytes, start: int) -> tuple[int, int, bool, bool] | None:
    """The next delimiter line at or after `start`: (its start, where the next line starts,
    whether it closes, whether text follows the boundary on it). RFC 2046 5.1.1: a line that
    begins with the boundary is a delimiter, whatever blanks (or, after a blank, text) follow;
    a line where the boundary runs on into other characters belongs to another boundary."""
    length = len(body)
    at = start
    while True:
        found = body.find(marker, at)
        if found < 0:
            return None
        at = found + 1
        if found and body[found - 1] not in b"\r\n":
            continue
        line_end = body.find(b"\n", found)
        next_line = length if line_end < 0 else line_end + 1
        rest = body[found + len(marker):next_line].rstrip(b"\r\n")
        closing = rest.startswith(b"--")
        if closing:
            rest = rest[2:]
        elif rest[:1] in (b" ", b"\t") and rest.lstrip(b" \t").startswith(b"--"):
            # "--B  --": a boundary declared with trailing blanks, closed with them.
            after = rest.lstrip(b" \t")[2:]
            if not after or after[:1] in (b" ", b"\t"):
                closing, rest = True, after
        if rest and rest[:1] not in (b" ", b"\t"):
            continue
        return found, next_line, closing, bool(rest.strip())


def _without_line_end(data: bytes) -> bytes:
    """The bytes before a delimiter, without the line break that belongs to the delimiter."""
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith((b"\n", b"\r")):
        return data[:-1]
    return data


def _split_multipart(body: bytes, marker: bytes, budget: int):
    """(part bodies, preamble, epilogue, closed, any delimiter with text after it); part bodies
    is None when no delimiter is found. At most `budget` parts are cut out; the rest of the
    body is then left unread."""
    first = _find_delimiter(body, marker, 0)
    if first is None:
        return None, body, None, False, False
    preamble = _without_line_end(body[:first[0]])
    bodies: list[bytes] = []
    junk = first[3]
    current = first
    while not current[2]:
        following = _find_delimiter(body, marker, current[1])
        end = following[0] if following is not None else len(body)
        content = body[current[1]:end]
        if following is not None:
            content = _without_line_end(content)
        if content or following is None:
            # Two delimiters in a row make no part (as the stdlib and RFC 2046's grammar read it).
            if content:
                bodies.append(content)
        if following is None:
            return bodies, preamble, None, False, junk
        junk = junk or following[3]
        current = following
        if len(bodies) >= budget:
            return bodies, preamble, None, True, junk
    epilogue = body[current[1]:]
    return bodies, preamble, epilogue, True, junk
