"""Turn the raw bytes of an incoming mail into a ParsedMessage: addresses, subject, body, attachments.

Pure and defensive: whatever arrives (broken MIME, unknown charsets, raw 8-bit headers, empty
files) gives a ParsedMessage, with anything lost or doubtful listed in `warnings`.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email.policy
import email.utils
import functools
import io
import itertools
import mimetypes
import quopri
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesParser

from charset_normalizer import from_bytes

from switchboard.inbound.body import Body, choose_body
from switchboard.inbound.bounds import MAX_HEADER_CHARS, MAX_HTML_DEPTH, bound_head, limit_html_depth
from switchboard.inbound.flowed import deletes_space, is_flowed, unflow
from switchboard.inbound.html import html_to_text, sanitize_html, tidy_text
from switchboard.inbound.mime import (
    MimeReader, body_bytes, decode_transfer, original_bytes, split_head, strip_leading, transfer_encoding,
)

DEFAULT_MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024
MAX_FILENAME_LENGTH = 150
# Real mail nests a handful of levels; these bounds keep a hostile message cheap to read.
MAX_MIME_DEPTH = 40
MAX_MIME_PARTS = 2000


@dataclass(frozen=True)
class ParsedAttachment:
    """One file carried by a mail: a real attachment, an inline image or an attached message."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)
    content_id: str | None = None
    inline: bool = False

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class ParsedMessage:
    """What the desk needs from one incoming mail. Sequences are tuples, addresses lower-case."""

    message_id: str | None = None
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    subject: str = ""
    from_address: str | None = None
    from_name: str | None = None
    # Every address the From line names (from_address is the first) and the names of the
    # groups in it: automatic replies go only to a From of one mailbox (outbox.limits).
    from_addresses: tuple[str, ...] = ()
    from_groups: tuple[str, ...] = ()
    reply_to: str | None = None
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    date: datetime | None = None
    # The address in Return-Path: "" for the null sender <>, None when the header is missing.
    return_path: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    text: str = ""
    html: str | None = None
    attachments: tuple[ParsedAttachment, ...] = ()
    # Content type of the whole mail and of every MIME part outside attached messages,
    # so classifiers can see a delivery report without walking MIME again.
    content_type: str = "text/plain"
    part_types: tuple[str, ...] = ()
    report_type: str | None = None
    warnings: tuple[str, ...] = ()
    raw: bytes = field(default=b"", repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), decoded, or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]


# ---------------------------------------------------------------------------------------------
# Charsets

# Decode with the superset that mailers really mean when they declare the narrower charset.
_CHARSET_SUPERSETS = {
    "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "l1": "cp1252",
    "iso8859-1": "cp1252", "iso_8859-1": "cp1252", "us-ascii": "ascii", "ansi_x3.4-1968": "ascii",
    "iso-8859-11": "cp874", "tis-620": "cp874", "windows-874": "cp874",
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "euc-cn": "gb18030",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "ms_kanji": "cp932", "windows-31j": "cp932",
    "euc-kr": "cp949", "ks_c_5601-1987": "cp949", "ks_c_5601": "cp949", "ksc5601": "cp949",
    "big5": "big5hkscs", "x-mac-roman": "mac_roman", "macintosh": "mac_roman",
    "unicode-1-1-utf-7": "utf-7", "utf8": "utf-8", "x-unicode20utf8": "utf-8",
}
_ISO2022JP = ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2", "iso2022_jp_3")
_UNKNOWN_CHARSETS = {"", "unknown-8bit", "x-unknown", "unknown", "x-user-defined", "default",
                     "8bit", "binary", "none", "charset"}


def _codec_names(charset: str | None) -> list[str]:
    """Codecs to try, best first, for a declared charset (possibly bogus)."""
    if not charset:
        return []
    name = charset.strip().strip("\"'").lower().split("*", 1)[0]
    if name in _UNKNOWN_CHARSETS:
        return []
    if name.replace("_", "-") in ("iso-2022-jp", "csiso2022jp"):
        return list(_ISO2022JP)
    name = _CHARSET_SUPERSETS.get(name, name)
    try:
        return [codecs.lookup(name).name]
    except (LookupError, ValueError):
        return []


