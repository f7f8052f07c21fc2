"""Composed mail as a real SMTP server receives it: headers, threading, token, no injection."""

import re

import pytest

from switchboard.outbox.compose import (
    OUR_MARKER_HEADER, Attachment, ComposeError, compose_message, find_reply_token,
    message_to_bytes, new_message_id, new_reply_token,
)
from switchboard.outbox.smtp import Outcome, SmtpSession


def _compose(**overrides):
    values = dict(
        from_addr="servicedesk@example.org", from_name="Acme Service Desk",
        to=["ann.customer@example.com"], cc=[], subject="CALL-42 logged: printer jams",
        text="Hello Ann,\n\nWe have logged your call.\n", message_id="<m1@desk.example.org>",
        origin="desk-test",
    )
    values.update(overrides)
    return compose_message(**values)


def _content(part) -> str:
    # What the reader sees; the wire form keeps SMTP's CRLF.
    return part.get_content().replace("\r\n", "\n")


def _deliver(sink, msg, recipients=None):
    recipients = recipients or [str(a.addr_spec) for a in msg["To"].addresses]
    with SmtpSession(sink.settings()) as session:
        result = session.send("bounces@example.org", recipients, message_to_bytes(msg))
    assert result.outcome is Outcome.SENT, result
    return sink.messages[-1]


def test_composed_mail_arrives_with_its_headers_threading_and_token(smtp_sink):
    token = new_reply_token()
    msg = _compose(
        to=["ann.customer@example.com"], cc=["sam.analyst@example.org"],
        message_id="<reply-2@desk.example.org>", in_reply_to="<customer-1@mail.example.com>",
        references=["<root-0@desk.example.org>"], reply_token=token,
        html="<html><body><p>Hello Ann</p></body></html>",
        attachments=[Attachment("log.txt", "text/plain", b"line 1\nline 2\n")],
    )
    received = _deliver(smtp_sink, msg, ["ann.customer@example.com", "sam.analyst@example.org"])
    got = received.message

    assert received.mail_from == "bounces@example.org"
    assert received.rcpt_tos == ["ann.customer@example.com", "sam.analyst@example.org"]
    assert got["From"] == "Acme Service Desk <servicedesk@example.org>"
    assert got["To"] == "ann.customer@example.com"
    assert got["Cc"] == "sam.analyst@example.org"
    assert got["Subject"] == f"CALL-42 logged: printer jams [SB-{token}]"
    assert got["Message-ID"] == "<reply-2@desk.example.org>"
    assert got["In-Reply-To"] == "<customer-1@mail.example.com>"
    assert got["References"].split() == ["<root-0@desk.example.org>",
                                         "<customer-1@mail.example.com>"]
    assert got["Auto-Submitted"] == "auto-generated"
    assert got["X-Auto-Response-Suppress"] == "All"
    assert got[OUR_MARKER_HEADER] == "desk-test"
    assert got["Date"].datetime is not None
    assert got["Bcc"] is None

    text = _content(got.get_body(("plain",)))
    html = _content(got.get_body(("html",)))
    assert text.startswith("Hello Ann,\n\nWe have logged your call.")
    assert find_reply_token(text) == token
    assert find_reply_token(html) == token
    assert html.index(f"[SB-{token}]") < html.index("</body>")
    [attachment] = list(got.iter_attachments())
    assert attachment.get_filename() == "log.txt"
    assert attachment.get_payload(decode=True) == b"line 1\nline 2\n"


def test_crlf_in_subject_cannot_add_a_bcc_header(smtp_sink):
    msg = _compose(subject="x\r\nBcc: evil@x")
    received = _deliver(smtp_sink, msg)

    assert received.message["Bcc"] is None
    assert received.message["Subject"] == "x Bcc: evil@x"
    assert not re.search(rb"^Bcc:", received.data, re.MULTILINE | re.IGNORECASE)
    assert received.rcpt_tos == ["ann.customer@example.com"]


def test_crlf_in_display_name_is_flattened_not_a_header():
    raw = message_to_bytes(_compose(from_name="Desk\r\nBcc: evil@x\nX-Evil: 1"))
    assert not re.search(rb"^(Bcc|X-Evil):", raw, re.MULTILINE | re.IGNORECASE)
    assert b'"Desk Bcc: evil@x X-Evil: 1" <servicedesk@example.org>' in raw


