"""Header injection from incoming mail into the mail the desk sends back: a Subject or a
From display name carrying CR/LF (raw, or hidden in an encoded word) must not add a
recipient, a header or a body to the acknowledgement. The portal's side is
test_line_breaks.py; this is the mail side, through the acting step and a real SMTP server."""

import pytest
import sqlalchemy as sa

from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.people.models import Person
from tests.outbox.desk import desk_server, send  # noqa: F401  (fixture)
from tests.security.test_reply_limits import acted_on

HELP = "help@desk.test"
ATTACKER = "eve@attacker.example"

# (From line, Subject line) exactly as written on the wire.
HOSTILE = {
    "encoded CR/LF in the subject": (
        ATTACKER, "=?utf-8?q?Printer=0D=0ABcc:_victim@victim.example=0D=0A=0D=0APay_this_invoice?="),
    "encoded LF in the subject, base64": (
        ATTACKER, "=?utf-8?b?UHJpbnRlcgpCY2M6IHZpY3RpbUB2aWN0aW0uZXhhbXBsZQ==?="),
    "encoded CR/LF in the From name": (
        f"=?utf-8?q?Eve=0D=0ABcc:_victim@victim.example?= <{ATTACKER}>", "Printer"),
}
# A bare CR on the wire ends the header line (the Bcc becomes a header of the incoming mail,
# which the desk never reads): the summary is "Printer" alone.
BARE_CR = (ATTACKER, "Printer\rBcc: victim@victim.example")


def _mail(from_line: str, subject: str, n: int) -> bytes:
    return (f"From: {from_line}\r\nTo: {HELP}\r\nSubject: {subject}\r\n"
            f"Message-ID: <inject-{n}@attacker.example>\r\nDate: Mon, 03 Mar 2025 09:15:00 +0000\r\n"
            f"\r\nThe printer is on fire.\r\n").encode()


@pytest.mark.parametrize("case", list(HOSTILE))
def test_line_breaks_from_incoming_mail_never_reach_the_reply_headers(app, desk_accounts, desk_server, case):
    call, customer = _logged(*HOSTILE[case], n=list(HOSTILE).index(case))
    # The hostile text arrived (decoded), on one line: the summary and the name reach every later mail.
    assert "Bcc: victim@victim.example" in f"{call.summary} {customer.name}", (call.summary, customer.name)
    _only_the_sender_gets_a_clean_reply(call, customer, desk_server)


def test_a_bare_cr_in_the_subject_ends_the_header_line(app, desk_accounts, desk_server):
    call, customer = _logged(*BARE_CR, n=99)
    assert call.summary == "Printer"
    _only_the_sender_gets_a_clean_reply(call, customer, desk_server)


def _logged(from_line: str, subject: str, n: int):
    [row] = acted_on([_mail(from_line, subject, n)])
    assert "Logged CALL-" in row.outcome, row.outcome
    call = db.session.scalar(sa.select(Call))
    customer = db.session.scalar(sa.select(Person).where(Person.email == ATTACKER))
    return call, customer


def _only_the_sender_gets_a_clean_reply(call, customer, desk_server):
    assert "\r" not in call.summary and "\n" not in call.summary
    assert "\r" not in (customer.name or "") and "\n" not in (customer.name or "")
    send()
    [received] = desk_server.messages
    assert received.rcpt_tos == [ATTACKER]  # nobody else, whatever the headers said
    mail = received.message
    assert mail.get_all("Bcc") is None
    for name in ("Subject", "To"):
        assert "\n" not in str(mail[name]) and "\r" not in str(mail[name]), (name, mail[name])
    body = mail.get_body(("plain",)).get_content()
    assert "\nBcc:" not in body and "\nPay this invoice" not in body
