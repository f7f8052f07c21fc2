"""Every mail in the public corpus parses, quickly, into what a person reading it would expect."""

import mailbox
import re
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.inbound.parse import ParsedMessage, parse_message
from switchboard.inbound.quotes import strip_quoted_reply

NOT_MAIL = {"LICENSE", "README.md", "MANIFEST.sha256", "UPSTREAM-README.md"}
SECONDS_PER_MESSAGE = 5.0


def corpus_messages(corpus: Path):
    """(name, raw bytes) for every file in the corpus, and every message inside the mboxes."""
    for path in sorted(p for p in corpus.rglob("*") if p.is_file()):
        if path.name in NOT_MAIL or path.suffix == ".json":
            continue
        name = str(path.relative_to(corpus))
        yield name, path.read_bytes()
        if path.parent.name == "mailbox" and path.name.startswith("mbox"):
            box = mailbox.mbox(path, create=False)
            for key in box.keys():
                yield f"{name}#{key}", box.get_bytes(key)


def parse_file(corpus: Path, name: str) -> ParsedMessage:
    return parse_message((corpus / name).read_bytes())


def test_every_corpus_message_parses_quickly(corpus):
    failures, slowest, count = [], (0.0, ""), 0
    for name, raw in corpus_messages(corpus):
        count += 1
        started = time.perf_counter()
        try:
            parsed = parse_message(raw)
        except Exception as error:  # the point of the test: report every one, not just the first
            failures.append(f"{name}: {type(error).__name__}: {error}")
            continue
        elapsed = time.perf_counter() - started
        slowest = max(slowest, (elapsed, name))
        if elapsed > SECONDS_PER_MESSAGE:
            failures.append(f"{name}: took {elapsed:.1f} s")
        if parsed.html is not None and re.search(r"<script|\son\w+\s*=|src=\"https?:", parsed.html, re.I):
            failures.append(f"{name}: unsafe HTML survived sanitising")
        if "\x00" in parsed.text or "\x00" in parsed.subject:
            failures.append(f"{name}: NUL character in text")
    print(f"{count} messages parsed; slowest {slowest[0] * 1000:.0f} ms ({slowest[1]})")
    assert count > 1100
    assert not failures, "\n".join(failures)


def test_empty_and_tiny_files_give_an_empty_message_with_a_warning(corpus):
    for name in ("size-0", "size-1", "size-2"):
        parsed = parse_file(corpus, f"sisimai-set-of-emails/mailbox/{name}")
        assert parsed.message_id is None and parsed.from_address is None
        assert parsed.warnings
    assert parse_message(b"").warnings == ("empty message",)


def test_only_bytes_are_accepted():
    with pytest.raises(TypeError):
        parse_message("From: a@example.com\n\nhello")  # type: ignore[arg-type]
    assert parse_message(bytearray(b"Subject: hi\n\nbody")).subject == "hi"


def test_rfc2231_filename_continuations_in_iso_2022_jp(corpus):
    parsed = parse_file(corpus, "bestpractical-rt/emails/rfc2231-attachment-filename-continuations")
    assert [a.filename for a in parsed.attachments] == ["新しいテキスト ドキュメント.txt"]
    assert parsed.attachments[0].data.decode("utf-8-sig").startswith("Some data in a file")


def test_iso_2022_jp_subject_and_body(corpus):
    parsed = parse_file(corpus, "mikel-mail/emails/multi_charset/japanese_iso_2022.eml")
    assert parsed.subject == "まみむめも"
    assert parsed.text.strip() == "すみません。"  # as `iconv -f ISO-2022-JP` reads it


def test_korean_ks_c_5601_body(corpus):
    parsed = parse_file(corpus, "mikel-mail/emails/multi_charset/ks_c_5601-1987.eml")
    assert parsed.text.strip() == "스티해"  # as `iconv -f CP949` reads it


def test_raw_utf8_headers(corpus):
    parsed = parse_file(corpus, "mikel-mail/emails/rfc6532/utf8_headers.eml")
    assert parsed.subject == "Säying Hello"
    assert parsed.from_name == "Jöhn Doe"
    assert parsed.from_address == "jdöe@mächine.example"
    assert parsed.to == ("märy@exämple.net",)


def test_attachment_with_known_size(corpus):
    parsed = parse_file(corpus, "cpython-test_email/msg_07.txt")
    (gif,) = parsed.attachments
    assert (gif.filename, gif.content_type, gif.size) == ("dingusfish.gif", "image/gif", 3512)
    assert gif.data.startswith(b"GIF87a")
    pdf = parse_file(corpus, "mikel-mail/emails/attachment_emails/attachment_pdf.eml").attachments[0]
    assert pdf.filename == "broken.pdf" and pdf.data.startswith(b"%PDF")


def test_unquoted_filename_with_spaces_is_kept_whole(corpus):
    parsed = parse_file(corpus, "mikel-mail/emails/attachment_emails/attachment_with_unquoted_name.eml")
    assert [a.filename for a in parsed.attachments] == ["This is a test.txt"]


def test_attached_message_is_an_eml_attachment(corpus):
    parsed = parse_file(corpus, "bestpractical-rt/emails/outlook-rfc822")
    (attached,) = parsed.attachments
    assert attached.filename == "Updates to our terms of use.eml"
    assert attached.content_type == "message/rfc822"
    assert parse_message(attached.data).subject == "Updates to our terms of use"


