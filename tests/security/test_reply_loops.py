"""A reply loop with an auto-responder: the desk acknowledges a call, the sender's mailbox
answers every mail it gets, the desk sees that answer... Played for ten rounds through the
acting step and a real SMTP server, with responders that mark their mail (each header
vacation programs use) and one that marks nothing. The desk must stop at once."""

import pytest
import sqlalchemy as sa

from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.inbound.models import InboundMessage, InboundStatus
from tests.outbox.desk import desk_server, send  # noqa: F401  (fixture)
from tests.security.test_reply_limits import acted_on

RESPONDER = "away@customer.example"
MARKS = {
    "Auto-Submitted": "Auto-Submitted: auto-replied",
    "Precedence": "Precedence: auto_reply",
    "X-Autoreply": "X-Autoreply: yes",
    "X-Autorespond": "X-Autorespond: on vacation",
    "X-Loop": "X-Loop: away@customer.example",
    "List-Id": "List-Id: <help.customer.example>",
    "null Return-Path": "Return-Path: <>",
    "nothing": None,
}


def _answer(to_desk, n: int, mark: str | None) -> bytes:
    """What a vacation program sends back: a reply to the desk's mail, threaded under it."""
    headers = [f"From: {RESPONDER}", f"To: {to_desk['From']}", f"Subject: Re: {to_desk['Subject']}",
               f"Message-ID: <away-{n}@customer.example>", f"In-Reply-To: {to_desk['Message-ID']}",
               f"References: {to_desk['Message-ID']}", "Date: Mon, 03 Mar 2025 09:15:00 +0000"]
    if mark:
        headers.append(mark)
    return ("\r\n".join(headers) + "\r\n\r\nI am away until Monday.\r\n").encode()


@pytest.mark.parametrize("mark", list(MARKS))
def test_an_auto_responder_gets_one_mail_from_the_desk_at_most(app, desk_accounts, desk_server, mark):
    first = (f"From: {RESPONDER}\r\nTo: help@desk.test\r\nSubject: Printer down\r\n"
             f"Message-ID: <first@customer.example>\r\nDate: Mon, 03 Mar 2025 09:00:00 +0000\r\n"
             f"\r\nIt is down.\r\n").encode()
    acted_on([first])
    send()
    for n in range(10):
        to_responder = [m.message for m in desk_server.messages if RESPONDER in m.rcpt_tos]
        answered = db.session.scalar(sa.select(sa.func.count()).select_from(InboundMessage)) - 1
        if answered >= len(to_responder):
            break  # the responder has answered every mail it got: the loop is over
        acted_on([_answer(to_responder[answered], n, MARKS[mark])])
        send()
    to_responder = [m for m in desk_server.messages if RESPONDER in m.rcpt_tos]
    assert len(to_responder) == 1, [m.message["Subject"] for m in to_responder]  # the acknowledgement only
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Call)) == 1
    [answer] = db.session.scalars(sa.select(InboundMessage).order_by(InboundMessage.id.desc()).limit(1))
    if MARKS[mark] is None:
        # Unmarked, it reads as the customer's own reply: a note on their call, mailed to nobody
        # outside the desk.
        assert answer.status is InboundStatus.PROCESSED and "Added as a note to CALL-" in answer.outcome
    else:
        assert answer.status is InboundStatus.IGNORED, (answer.status, answer.outcome)