@pytest.mark.parametrize("bad", ["ann@example.com\r\nBcc: evil@x", "not an address", "", "@x"])
def test_a_bad_recipient_address_is_refused(bad):
    with pytest.raises(ComposeError, match="not a valid email address"):
        _compose(to=[bad])


@pytest.mark.parametrize("headers", [
    {"X-Note": "a\r\nBcc: evil@x"},
    {"Bcc": "evil@x"},
    {"Auto-Submitted": "no"},
    {"Bad Name": "x"},
])
def test_extra_headers_cannot_inject_or_override(headers):
    with pytest.raises(ComposeError):
        _compose(extra_headers=headers)


def test_extra_headers_are_added():
    msg = _compose(extra_headers={"X-Switchboard-Call": "CALL-42", "Reply-To": "desk@example.org"})
    assert msg["X-Switchboard-Call"] == "CALL-42"
    assert msg["Reply-To"] == "desk@example.org"


def test_bad_message_ids_are_refused():
    with pytest.raises(ComposeError, match="Message-ID"):
        _compose(message_id="no-brackets-and-no-at")
    with pytest.raises(ComposeError, match="Message-ID"):
        _compose(in_reply_to="<a@b>\r\nBcc: evil@x")


def test_mail_an_analyst_wrote_is_not_auto_submitted_but_still_marked_ours():
    msg = _compose(automatic=False)
    assert msg["Auto-Submitted"] is None
    assert msg["X-Auto-Response-Suppress"] is None
    assert msg[OUR_MARKER_HEADER] == "desk-test"


def test_answers_to_incoming_mail_say_auto_replied():
    assert _compose(automatic="auto-replied")["Auto-Submitted"] == "auto-replied"
    with pytest.raises(ComposeError):
        _compose(automatic="sometimes")


def test_token_already_in_the_subject_is_not_added_twice():
    token = new_reply_token()
    msg = _compose(subject=f"Re: CALL-42 [SB-{token}]", reply_token=token)
    assert msg["Subject"] == f"Re: CALL-42 [SB-{token}]"


def test_reply_tokens_are_unguessable_and_well_formed():
    tokens = {new_reply_token() for _ in range(2000)}
    assert len(tokens) == 2000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{16,40}", t) for t in tokens)
    with pytest.raises(ComposeError):
        _compose(reply_token="short")


def test_message_ids_are_unique_and_fit_on_one_header_line():
    ids = {new_message_id("desk.example.org") for _ in range(2000)}
    assert len(ids) == 2000
    for mid in list(ids)[:20]:
        assert re.fullmatch(r"<[A-Za-z0-9_-]+@desk\.example\.org>", mid)
        raw = message_to_bytes(_compose(message_id=mid))
        assert f"Message-ID: {mid}\r\n".encode() in raw
    with pytest.raises(ComposeError):
        new_message_id("bad domain")


def test_long_threads_keep_the_root_and_the_latest_references():
    refs = [f"<r{i}@x.example>" for i in range(40)]
    msg = _compose(references=refs, in_reply_to="<last@x.example>")
    kept = msg["References"].split()
    assert len(kept) == 20
    assert kept[0] == "<r0@x.example>"
    assert kept[-2:] == ["<r39@x.example>", "<last@x.example>"]


def test_bytes_use_crlf_and_stay_7bit_for_any_language(smtp_sink):
    msg = _compose(subject="Drucker im 3. Stock – geht nicht ✓", from_name="Zoë's Desk",
                   text="Grüße aus Zürich\n" + "ä" * 200 + "\n")
    raw = message_to_bytes(msg)
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    received = _deliver(smtp_sink, msg)
    got = received.message
    assert got["Subject"] == "Drucker im 3. Stock – geht nicht ✓"
    assert got["From"].addresses[0].display_name == "Zoë's Desk"
    assert _content(got.get_body(("plain",))) == "Grüße aus Zürich\n" + "ä" * 200 + "\n"


def test_a_mail_without_recipients_is_refused():
    with pytest.raises(ComposeError):
        _compose(to=[], cc=[])