def test_inline_image_keeps_its_content_id(corpus):
    parsed = parse_file(corpus, "mikel-mail/emails/attachment_emails/attachment_message_rfc822_inline_image.eml")
    image = next(a for a in parsed.attachments if a.content_type == "image/png")
    assert image.inline and image.content_id
    assert f"cid:{image.content_id}" in parsed.html


def test_illegal_boundary_still_yields_the_body(corpus):
    for name in ("raw_email_with_illegal_boundary.eml", "raw_email_with_quoted_illegal_boundary.eml"):
        parsed = parse_file(corpus, f"mikel-mail/emails/mime_emails/{name}")
        assert parsed.text.startswith("Hello\nThis is an outlook test"), name


def test_bare_cr_and_crlf_files_read_like_their_lf_originals(corpus):
    maildir = corpus / "sisimai-set-of-emails/maildir"
    compared = 0
    for variant in ("dos", "mac"):
        for path in sorted((maildir / variant).glob("*.eml")):
            original = maildir / "bsd" / path.name
            raw = path.read_bytes()
            if not original.exists() or raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n") != original.read_bytes():
                continue
            mine, theirs = parse_message(raw), parse_message(original.read_bytes())
            assert (mine.subject, mine.from_address, mine.text, mine.date) == (
                theirs.subject, theirs.from_address, theirs.text, theirs.date), path.name
            compared += 1
    assert compared >= 100


def test_talon_replies_read_as_the_new_text_only(corpus):
    talon = corpus / "mailgun-talon/standard_replies"
    for name in ("gmail", "outlook", "yahoo", "thunderbird", "android", "hotmail"):
        parsed = parse_message((talon / f"{name}.eml").read_bytes())
        assert strip_quoted_reply(parsed.text) == "Hello", name


def _message_with_attachment(filename: str, data: bytes) -> bytes:
    message = EmailMessage()
    message["From"] = "Ann Example <Ann@Example.COM>"
    message["To"] = "desk@example.org"
    message["Subject"] = "Update call 42"
    message.set_content("See attached.")
    message.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    return message.as_bytes()


def test_oversized_attachment_is_replaced_by_a_note_never_dropped():
    parsed = parse_message(_message_with_attachment("big.bin", b"x" * 5000), max_attachment_bytes=1000)
    (note,) = parsed.attachments
    assert note.filename == "big.bin.omitted.txt" and b"larger than the limit" in note.data
    assert any("big.bin" in warning and "limit" in warning for warning in parsed.warnings)
    assert parsed.from_address == "ann@example.com" and parsed.from_name == "Ann Example"


def test_attachment_names_cannot_escape_or_hide_their_type():
    # Issue 10 item 10: the whole name is kept, separators and control characters replaced.
    for hostile, expected in (("../../etc/passwd", "_.._etc_passwd"), ("C:\\Windows\\evil.exe", "C__Windows_evil.exe"),
                              ("report\u202egnp.exe", "report_gnp.exe"), ("bell\x07.txt", "bell_.txt"),
                              ("x" * 400 + ".pdf", "x" * 146 + ".pdf"), ("", "attachment.bin")):
        (attachment,) = parse_message(_message_with_attachment(hostile, b"data")).attachments
        assert attachment.filename == expected, hostile


def test_message_ids_dates_and_references():
    raw = (b"Message-ID: <abc@example.com>\nIn-Reply-To: <x@y>\n"
           b"References: <r1@y>\n <r2@y> <r1@y>\nDate: Mon, 2 Apr 2012 18:22:10 +0400\n"
           b"Subject: =?utf-8?q?Caf=C3=A9?=   =?utf-8?q?_ol=C3=A9?=\n  folded\n\nbody\n")
    parsed = parse_message(raw)
    assert parsed.message_id == "abc@example.com"
    assert parsed.in_reply_to == ("x@y",) and parsed.references == ("r1@y", "r2@y")
    assert parsed.date.utcoffset().total_seconds() == 4 * 3600
    assert parsed.subject == "Café olé folded"


def test_html_only_mail_gets_text_and_safe_html():
    raw = (b"Content-Type: text/html; charset=utf-8\n\n<p>Printer <b>broken</b></p>"
           b"<script>alert(1)</script><img src=\"http://tracker.example/p.gif\" onerror=\"x()\">")
    parsed = parse_message(raw)
    assert parsed.text == "Printer broken"
    assert "<script" not in parsed.html and "tracker" not in parsed.html and "onerror" not in parsed.html
    assert "<b>broken</b>" in parsed.html


MIME_SOUP = [b"Content-Type: multipart/mixed; boundary=", b"Content-Type: text/html; charset=",
             b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: quoted-printable",
             b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC", b"Subject: =?utf-8?b?", b"=?=",
             b"From: <@>", b"Date: 99 Foo 99999", b"\n--", b"\r", b"\n\n", b"\xff\xfe", b"--b--", b"b", b":",
             b"Content-Type: message/rfc822", b"Message-ID: <", b"\x00"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000) | st.lists(st.sampled_from(MIME_SOUP), max_size=40).map(b"".join))
def test_any_bytes_parse_without_raising(raw):
    parsed = parse_message(raw)
    assert isinstance(parsed.text, str) and isinstance(parsed.subject, str)
    assert all(isinstance(a.data, bytes) and a.filename for a in parsed.attachments)