def decode_bytes(data: bytes, charset: str | None = None, *, fallback: str | None = None) -> str:
    """Decode mail bytes: the declared charset, else UTF-8, else a guess; never raises."""
    if not data:
        return ""
    for codec in _codec_names(charset):
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    if data.isascii():
        return data.decode("ascii")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    for codec in _codec_names(fallback):
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    try:
        best = from_bytes(data[:262144]).best()
        if best is not None and best.encoding:
            return data.decode(best.encoding, errors="replace")
    except Exception:  # a guess that fails must not lose the text: fall through
        pass
    declared = _codec_names(charset)
    return data.decode(declared[0] if declared else "cp1252", errors="replace")


_SURROGATE = re.compile("[\udc80-\udcff]")


def _unescape_surrogates(value: str, fallback: str | None = None) -> str:
    """The email package keeps undecodable 8-bit header bytes as surrogates; decode them properly."""
    if not _SURROGATE.search(value):
        return value
    return decode_bytes(value.encode("utf-8", "surrogateescape"), None, fallback=fallback)


# ---------------------------------------------------------------------------------------------
# Header values

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*?)\?=")
_FOLDING = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_WHITESPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _decode_encoded_word(encoding: str, text: str) -> bytes | None:
    try:
        if encoding.lower() == "b":
            text = re.sub(r"[^A-Za-z0-9+/]", "", text)
            text += "=" * (-len(text) % 4)
            if len(text) % 4 == 1:  # one stray character cannot be decoded
                text = text[:-1] + "=" * 3 if len(text) > 4 else ""
            return base64.b64decode(text)
        return quopri.decodestring(text.replace("_", " ").encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        return None


def decode_header_text(value: str | None, fallback_charset: str | None = None, *,
                       keep_controls: bool = False) -> str:
    """Decode a header value for display: RFC 2047 words, raw 8-bit, folding; one line.
    Control characters are dropped, unless kept for the caller to replace (file names)."""
    if not value:
        return ""
    value = _unescape_surrogates(_FOLDING.sub("", str(value)[:MAX_HEADER_CHARS]), fallback_charset)
    pieces: list[str] = []
    pending: list[tuple[str, bytes]] = []  # adjacent encoded words, joined before decoding

    def flush() -> None:
        # Words of one charset are joined as bytes: mailers split multi-byte characters.
        for charset, group in itertools.groupby(pending, key=lambda item: item[0]):
            data = b"".join(chunk for _, chunk in group)
            pieces.append(decode_bytes(data, charset, fallback=fallback_charset))
        pending.clear()

    position = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[position:match.start()]
        decoded = _decode_encoded_word(match.group(2), match.group(3))
        if decoded is None:
            continue
        if between and not (pending and between.isspace()):
            flush()
            pieces.append(between)
        charset = match.group(1).split("*", 1)[0].lower()
        pending.append((charset, decoded))
        position = match.end()
    flush()
    pieces.append(value[position:])
    text = "".join(pieces)
    return _WHITESPACE.sub(" ", text if keep_controls else _CONTROL.sub("", text)).strip()


_ANGLE_ID = re.compile(r"<([^<>\s]+)>")
_BARE_ID = re.compile(r"[^\s<>,;\"()]+@[^\s<>,;\"()]+")


def parse_message_ids(value: str | None) -> tuple[str, ...]:
    """Message-IDs named in a header, without angle brackets, in order, without repeats."""
    if not value:
        return ()
    # Control characters (a NUL above all: PostgreSQL refuses it in text, and storing
    # would fail for good) go, as decode_header_text drops them from other headers.
    value = _CONTROL.sub("", _FOLDING.sub("", value))
    found = _ANGLE_ID.findall(value) or _BARE_ID.findall(value)
    ids: list[str] = []
    for item in found:
        item = item.strip()
        if item and item not in ids and len(item) <= 998:
            ids.append(item)
    return tuple(ids)


# ---------------------------------------------------------------------------------------------
# Addresses

_ADDR_SPEC = re.compile(r"[^\s<>\"',;:()\[\]]+@[^\s<>\"',;:()\[\]]+")


@dataclass(frozen=True)
class _Address:
    name: str
    address: str


# Runs of encoded words, and the quoted strings, comments and angle brackets they may not be read in.
_ENCODED_RUN = re.compile(r'"(?:[^"\\]|\\.)*"?|\([^()]*\)?|<[^<>]*>?|'
                          r"=\?[^?\s]+\?[bBqQ]\?[^?]*\?=(?:[ \t]*=\?[^?\s]+\?[bBqQ]\?[^?]*\?=)*")


_COMMENT_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|\\.?|[()]|[^"\\()]+', re.DOTALL)
# Both stdlib address parsers read comments recursively: thousands of nested "(" exhaust the stack.
_MAX_COMMENT_PARENS = 32


def _without_comments(value: str) -> str:
    """The value without its comments, read in one pass whatever their nesting."""
    kept: list[str] = []
    depth = 0
    for token in _COMMENT_TOKEN.finditer(value):
        text = token.group()
        if text == "(":
            depth += 1
        elif text == ")" and depth:
            depth -= 1
        elif not depth:
            kept.append(text)
    return "".join(kept)


def _prepare_address_value(value: str, fallback_charset: str | None) -> str:
    """An address header's value made safe for the stdlib parsers: comments dropped where there
    are many (they mean nothing to the desk), and each run of encoded words outside quotes,
    comments and angle brackets replaced by a quoted string of its decoded text (control
    characters and line breaks flattened), so what it decodes to can only be a display name."""
    if value.count("(") > _MAX_COMMENT_PARENS:
        value = _without_comments(value)
    if "=?" not in value:
        return value

    def quoted(match: re.Match) -> str:
        text = match.group()
        if text[0] in '"(<':
            return text
        decoded = decode_header_text(text, fallback_charset)
        return '"' + decoded.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return _ENCODED_RUN.sub(quoted, value)


def first_address(value: str) -> str | None:
    """The first address of a raw address header value, lower-cased, read cheaply: for storing,
    which answers the MTA and must not fail or stall on what a sender wrote. Bounded and
    prepared as the full parse prepares it (an encoded ':' or ',' stays part of a name; nested
    comments cannot exhaust the stack); a value the stdlib still cannot read gives None."""
    prepared = _prepare_address_value(value[:MAX_HEADER_CHARS], None)
    try:
        address = email.utils.parseaddr(prepared)[1]
    except Exception:  # RecursionError and the like: no address, the message is stored all the same
        return None
    return _CONTROL.sub("", address).strip().lower()[:320] or None


def _addresses_from_header(msg: Message, name: str, fallback_charset: str | None,
                           groups: list[str] | None = None) -> list[_Address]:
    """The header's addresses; the names of its groups ("name: a@b, c@d;") go to `groups`."""
    raw_values = [value for key, value in msg.raw_items() if key.lower() == name.lower()]
    if not raw_values:
        return []
    result: list[_Address] = []
    try:
        if msg.policy is _MODERN_POLICY:
            # Encoded words decoded by us into quoted strings first: the stdlib parser decodes
            # them inside its address grammar, where a decoded ":" or "," makes a group or a
            # second address of a display name (=?utf-8?q?Name=0D=0ABcc:_x@y?= <real@evil>).
            headers = [_MODERN_POLICY.header_fetch_parse(name, _prepare_address_value(v, fallback_charset))
                       for v in raw_values]
        else:
            headers = msg.get_all(name) or []
        for header in headers:
            if groups is not None:
                groups.extend(g.display_name for g in getattr(header, "groups", ()) if g.display_name is not None)
            for address in getattr(header, "addresses", ()):
                username = _unescape_surrogates(address.username or "", fallback_charset)
                domain = _unescape_surrogates(address.domain or "", fallback_charset)
                spec = f"{username}@{domain}" if domain else username
                display = _unescape_surrogates(address.display_name or "", fallback_charset)
                result.append(_Address(decode_header_text(display, fallback_charset), spec))
    except Exception:  # the modern header parser has edge cases; the old one still gives addresses
        result = []
    if not result:
        flat = [_prepare_address_value(_unescape_surrogates(_FOLDING.sub("", str(v)), fallback_charset),
                                       fallback_charset) for v in raw_values]
        for display, spec in email.utils.getaddresses(flat):
            result.append(_Address(decode_header_text(display, fallback_charset), spec))
    cleaned: list[_Address] = []
    for item in result:
        spec = _CONTROL.sub("", item.address).strip().strip("<>").lower()
        if not spec:
            # The parser gave up on it; an address written anywhere in the value is still useful.
            match = _ADDR_SPEC.search(" ".join(str(v) for v in raw_values))
            spec = _unescape_surrogates(match.group(0), fallback_charset).lower() if match else ""
        if spec:
            cleaned.append(_Address(item.name, spec))
    return cleaned


# ---------------------------------------------------------------------------------------------
# Attachments

# Path separators and what Windows refuses in a name: each replaced, so the whole name stays.
_UNSAFE_FILENAME_CHARS = re.compile(r'[\\/:*?"<>|]')
# Control characters, and the bidirectional controls that make "gpj.exe" read as "exe.jpg".
_FILENAME_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\.|$)", re.IGNORECASE)


def sanitize_filename(name: str | None, content_type: str = "application/octet-stream") -> str:
    """A file name safe to store and offer for download: the whole name the sender gave (a
    subject such as "[Fwd: 100Mbit/s link]" is not a path), with path separators and control
    characters replaced by "_", and no characters that show nothing."""
    name = unicodedata.normalize("NFC", name or "")
    name = _FILENAME_CONTROLS.sub("_", _WHITESPACE.sub(" ", name))
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cf", "Cs", "Co", "Cn", "Zl", "Zp"))
    name = _UNSAFE_FILENAME_CHARS.sub("_", name)
    name = _WHITESPACE.sub(" ", name).strip().lstrip(".").strip()
    if not name:
        if content_type in ("message/rfc822", "message/global"):
            extension = ".eml"
        else:
            extension = mimetypes.guess_extension(content_type, strict=False) or (
                ".txt" if content_type.startswith(("text/", "message/")) else ".bin")
        name = "attachment" + extension
    if _WINDOWS_RESERVED.match(name):
        name = "_" + name
    if len(name) > MAX_FILENAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10 and stem:
            name = stem[: MAX_FILENAME_LENGTH - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_FILENAME_LENGTH]
    return name


def _message_bytes(part: Message) -> bytes:
    """Serialise a parsed (sub)message as close to the original bytes as the parser allows."""
    buffer = io.BytesIO()
    try:
        BytesGenerator(buffer, mangle_from_=False, maxheaderlen=0,
                       policy=email.policy.compat32).flatten(part, linesep="\n")
        return buffer.getvalue()
    except Exception:
        try:
            return part.as_string(policy=email.policy.compat32).encode("utf-8", "surrogateescape")
        except Exception:
            return b""


# ---------------------------------------------------------------------------------------------
# Walking the MIME tree

_UNQUOTED_NAME = re.compile(r"\b(?:file)?name\s*=\s*([^\"';\s][^\";]*)", re.IGNORECASE)
_BOUNDARY_LINE = re.compile(r"^--([^\s].{0,200}?)\s*$", re.MULTILINE)


def _repair_multipart(part: Message, content_type: str) -> list | None:
    """Recover the parts of a multipart whose declared boundary never appears.

    Mailers get the boundary wrong in several ways (illegal characters, nested parts reusing
    the outer boundary, quoting); the lines that start with `--` in the body say what it is.
    """
    payload = part.get_payload()
    if not isinstance(payload, str) or "\n--" not in "\n" + payload:
        return None
    counts: dict[str, int] = {}
    for match in _BOUNDARY_LINE.finditer(payload):
        candidate = match.group(1)
        if candidate.endswith("--"):
            candidate = candidate[:-2]
        if candidate:
            counts[candidate] = counts.get(candidate, 0) + 1
    if not counts:
        return None
    boundary = max(counts, key=lambda key: (counts[key], len(key)))
    if '"' in boundary or "\\" in boundary:
        return None
    head = f'Content-Type: {content_type}; boundary="{boundary}"\n\n'.encode("utf-8", "surrogateescape")
    try:
        repaired = MimeReader(email.policy.compat32, MAX_MIME_PARTS, MAX_MIME_DEPTH).read(
            head, body_bytes(part))
    except Exception:
        return None
    children = repaired.get_payload()
    if isinstance(children, list) and children:
        return children
    return None


@dataclass
class _Collected:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[ParsedAttachment] = field(default_factory=list)
    part_types: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report_type: str | None = None


class _Walker:
    def __init__(self, max_attachment_bytes: int, fallback_charset: str | None):
        self.max_bytes = max_attachment_bytes
        self.fallback_charset = fallback_charset
        self.parts_seen = 0
        self.body = Body()  # which parts are the body: set by _build before the walk
        self._repaired: dict[int, list | None] = {}

    # -- the message's shape, as body.choose_body reads it

    def content_type(self, part: Message) -> str:
        return self._content_type(part)

    def is_attachment(self, part: Message) -> bool:
        return self._disposition(part) == "attachment"

    def children(self, part: Message) -> list | None:
        """A multipart's parts as the walk reads them (one with a wrong boundary repaired,
        once); None for anything else and for a multipart that cannot be repaired."""
        content_type = self._content_type(part)
        if not content_type.startswith("multipart/"):
            return None
        payload = part.get_payload()
        if isinstance(payload, list):
            return payload
        if id(part) not in self._repaired:
            self._repaired[id(part)] = _repair_multipart(part, content_type)
        return self._repaired[id(part)]

    def content_id(self, part: Message) -> str | None:
        return self._content_id(part)

    def start(self, part: Message) -> str | None:
        try:
            value = part.get_param("start")
        except Exception:
            return None
        return str(value[2] if isinstance(value, tuple) else value) if value else None

    # -- helpers

    def _content_type(self, part: Message) -> str:
        try:
            return part.get_content_type().lower()
        except Exception:
            return "application/octet-stream"

    def _disposition(self, part: Message) -> str | None:
        try:
            value = part.get_content_disposition()
        except Exception:
            value = None
        return value.lower() if value else None

    def _filename(self, part: Message) -> str | None:
        name = None
        try:
            name = part.get_filename() or part.get_param("name")
        except Exception:
            name = None
        if isinstance(name, tuple):  # compat32 gives RFC 2231 values as a triple
            try:
                name = email.utils.collapse_rfc2231_value(name)
            except Exception:
                name = name[2]
        if not name:
            return None
        name = str(name)
        if " " not in name:
            # `filename=This is a test.txt` (unquoted, illegal) is cut at the first space.
            for key, raw in part.raw_items():
                if key.lower() not in ("content-disposition", "content-type"):
                    continue
                match = _UNQUOTED_NAME.search(_FOLDING.sub("", str(raw)))
                if match and match.group(1).strip().startswith(name) and "=?" not in match.group(1):
                    name = match.group(1).strip()
                    break
        return decode_header_text(name, self.fallback_charset, keep_controls=True) or None

    def _content_id(self, part: Message) -> str | None:
        try:
            value = part.get("Content-ID")
        except Exception:
            value = None
        if not value:
            return None
        value = _FOLDING.sub("", str(value)).strip()
        return value[1:-1].strip() if value.startswith("<") and value.endswith(">") else value or None

    def _payload(self, part: Message, collected: _Collected, what: str) -> bytes:
        """The part's bytes as the sender encoded them (inbound.mime decodes; the token of
        the transfer encoding is read whatever its case or the blanks around it)."""
        return decode_transfer(body_bytes(part), transfer_encoding(part), collected.warnings, what)

    def _estimated_size(self, part: Message) -> int:
        payload = part.get_payload()
        if not isinstance(payload, str):
            return 0
        return len(payload) * 3 // 4 if transfer_encoding(part) == "base64" else len(payload)

    def _text(self, part: Message, collected: _Collected, what: str) -> str:
        data = self._payload(part, collected, what)
        try:
            charset = part.get_content_charset()
        except Exception:
            charset = None
        declared = _codec_names(charset)
        text = decode_bytes(data, charset, fallback=self.fallback_charset)
        if "\r" in text:  # parts keep their bytes (CRLF included); text is read with LF line ends
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if charset and not declared and charset.lower() not in _UNKNOWN_CHARSETS:
            collected.warnings.append(f"unknown charset {charset!r} in {what}: guessed")
        return text

    def _attach(self, collected: _Collected, filename: str, content_type: str, data: bytes,
                content_id: str | None, inline: bool) -> None:
        if len(data) > self.max_bytes:
            self._attach_note(collected, filename or content_type, content_type, len(data))
            return
        collected.attachments.append(ParsedAttachment(
            sanitize_filename(filename, content_type), content_type, data, content_id, inline))

    def _attach_note(self, collected: _Collected, filename: str, content_type: str, size: int) -> None:
        """Too large to keep: leave a note in its place so the loss is visible, never silent."""
        collected.warnings.append(
            f"attachment {filename!r} ({content_type}, about {size} bytes) exceeds the "
            f"{self.max_bytes}-byte limit: replaced by a note")
        note = (f"The attachment {filename!r} ({content_type}, about {size} bytes) was larger "
                f"than the limit of {self.max_bytes} bytes and was not kept.\n")
        collected.attachments.append(ParsedAttachment(
            sanitize_filename(filename + ".omitted.txt", "text/plain"), "text/plain",
            note.encode("utf-8"), None, False))

    # -- the walk

    def walk(self, part: Message, collected: _Collected, *, in_related: bool = False,
             depth: int = 0) -> None:
        self.parts_seen += 1
        if depth > MAX_MIME_DEPTH or self.parts_seen > MAX_MIME_PARTS:
            collected.warnings.append("MIME structure too deep or too large: the rest was not read")
            return
        content_type = self._content_type(part)
        collected.part_types.append(content_type)
        maintype = content_type.split("/", 1)[0]
        disposition = self._disposition(part)
        filename = self._filename(part)
        what = f"part {content_type}" + (f" {filename!r}" if filename else "")

        if content_type == "multipart/report" and collected.report_type is None:
            try:
                collected.report_type = (part.get_param("report-type") or "").lower() or None
            except Exception:
                collected.report_type = None

        if maintype == "multipart":
            children = self.children(part)
            if not isinstance(part.get_payload(), list):
                if children is None:
                    # No usable boundary: what is there is most likely the text itself.
                    text = self._text(part, collected, what)
                    if text.strip():
                        collected.warnings.append(f"broken {content_type}: body read as plain text")
                        collected.plain.append(text)
                    return
                collected.warnings.append(f"broken {content_type}: parts recovered from boundary lines")
            for child in children:
                self.walk(child, collected, in_related=(content_type == "multipart/related"), depth=depth + 1)
            return

        if maintype == "message" or (part.is_multipart() and maintype != "multipart"):
            self._attach_message(part, content_type, filename, collected)
            return

        # Only the body's parts are the call's text (body.py); any other text part is a file.
        role = self.body.role(part)
        if role == "version":
            return  # another version of the body's text, in its multipart/alternative
        if role is not None:
            text = self._text(part, collected, what)
            if role == "plain":
                text = _unflowed(part, text)
            (collected.plain if role == "plain" else collected.html).append(text)
            return

        estimated = self._estimated_size(part)
        if estimated > self.max_bytes + 1024:  # do not even decode what we will not keep
            self._attach_note(collected, filename or content_type, content_type, estimated)
            return
        data = self._payload(part, collected, what)
        content_id = self._content_id(part)
        inline = disposition == "inline" or (disposition is None and in_related and content_id is not None)
        self._attach(collected, filename or "", content_type, data, content_id, inline)

    def _attach_message(self, part: Message, content_type: str, filename: str | None,
                        collected: _Collected) -> None:
        payload = part.get_payload()
        if content_type in ("message/rfc822", "message/global") and isinstance(payload, list) and payload:
            inner = payload[0]
            # The attached message as it was sent (decoded first when it was encoded).
            data = original_bytes(inner) or _message_bytes(inner)
            if not filename:
                try:
                    subject = decode_header_text(inner.get("Subject", ""), self.fallback_charset)
                except Exception:
                    subject = ""
                filename = (subject[:80] or "message") + ".eml"
            elif not filename.lower().endswith(".eml"):
                filename += ".eml"
            self._attach(collected, filename, "message/rfc822", data,
                         self._content_id(part), False)
            return
        if isinstance(payload, list):  # message/delivery-status and friends: blocks of fields
            data = b"\n".join(_message_bytes(block) for block in payload)
        else:
            data = self._payload(part, collected, f"part {content_type}")
        if not filename:
            filename = content_type.split("/", 1)[1] + ".txt"
        self._attach(collected, filename, content_type, data, self._content_id(part), False)


def _unflowed(part: Message, text: str) -> str:
    """The text of a format=flowed part with its soft line breaks joined (flowed.py)."""
    try:
        params = {str(k).lower(): str(v) for k, v in (part.get_params() or [])[1:]}
    except Exception:
        return text
    return unflow(text, delsp=deletes_space(params)) if is_flowed(params) else text


# ---------------------------------------------------------------------------------------------
# The message

def _normalise_line_endings(raw: bytes) -> bytes:
    if b"\r" not in raw:
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(_WHITESPACE.sub(" ", value).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    if not 1970 <= parsed.year <= 9999:
        return None
    return parsed


def _root_charset(msg: Message) -> str | None:
    try:
        return msg.get_content_charset()
    except Exception:
        return None


def _build(msg: Message, raw: bytes, max_attachment_bytes: int, warnings: list[str]) -> ParsedMessage:
    fallback = _root_charset(msg)
    if not _codec_names(fallback):
        fallback = None
    raw_headers = [(_CONTROL.sub("", str(name)).strip(), str(value)) for name, value in msg.raw_items()]

    headers = tuple((name, decode_header_text(value, fallback)) for name, value in raw_headers)

    def first_raw(name: str) -> str | None:
        wanted = name.lower()
        for key, value in raw_headers:
            if key.lower() == wanted:
                return _unescape_surrogates(value, fallback)
        return None

    message_ids = parse_message_ids(first_raw("Message-ID"))
    if first_raw("Message-ID") and not message_ids:
        cleaned = _WHITESPACE.sub("", _FOLDING.sub("", first_raw("Message-ID") or "")).strip("<>")
        message_ids = (cleaned,) if cleaned else ()
    in_reply_to = parse_message_ids(first_raw("In-Reply-To"))
    references = parse_message_ids(" ".join(
        _unescape_surrogates(v, fallback) for k, v in raw_headers if k.lower() == "references"))

    from_groups: list[str] = []
    senders = _addresses_from_header(msg, "From", fallback, from_groups)
    if not senders:
        senders = _addresses_from_header(msg, "Sender", fallback)
    reply_to = _addresses_from_header(msg, "Reply-To", fallback)
    return_path_raw = first_raw("Return-Path")
    return_path = None
    if return_path_raw is not None:
        match = _ADDR_SPEC.search(return_path_raw)
        return_path = match.group(0).lower() if match else ""
        if not match and "@" not in return_path_raw:
            inner = return_path_raw.strip().strip("<>").strip()
            return_path = inner.lower()

    walker = _Walker(max_attachment_bytes, fallback)
    walker.body = choose_body(msg, walker)
    collected = _Collected()
    walker.walk(msg, collected)

    plain = tidy_text("\n\n".join(p for p in collected.plain if p.strip()))
    html_source, flattened = limit_html_depth("\n".join(collected.html))
    if flattened:
        warnings.append(f"HTML nested more than {MAX_HTML_DEPTH} levels deep: the deeper markup was flattened")
    html = sanitize_html(html_source) if collected.html else None
    text = plain if plain else html_to_text(html_source)

    defects = sorted({type(defect).__name__ for part in _iter_parts(msg) for defect in
                      getattr(part, "defects", ())})
    if defects:
        warnings.append("MIME defects: " + ", ".join(defects))
    warnings.extend(collected.warnings)

    return ParsedMessage(
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=in_reply_to,
        references=references,
        subject=decode_header_text(first_raw("Subject"), fallback),
        from_address=senders[0].address if senders else None,
        from_name=(senders[0].name or None) if senders else None,
        from_addresses=tuple(a.address for a in senders),
        from_groups=tuple(from_groups),
        reply_to=reply_to[0].address if reply_to else None,
        to=tuple(a.address for a in _addresses_from_header(msg, "To", fallback)),
        cc=tuple(a.address for a in _addresses_from_header(msg, "Cc", fallback)),
        date=_parse_date(first_raw("Date")),
        return_path=return_path,
        headers=headers,
        text=text,
        html=html,
        attachments=tuple(collected.attachments),
        content_type=collected.part_types[0] if collected.part_types else "text/plain",
        part_types=tuple(collected.part_types),
        report_type=collected.report_type,
        warnings=tuple(dict.fromkeys(warnings)),
        raw=raw,
    )


def read_headers(raw: bytes) -> list[tuple[str, str]]:
    """The message's own header fields, bounded and decoded, without reading its body: what an
    admin is shown of a message that was too costly to read whole."""
    head = bound_head(_normalise_line_endings(strip_leading(raw)[0]).partition(b"\n\n")[0])[0]
    msg = BytesParser(policy=email.policy.compat32).parsebytes(head + b"\n\n", headersonly=True)
    return [(_CONTROL.sub("", str(name)).strip(), decode_header_text(str(value)))
            for name, value in msg.raw_items()]


def _broken_multiparts(msg: Message) -> int:
    return sum(1 for part in _iter_parts(msg)
               if part.get_content_maintype() == "multipart" and not isinstance(part.get_payload(), list))


def _iter_parts(msg: Message, depth: int = 0):
    yield msg
    if depth < MAX_MIME_DEPTH and msg.is_multipart():
        payload = msg.get_payload()
        if isinstance(payload, list):
            for child in payload:
                if isinstance(child, Message):
                    yield from _iter_parts(child, depth + 1)


class _ReusingPolicy(email.policy.EmailPolicy):
    """email.policy.default, except that a header value read again (the same
    Content-Type is asked for many times while walking a message, and the
    same values recur from message to message) is not parsed again. Header
    objects are immutable, so sharing them is safe."""

    def header_fetch_parse(self, name, value):
        if hasattr(value, "name") or type(value) is not str or type(name) is not str:
            return super().header_fetch_parse(name, value)
        if len(value) > _CACHED_HEADER_MAX:
            # The headers of MIME parts were not bounded before parsing (bound_head reads the
            # message's own head): cut here what no real header needs, and remember the few
            # long values, which the walk asks for several times per part.
            return _parsed_long_header(self.header_factory, name, value[:MAX_HEADER_CHARS])
        return _parsed_header(self.header_factory, name, value)


@functools.lru_cache(maxsize=4096)
def _parsed_header(factory, name: str, value: str):
    # As EmailPolicy.header_fetch_parse: unfold on \r and \n only.
    return factory(name, "".join(_HEADER_LINE_BREAKS.split(value)))


@functools.lru_cache(maxsize=16)
def _parsed_long_header(factory, name: str, value: str):
    return factory(name, "".join(_HEADER_LINE_BREAKS.split(value)))


_HEADER_LINE_BREAKS = re.compile(r"\n|\r")
# Long values are rare and not worth keeping: the cache stays a few MB at most.
_CACHED_HEADER_MAX = 512
_MODERN_POLICY = _ReusingPolicy()


def parse_message(raw: bytes, max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES) -> ParsedMessage:
    """Parse one raw mail. Raises only TypeError for input that is not bytes."""
    if isinstance(raw, (bytearray, memoryview)):
        raw = bytes(raw)
    if not isinstance(raw, bytes):
        raise TypeError(f"parse_message needs bytes, not {type(raw).__name__}")
    if not raw.strip():
        return ParsedMessage(warnings=("empty message",), raw=raw)
    data, warnings = strip_leading(raw)
    if b"\n" not in data and b"\r" in data:
        data = data.replace(b"\r", b"\n")  # bare CR line ends (old Mac): no part could keep them anyway
    # Only the message's own head is given LF line ends (what the bounds and header parsers
    # read); every body keeps its bytes. Bounded before any stdlib parser sees it (see bounds).
    head, body = split_head(data)
    head, bound_warnings = bound_head(_normalise_line_endings(head))
    warnings.extend(bound_warnings)
    policies = (_MODERN_POLICY, email.policy.compat32)
    if body.count(b"\n--") > MAX_MIME_PARTS // 2:
        # Thousands of parts: the modern parser re-parses every part's headers many times over.
        policies = (email.policy.compat32,)
        warnings.append("very many MIME parts: read with the simpler parser")
    for policy in policies:
        try:
            reader = MimeReader(policy, MAX_MIME_PARTS, MAX_MIME_DEPTH)
            msg = reader.read(head, body)
            if policy is _MODERN_POLICY and _broken_multiparts(msg):
                # The modern parser reads some unquoted boundaries (with "=") wrongly.
                old_reader = MimeReader(email.policy.compat32, MAX_MIME_PARTS, MAX_MIME_DEPTH)
                old_style = old_reader.read(head, body)
                if _broken_multiparts(old_style) < _broken_multiparts(msg):
                    msg, reader = old_style, old_reader
            return _build(msg, raw, max_attachment_bytes, warnings + reader.warnings)
        except Exception as error:  # the next policy is more forgiving; note why we needed it
            warnings.append(f"parser fallback after {type(error).__name__}: {error}"[:300])
    # Both parsers failed: keep the bytes as text so nothing the sender wrote is lost.
    return ParsedMessage(text=tidy_text(decode_bytes(data)), warnings=tuple(warnings), raw=raw)
