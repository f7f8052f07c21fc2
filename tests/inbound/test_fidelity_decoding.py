"""Mail read exactly as sent (issue 10, items 1-5 and 10): transfer encodings however they are
spelled, encoded attached messages, what comes before the first header, boundaries as RFC 2046
reads them, binary parts byte for byte, whole attachment names.

Each class has messages written here (RFC 2045/2046 examples where they fit); every decoded part
is compared byte for byte with what was encoded, and one test per class drives a message through
the pipeline (stored, acted on) and checks what the analyst sees on the call, on both databases."""

import base64
import binascii
import email.policy
import quopri

import pytest

from switchboard.blobs import store as blob_store
from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.history.services import timeline
from switchboard.inbound.mime import MimeReader, split_head
from switchboard.inbound.models import InboundStatus
from switchboard.inbound.parse import parse_message
from switchboard.inbound.store import store_message
from tests.inbound.test_pipeline import account, deliver  # noqa: F401 (account is a fixture)

# Bytes no text decoder would keep: every byte value, lone CRs and LFs, CRLFs, a NUL run. (Not
# ending in CR: in an LF mail, a CR before the LF that precedes a delimiter reads as CRLF, which
# RFC 2046 gives to the delimiter.)
BINARY = bytes(range(256)) + b"a\rb\nc\r\nd\n\re\r\r\n\n\x00\x00\rend"
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def b64(data: bytes) -> bytes:
    """Base64 in 76-character lines with CRLF, as mailers write it."""
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def mail(head: str, body: bytes, *, subject: str = "Printer on floor 3", eol: bytes = b"\r\n") -> bytes:
    """A message with CRLF line ends (LF with eol=b"\\n"); `head` holds the MIME headers."""
    lines = ["From: Carol <carol@example.org>", "To: help@desk.test", f"Subject: {subject}",
             f"Message-ID: <{abs(hash((head, body, subject)))}@example.org>", "MIME-Version: 1.0"]
    lines += [line for line in head.split("\n") if line]
    return eol.join(line.encode() for line in lines) + eol + eol + body


def mixed(*parts: bytes, boundary: str = "OUTER", eol: bytes = b"\r\n") -> tuple[str, bytes]:
    body = b"".join(b"--" + boundary.encode() + eol + part + eol for part in parts)
    return f'Content-Type: multipart/mixed; boundary="{boundary}"', body + b"--" + boundary.encode() + b"--" + eol


def part(headers: str, body: bytes, eol: bytes = b"\r\n") -> bytes:
    return eol.join(h.encode() for h in headers.split("\n")) + eol + eol + body


def files(parsed) -> dict[str, bytes]:
    return {a.filename: a.data for a in parsed.attachments}


def call_of(row) -> Call:
    assert row.status is InboundStatus.PROCESSED, row.outcome
    return db.session.get(Call, row.call_id)


def call_files(call) -> dict[str, bytes]:
    return {a.filename: blob_store.get(a.blob_sha256) for a in timeline(call)[0].attachments}


# -- 1. Content-Transfer-Encoding, however it is spelled

CTE_SPELLINGS = ["base64", "BASE64", "Base64 ", "base64\t", " base64", '"base64"', "base64 (encoded)"]


@pytest.mark.parametrize("spelling", CTE_SPELLINGS)
def test_base64_spellings_decode_the_image_byte_for_byte(spelling):
    image = part(f'Content-Type: image/png; name="shot.png"\nContent-Transfer-Encoding: {spelling}\n'
                 'Content-Disposition: attachment; filename="shot.png"', b64(PNG))
    parsed = parse_message(mail(*mixed(part("Content-Type: text/plain", b"See the screenshot."), image)))
    assert files(parsed) == {"shot.png": PNG}
    assert not [w for w in parsed.warnings if "encoding" in w]


@pytest.mark.parametrize("spelling", ["quoted-printable", "Quoted-Printable ", "QUOTED-PRINTABLE\t",
                                      "quoted printable", "quoted-printable;"])
def test_quoted_printable_spellings_decode_the_text(spelling):
    text = " ".join(["Caf\u00e9 on floor 3: the espresso machine leaks = water everywhere."] * 3)
    body = quopri.encodestring(text.encode("utf-8")).replace(b"\n", b"\r\n")
    parsed = parse_message(mail(f"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: {spelling}", body))
    assert parsed.text == text.strip()


def test_unknown_transfer_encoding_keeps_the_bytes_and_says_so():
    data = b"x-gzip64 payload that nobody here can decode\r\n\x01\x02"
    image = part('Content-Type: application/octet-stream; name="blob.gz"\nContent-Transfer-Encoding: x-gzip64', data)
    parsed = parse_message(mail(*mixed(part("Content-Type: text/plain", b"Attached."), image)))
    assert files(parsed) == {"blob.gz": data}
    assert any("unknown transfer encoding 'x-gzip64'" in w for w in parsed.warnings)


