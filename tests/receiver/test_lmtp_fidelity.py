"""Mail read exactly as sent (issue 10), over the real LMTP receiver: an 8bit attachment with
bare CR and LF bytes, a BOM before the header and junk after a delimiter reach the call as the
sender meant them (the parsing classes themselves: tests/inbound/test_fidelity_decoding.py)."""

import sqlalchemy as sa

from switchboard.blobs import store as blob_store
from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.history.services import timeline

from .conftest import wait_for

# Every byte but NUL (which SMTP may not carry), bare CRs and LFs and CRLFs inside, no line
# starting with a dot; not ending in a line break (the one before the delimiter is its own).
DATA = bytes(range(1, 256)).replace(b"\n.", b"\nx") + b"a\rb\nc\r\nd\n\re\r\r\n\nend"


def test_bom_junk_delimiter_and_8bit_bytes_reach_the_call_as_sent(app, desk_accounts, receiver):
    raw = (b"\xef\xbb\xbfFrom: Carol <carol@example.org>\r\nTo: help@desk.test\r\nSubject: Core dump\r\n"
           b"Message-ID: <lmtp-fidelity@example.org>\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="B0UND"\r\n\r\n'
           b"--B0UND junk after the boundary\r\nContent-Type: text/plain\r\n\r\nThe scanner crashed.\r\n"
           b"--B0UND\r\nContent-Type: application/octet-stream; name=\"core.bin\"\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + DATA + b"\r\n--B0UND--\r\nepilogue: unsubscribe\r\n")
    lmtp = receiver().raw()
    try:
        _, replies = lmtp.deliver("carol@example.org", ["help@desk.test"], raw)
    finally:
        lmtp.close()
    assert [r.code for r in replies] == [250]
    call = wait_for(lambda: db.session.scalar(sa.select(Call)))
    assert call.summary == "Core dump" and "The scanner crashed." in call.description
    assert "unsubscribe" not in call.description
    [attachment] = timeline(call)[0].attachments
    assert (attachment.filename, blob_store.get(attachment.blob_sha256)) == ("core.bin", DATA)
