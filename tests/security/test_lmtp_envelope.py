"""LMTP envelopes an attacker (or a broken MTA) sends: malformed and NUL
paths get a permanent 501 (never a 451 retried for days), and one
transaction takes at most LMTP_MAX_RECIPIENTS recipients."""

import sqlalchemy as sa

from switchboard.db import db
from switchboard.inbound.models import InboundMessage
from tests.receiver.conftest import make_mail


def _rows() -> list[InboundMessage]:
    db.session.rollback()
    return list(db.session.scalars(sa.select(InboundMessage)))


def test_malformed_and_nul_paths_answer_501_and_the_session_goes_on(app, desk_accounts, receiver):
    client = receiver().raw()
    client.command("LHLO client.test")
    for path in ("<", "<carol\x00@example.org>", "<carol@example.org\x00>", "<carol@example.org> \x00"):
        reply = client.command(f"MAIL FROM:{path}")
        assert reply.code == 501, (path, reply)
    assert client.command("MAIL FROM:<carol@example.org>").code == 250
    for path in ("<", "<help\x00@desk.test>", "<help@desk.test>\x00"):
        reply = client.command(f"RCPT TO:{path}")
        assert reply.code == 501, (path, reply)
    assert client.command("RCPT TO:<help@desk.test>").code == 250
    assert client.command("RSET").code == 250
    client.close()
    assert _rows() == []
    # The receiver is none the worse: the next delivery is stored.
    _, replies = receiver().raw().deliver("carol@example.org", ["help@desk.test"], make_mail())
    assert [r.code for r in replies] == [250]


def _rcpt_codes(lmtp, count: int):
    client = lmtp.raw()
    rcpt, replies = client.deliver("carol@example.org", [f"user{n}@support.desk.test" for n in range(count)],
                                   make_mail(to="help@desk.test"))
    client.close()
    return rcpt, replies


def test_at_most_100_recipients_per_transaction(app, desk_accounts, receiver):
    assert app.config["LMTP_MAX_RECIPIENTS"] == 100
    rcpt, replies = _rcpt_codes(receiver(), 103)
    assert [r.code for r in rcpt] == [250] * 100 + [452] * 3
    assert rcpt[100].text == "4.5.3 Too many recipients"
    assert [r.code for r in replies] == [250] * 100  # one reply per accepted recipient
    [row] = _rows()
    assert len(row.envelope_to) == 100


def test_the_recipient_limit_comes_from_the_config(app, desk_accounts, receiver):
    app.config["LMTP_MAX_RECIPIENTS"] = 3
    try:
        lmtp = receiver()
    finally:
        app.config["LMTP_MAX_RECIPIENTS"] = 100
    rcpt, replies = _rcpt_codes(lmtp, 5)
    assert [r.code for r in rcpt] == [250, 250, 250, 452, 452]
    assert [r.code for r in replies] == [250] * 3