def test_uuencode_spelled_oddly_is_decoded():
    encoded = b"begin 644 note.txt\r\n" + binascii.b2a_uu(b"hello").replace(b"\n", b"\r\n") + b"`\r\nend\r\n"
    attached = part('Content-Type: application/octet-stream; name="note.txt"\nContent-Transfer-Encoding: X-UUENCODE ',
                    encoded)
    parsed = parse_message(mail(*mixed(part("Content-Type: text/plain", b"Attached."), attached)))
    assert files(parsed) == {"note.txt": b"hello"}


def test_call_shows_the_image_of_a_part_encoded_as_BASE64_with_a_tab(account):
    image = part('Content-Type: image/png; name="shot.png"\nContent-Transfer-Encoding: BASE64\t\n'
                 'Content-Disposition: attachment; filename="shot.png"', b64(PNG))
    text = part("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: Quoted-Printable ",
                b"The scanner shows =E2=80=9Coffline=E2=80=9D.")
    call = call_of(deliver(mail(*mixed(text, image), subject="Scanner offline"), account))
    assert "The scanner shows \u201coffline\u201d." in call.description
    assert call_files(call) == {"shot.png": PNG}


# -- 2. message/rfc822 sent base64- or quoted-printable-encoded

def inner_message() -> bytes:
    """A forwarded message with a text part and an image, CRLF line ends."""
    head, body = mixed(part("Content-Type: text/plain; charset=utf-8", "Tray 2 jams again \u2014 see photo.".encode()),
                       part('Content-Type: image/png; name="tray.png"\nContent-Transfer-Encoding: base64\n'
                            'Content-Disposition: attachment; filename="tray.png"', b64(PNG)), boundary="INNER")
    return mail(head, body, subject="Tray 2 jams")


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_encoded_attached_message_is_decoded_then_read_as_a_message(encoding):
    inner = inner_message()
    encoded = b64(inner) if encoding == "base64" else quopri.encodestring(inner)
    attached = part(f"Content-Type: message/rfc822\nContent-Transfer-Encoding: {encoding}", encoded)
    parsed = parse_message(mail(*mixed(part("Content-Type: text/plain", b"Forwarding this."), attached)))
    assert files(parsed) == {"Tray 2 jams.eml": inner}
    again = parse_message(files(parsed)["Tray 2 jams.eml"])
    assert again.text == "Tray 2 jams again \u2014 see photo." and files(again) == {"tray.png": PNG}
    assert any(f"message/rfc822 part sent {encoding}-encoded" in w for w in parsed.warnings)


def test_plain_attached_message_is_kept_as_sent_with_its_binary_part():
    inner_head, inner_body = mixed(part("Content-Type: text/plain", b"Log attached."),
                                   part('Content-Type: application/octet-stream; name="dump.bin"\n'
                                        "Content-Transfer-Encoding: binary", BINARY), boundary="INNER")
    inner = mail(inner_head, inner_body, subject="Dump")
    parsed = parse_message(mail(*mixed(part("Content-Type: text/plain", b"Fwd."), part("Content-Type: message/rfc822",
                                                                                          inner))))
    assert files(parsed) == {"Dump.eml": inner}
    assert files(parse_message(inner)) == {"dump.bin": BINARY}


def test_call_keeps_the_forwarded_message_of_a_base64_rfc822_part_whole(account):
    inner = inner_message()
    attached = part("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64", b64(inner))
    call = call_of(deliver(mail(*mixed(part("Content-Type: text/plain", b"Forwarding this."), attached),
                                subject="Fwd: Tray 2 jams"), account))
    assert call_files(call) == {"Tray 2 jams.eml": inner}
    assert files(parse_message(call_files(call)["Tray 2 jams.eml"])) == {"tray.png": PNG}


# -- 3. what comes before the first header

ARF_HEAD = "Content-Type: text/plain; charset=utf-8"


@pytest.mark.parametrize("prefix, warned", [
    (b"\xef\xbb\xbf", "byte-order mark"),
    (b"\r\n\r\n", "blank line"),
    (b"\xef\xbb\xbf\n\n", "blank line"),
    (b"From carol@example.org Thu Dec  2 00:28:39 2026\r\n", None),
])
def test_headers_after_a_bom_blank_lines_or_an_mbox_line_are_all_read(prefix, warned):
    parsed = parse_message(prefix + mail(ARF_HEAD, "Abuse report: caf\u00e9 spam".encode(), subject="Report"))
    assert (parsed.from_address, parsed.subject, parsed.text) == ("carol@example.org", "Report",
                                                                  "Abuse report: caf\u00e9 spam")
    assert parsed.header("Content-Type") == ARF_HEAD.split(": ", 1)[1]
    if warned:
        assert any(warned in w for w in parsed.warnings)
    else:
        assert not parsed.warnings


