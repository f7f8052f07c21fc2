"""A NUL byte in a header (PostgreSQL cannot keep one in a text column) must
not make storing fail for good: the MTA would get 451 and retry for days.
The raw bytes are kept exactly; the text columns get the text without it."""

import sqlalchemy as sa

from switchboard.blobs import Blob
from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.history.models import Attachment
from switchboard.inbound.models import InboundMessage
from tests.receiver.conftest import wait_for

MAIL = (
    b"From: Carol\x00 Customer <carol@example.org>\r\n"
    b"To: help@desk.test\r\n"
    b"Subject: Log call: printer\x00 jammed\r\n"
    b"Message-ID: <nul\x00-1@example.org>\r\n"
    b"In-Reply-To: <elsewhere\x00@example.org>\r\n"
    b"References: <first\x00@example.org> <elsewhere\x00@example.org>\r\n"
    b"Date: Mon, 03 Mar 2025 09:15:00 +0000\r\n"
    b"X-Note: \x00\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=b1\r\n"
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: multipart/alternative; boundary=b2\r\n"
    b"\r\n"
    b"--b2\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"The printer\x00 on floor 2 is jammed.\r\n"
    b"--b2\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>The printer\x00 on floor 2 is <b>jammed</b>.</p>\r\n"
    b"--b2--\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; name=\"log\x00.txt\"\r\n"
    b"Content-Disposition: attachment; filename=\"log\x00.txt\"\r\n"
    b"\r\n"
    b"paper\x00 path error\r\n"
    b"--b1--\r\n"
)


def test_nul_in_headers_and_body_is_stored_and_acted_on(app, desk_accounts, receiver):
    client = receiver().raw()
    rcpt, replies = client.deliver("carol@example.org", ["help@desk.test"], MAIL)
    client.close()
    assert [r.code for r in replies] == [250], replies
    call = wait_for(lambda: db.session.scalar(sa.select(Call)))
    assert call is not None, [(r.status, r.outcome) for r in db.session.scalars(sa.select(InboundMessage))]
    assert call.summary == "printer jammed"
    assert "\x00" not in call.description and "on floor 2 is jammed" in call.description
    assert call.customer.name == "Carol Customer"
    [attachment] = db.session.scalars(sa.select(Attachment))
    # A control character in a name is replaced, never dropped: the rest of the name stays as sent
    # (issue 10, item 10).
    assert attachment.filename == "log_.txt"
    assert db.session.get(Blob, attachment.blob_sha256).data == b"paper\x00 path error"  # a file keeps its bytes
    [row] = db.session.scalars(sa.select(InboundMessage))
    assert row.status.value == "processed", row.outcome
    assert row.subject == "Log call: printer jammed" and row.from_address == "carol@example.org"
    assert row.message_id == "nul-1@example.org"
    # The message as it came, NUL and all, for admins and reprocessing.
    assert db.session.get(Blob, row.raw_sha256).data == MAIL
