"""Mail out that reads right in every client (issue 10, items 16 and 17): long
subjects fold after the first words, never right after "Subject:", and read back
as written; every reply to an incoming mail threads under it. Through the real
pipeline and the loopback SMTP server, reading what it received."""

from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from switchboard.db import db
from switchboard.inbound.models import InboundMessage
from switchboard.inbound.process import process_pending
from switchboard.inbound.store import store_message
from switchboard.outbox.compose import compose_message, message_to_bytes

from .desk import DESK, desk_server, send  # noqa: F401

TOKEN = "abcdefghijklmnopqrstuvwx"

SUBJECTS = {
    "many short words": "CALL-12 logged: " + " ".join(["printer", "jams", "on", "floor", "two"] * 6),
    "a first word of 77 characters": "y" * 77 + " and then the rest",
    "no spaces at all": "Druckerwarteschlangenverwaltungsdienst" * 4,
    "non-ASCII words": "CALL-7 logged: Drucker im zweiten Stock druckt nur leere Seiten, Übertragung schlägt fehl",
    "non-ASCII with no spaces": "打印机坏了" * 15,
    "a long URL": "CALL-3 logged: https://intranet.example.org/" + "wiki/" * 25,
    "mixed scripts": "Ünïcödé CALL-9 ñandú " + "x" * 70 + " 漢字 end",
}


def header_lines(raw: bytes, name: bytes = b"Subject") -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    at = next(i for i, line in enumerate(head) if line.startswith(name + b":"))
    lines = [head[at]]
    for line in head[at + 1:]:
        if not line[:1] in (b" ", b"\t"):
            break
        lines.append(line)
    return lines


@pytest.mark.parametrize("shape", SUBJECTS)
def test_long_subjects_fold_after_the_first_words_and_read_back_as_written(shape):
    subject = SUBJECTS[shape]
    raw = message_to_bytes(compose_message(
        from_addr=DESK, from_name="Desk", to=["carol@example.org"], subject=subject, text="Hello",
        message_id="<one@example.org>", reply_token=TOKEN))
    lines = header_lines(raw)
    assert lines[0].strip() != b"Subject:"  # something follows the colon on its own line
    # Folded at spaces: a line is longer than 78 only when one word alone is.
    assert all(len(line) <= 78 or len(line.split()) <= (2 if i == 0 else 1) for i, line in enumerate(lines))
    expected = f"{subject} [SB-{TOKEN}]"
    assert BytesParser(policy=policy.default).parsebytes(raw)["Subject"] == expected
    unfolded = b"".join(lines).decode("ascii")[len("Subject:"):].lstrip()
    assert str(make_header(decode_header(unfolded))) == expected  # what an RFC 2047 reader shows


def deliver(subject: str, sender="carol@example.org") -> InboundMessage:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = sender
    msg["To"] = DESK
    msg["Subject"] = subject
    msg["Message-ID"] = "<customer-mail-1@example.org>"
    msg["References"] = "<older@example.org>"
    msg["Date"] = "Fri, 27 Nov 2026 09:00:00 +0000"
    msg.set_content("Hello desk.")
    stored = store_message(msg.as_bytes(), source="lmtp", envelope_to=[DESK])
    db.session.commit()
    process_pending()
    return db.session.get(InboundMessage, stored.inbound_id)


@pytest.mark.parametrize("kind, subject", [
    ("acknowledgement", "The projector in room 4 " + "flickers and then goes dark " * 3),
    ("rejection", "Update call 999"),
    ("summary", "Summary calls"),
])
def test_every_reply_to_an_incoming_mail_threads_under_it(desk_server, people, kind, subject):
    inbound = deliver(subject)
    assert inbound.status.value in ("processed", "rejected"), inbound.outcome
    assert send().sent == 1
    [received] = desk_server.messages
    assert received.rcpt_tos == ["carol@example.org"]
    reply = received.message
    assert reply["In-Reply-To"] == "<customer-mail-1@example.org>"
    assert "<customer-mail-1@example.org>" in reply["References"].split()
    assert not reply["Subject"].startswith(" ")
    if kind == "acknowledgement":
        assert header_lines(received.data)[0].strip() != b"Subject:"
        assert reply["Subject"].startswith("CALL-1 logged: The projector in room 4 flickers")