def test_a_message_that_starts_with_an_empty_line_is_all_body():
    # No header at all (RFC 5322 allows it): the empty line is the end of an empty header.
    parsed = parse_message(b"\r\nJust text, no header: a note.\r\nSecond line.\r\n")
    assert parsed.text == "Just text, no header: a note.\nSecond line." and not parsed.warnings


def test_call_from_a_mail_with_a_bom_has_its_sender_and_subject(account):
    call = call_of(deliver(b"\xef\xbb\xbf" + mail(ARF_HEAD, b"Toner is low.", subject="Toner"), account))
    assert call.summary == "Toner" and "Toner is low." in call.description


def test_a_mail_with_a_bom_is_stored_with_its_headers_and_is_the_same_message_without_it(account):
    raw = mail(ARF_HEAD, b"Toner is low.", subject="Toner")
    row = deliver(b"\xef\xbb\xbf" + raw, account)
    # The inbound log's sender, subject and Message-ID, read when the mail is stored.
    assert (row.from_address, row.subject, row.message_id) == ("carol@example.org", "Toner",
                                                              parse_message(raw).message_id)
    assert store_message(raw, source="lmtp", account=account, envelope_to=["help@desk.test"]).duplicate


# -- 4. boundaries as RFC 2046 reads them

# RFC 2046 section 5.1.1, the example body: the line break before each delimiter is the
# delimiter's, so the first part does not end with one and the second does.
RFC2046_EXAMPLE = (
    b"This is the preamble.  It is to be ignored, though it\r\n"
    b"is a handy place for composition agents to include an\r\n"
    b"explanatory note to non-MIME conformant readers.\r\n"
    b"\r\n"
    b"--simple boundary\r\n"
    b"\r\n"
    b"This is implicitly typed plain US-ASCII text.\r\n"
    b"It does NOT end with a linebreak.\r\n"
    b"--simple boundary\r\n"
    b"Content-type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"This is explicitly typed plain US-ASCII text.\r\n"
    b"It DOES end with a linebreak.\r\n"
    b"\r\n"
    b"--simple boundary--\r\n"
    b"\r\n"
    b"This is the epilogue.  It is also to be ignored.\r\n")


def test_rfc2046_example_parts_are_exactly_the_bytes_between_delimiters():
    raw = mail('Content-Type: multipart/mixed; boundary="simple boundary"', RFC2046_EXAMPLE)
    msg = MimeReader(email.policy.default, 100, 10).read(*split_head(raw))
    first, second = msg.get_payload()
    assert first._payload == "This is implicitly typed plain US-ASCII text.\r\nIt does NOT end with a linebreak."
    assert second._payload == "This is explicitly typed plain US-ASCII text.\r\nIt DOES end with a linebreak.\r\n"
    assert msg.epilogue == "\r\nThis is the epilogue.  It is also to be ignored.\r\n"
    assert parse_message(raw).text == ("This is implicitly typed plain US-ASCII text.\n"
                                       "It does NOT end with a linebreak.")


def boundary_trap(delimiter: bytes, closing: bytes, declared: str = "B0UND") -> bytes:
    body = (b"preamble\r\n" + delimiter + b"\r\nContent-Type: text/plain\r\n\r\nThe badge reader at door 4 is dead.\r\n"
            b"--B0UNDARY-LIKE line that is text\r\n"
            + delimiter + b"\r\n" + part('Content-Type: application/octet-stream; name="reader.bin"\n'
                                         "Content-Transfer-Encoding: binary", BINARY)
            + b"\r\n" + closing + b"\r\nepilogue: unsubscribe here\r\n")
    return mail(f'Content-Type: multipart/mixed; boundary="{declared}"', body)


@pytest.mark.parametrize("delimiter, closing, declared, warned", [
    (b"--B0UND", b"--B0UND--", "B0UND", None),
    (b"--B0UND   ", b"--B0UND--\t ", "B0UND", None),  # transport padding (RFC 2046)
    (b"--B0UND junk after it", b"--B0UND-- more junk", "B0UND", "text after the boundary"),
    (b"--B0UND  ", b"--B0UND  --", "B0UND  ", "trailing blanks"),  # declared with blanks, closed with them
    (b"--B0UND", b"--B0UND--", "B0UND  ", "trailing blanks"),  # declared with blanks, written without
])
def test_delimiter_lines_as_rfc2046_reads_them(delimiter, closing, declared, warned):
    parsed = parse_message(boundary_trap(delimiter, closing, declared))
    assert parsed.text == "The badge reader at door 4 is dead.\n--B0UNDARY-LIKE line that is text"
    assert files(parsed) == {"reader.bin": BINARY}
    assert "epilogue" not in parsed.text and "B0UND--" not in parsed.text
    if warned:
        assert any(warned in w for w in parsed.warnings)


@pytest.mark.parametrize("encoded, warned", [
    (b"QUJD\r\n!!\r\n", "outside the base64 alphabet"),      # junk outside the alphabet: skipped
    (b"QUJD\r\nxyz\r\n", "stray base64"),                   # stray letters before the boundary
    (b"QUI=\r\nxyz\r\n", "after the padding"),              # anything after the padding
    (b"QU\r\nJD*\r\n", "outside the base64 alphabet"),      # junk inside a group
])
def test_base64_junk_before_a_boundary_is_not_decoded_into_bytes(encoded, warned):
    attached = part('Content-Type: application/octet-stream; name="abc.bin"\nContent-Transfer-Encoding: base64',
                    encoded)
    parsed = parse_message(mail(*mixed(part("Content-Type: text/plain", b"See file."), attached)))
    assert files(parsed) == {"abc.bin": b"ABC" if b"QUI=" not in encoded else b"AB"}
    assert any(warned in w for w in parsed.warnings), parsed.warnings


def test_call_from_a_mail_with_junk_after_its_delimiters_keeps_text_and_file(account):
    call = call_of(deliver(boundary_trap(b"--B0UND junk after it", b"--B0UND-- more junk"), account))
    assert "The badge reader at door 4 is dead." in call.description and "unsubscribe" not in call.description
    assert call_files(call) == {"reader.bin": BINARY}


# -- 5. binary and 8bit parts keep their bytes, CR included

@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
@pytest.mark.parametrize("encoding", ["binary", "8bit"])
def test_binary_and_8bit_parts_are_kept_byte_for_byte(encoding, eol):
    data = BINARY if encoding == "binary" else b"line one\r\nline two\nbare\rCR\r\n\xe9t\xe9\r\n"
    attached = part(f'Content-Type: application/octet-stream; name="data.bin"\nContent-Transfer-Encoding: {encoding}',
                    data, eol)
    raw = mail(*mixed(part("Content-Type: text/plain", b"Data attached.", eol), attached, eol=eol), eol=eol)
    assert files(parse_message(raw)) == {"data.bin": data}


def test_text_of_a_crlf_mail_reads_with_plain_line_ends():
    parsed = parse_message(mail("Content-Type: text/plain", b"one\r\ntwo\r\n\r\nthree\r\n"))
    assert parsed.text == "one\ntwo\n\nthree"


def test_call_keeps_a_binary_attachment_byte_for_byte(account):
    attached = part('Content-Type: application/octet-stream; name="core.bin"\nContent-Transfer-Encoding: binary',
                    BINARY)
    call = call_of(deliver(mail(*mixed(part("Content-Type: text/plain", b"Core dump attached."), attached),
                                subject="Crash"), account))
    assert call_files(call) == {"core.bin": BINARY}


# -- 10. attachment names: the whole name, path separators and control characters replaced

@pytest.mark.parametrize("declared, shown", [
    ('filename="C:\\\\Users\\\\carol\\\\report.pdf"', "C__Users_carol_report.pdf"),
    ('filename="../../etc/passwd"', "_.._etc_passwd"),
    ("filename*=utf-8''bill%01%7Fing%0A2026.pdf", "bill__ing 2026.pdf"),
    ('filename="=?utf-8?q?a=1Bb=E2=80=AEfdp.exe?="', "a_b_fdp.exe"),
    ('filename="100Mbit/s link.txt"', "100Mbit_s link.txt"),
])
def test_attachment_names_keep_the_whole_name(declared, shown):
    attached = part(f"Content-Type: application/octet-stream\nContent-Disposition: attachment; {declared}", b"x")
    assert list(files(parse_message(mail(*mixed(part("Content-Type: text/plain", b"See."), attached))))) == [shown]


def test_attached_message_named_after_its_subject_keeps_the_whole_subject(account):
    inner = mail("Content-Type: text/plain", b"Link down.", subject="[Fwd: Re: 100Mbit/s link]")
    call = call_of(deliver(mail(*mixed(part("Content-Type: text/plain", b"Fwd."),
                                       part("Content-Type: message/rfc822", inner))), account))
    assert call_files(call) == {"[Fwd_ Re_ 100Mbit_s link].eml": inner}
