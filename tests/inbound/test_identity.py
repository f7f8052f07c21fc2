"""One message, one action per desk (issue 10, items 11 and 12): which copies
are the same message, whichever account or path brings them, and which are not.
The real-server cases (Postfix to LMTP and to Dovecot, POP3 beside IMAP) are in
tests/receiver/test_one_call_across_accounts.py."""

import threading
import time

import pytest
import sqlalchemy as sa

from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.inbound.accounts import create_account
from switchboard.inbound.models import InboundMessage, InboundStatus, MessageClaim
from switchboard.inbound.process import process_pending
from switchboard.inbound.store import store_message

MAIL = (b"From: Carol <carol@example.org>\r\n"
        b"To: help@desk.test\r\n"
        b"Cc: support@example.test\r\n"
        b"Subject: Log call: the scanner on floor 3 is offline\r\n"
        b"Date: Mon, 03 Mar 2025 09:15:00 +0000\r\n"
        b"Message-ID: <scanner-3@example.org>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"It shows a red light since this morning.\r\n")

# What Exchange Online and mail gateways do to a copy on its way: a banner above the text,
# a footer below, trace headers on top.
ALTERED = (b"Received: from gateway.example.test by mx.example.test; Mon, 03 Mar 2025 09:15:02 +0000\r\n"
           + MAIL.replace(b"\r\n\r\nIt shows",
                          b"\r\n\r\nCAUTION: This email originated from outside of the organization.\r\n\r\nIt shows")
           + b"--\r\nScanned by the example.test mail gateway.\r\n")


@pytest.fixture
def accounts(app):
    help_desk = create_account("help", "lmtp", addresses=["help@desk.test"])
    support = create_account("support", "lmtp", addresses=["support@example.test"])
    db.session.commit()
    return help_desk, support


def calls() -> list[str]:
    db.session.rollback()
    return sorted(db.session.scalars(sa.select(Call.summary)))


def test_the_same_message_through_two_accounts_is_stored_for_each_and_acted_on_once(app, accounts):
    help_desk, support = accounts
    first = store_message(MAIL, source="lmtp", account=help_desk)
    second = store_message(MAIL, source="imap", account=support)
    db.session.commit()
    process_pending()
    assert (first.duplicate, second.duplicate, second.copy_of) == (False, True, first.inbound_id)
    rows = {r.account_id: r for r in db.session.scalars(sa.select(InboundMessage))}
    assert set(rows) == {help_desk.id, support.id}  # each account's audit trail has it
    copy = rows[support.id]
    assert copy.status is InboundStatus.IGNORED
    assert f"the same message as inbound message #{first.inbound_id}" in copy.outcome
    assert rows[help_desk.id].status is InboundStatus.PROCESSED
    assert calls() == ["the scanner on floor 3 is offline"]


def test_a_copy_a_gateway_altered_is_the_same_message_when_it_has_a_message_id(app, accounts):
    help_desk, support = accounts
    store_message(MAIL, source="lmtp", account=help_desk)
    altered = store_message(ALTERED, source="imap", account=support)
    again = store_message(ALTERED, source="lmtp", account=help_desk)  # the altered copy through the first account
    db.session.commit()
    process_pending()
    assert altered.duplicate and again.duplicate
    assert db.session.get(InboundMessage, again.inbound_id).deliveries == 2
    assert calls() == ["the scanner on floor 3 is offline"]


def test_a_different_subject_date_or_sender_with_the_same_message_id_is_another_message(app, accounts):
    help_desk, _ = accounts
    variants = [MAIL,
                MAIL.replace(b"the scanner on floor 3", b"the printer on floor 3"),
                MAIL.replace(b"09:15:00", b"10:15:00"),
                MAIL.replace(b"carol@example.org", b"dave@example.org")]
    stored = [store_message(raw, source="lmtp", account=help_desk) for raw in variants]
    db.session.commit()
    assert [s.duplicate for s in stored] == [False] * 4
    assert db.session.scalar(sa.select(sa.func.count()).select_from(MessageClaim)) == 4


def test_without_a_message_id_the_body_tells_messages_apart(app, accounts):
    help_desk, support = accounts
    bare = MAIL.replace(b"Message-ID: <scanner-3@example.org>\r\n", b"")
    other_body = bare.replace(b"red light", b"green light")
    footer = bare + b"--\r\nScanned by the example.test mail gateway.\r\n"
    stored = [store_message(raw, source="lmtp", account=help_desk) for raw in (bare, other_body)]
    same = store_message(bare.replace(b"\r\n", b"\n"), source="imap", account=support)  # other line ends
    with_footer = store_message(footer, source="imap", account=support)
    db.session.commit()
    assert [s.duplicate for s in stored] == [False, False]
    assert same.copy_of == stored[0].inbound_id
    assert not with_footer.duplicate  # without a Message-ID nothing else says it is the same mail


@pytest.mark.parametrize("shape", ["no headers", "headers, no blank line", "bare CR line ends"])
def test_messages_without_a_blank_line_fingerprint_by_their_body(app, accounts, shape):
    help_desk, _ = accounts
    texts = [b"The VPN drops every ten minutes.", b"My password expired.", b"Please reset my token."]
    if shape == "no headers":
        raws = [t + b"\r\nSent from my phone\r\n" for t in texts]
    elif shape == "headers, no blank line":
        raws = [b"From: carol@example.org\r\nSubject: help\r\n" + t + b"\r\n" for t in texts]
    else:
        raws = [b"From: carol@example.org\rSubject: help\r\r" + t + b"\r" for t in texts]
    stored = [store_message(raw, source="pipe", account=help_desk) for raw in raws]
    db.session.commit()
    assert [s.duplicate for s in stored] == [False, False, False]
    assert len({s.inbound_id for s in stored}) == 3
    process_pending()
    rows = [db.session.get(InboundMessage, s.inbound_id) for s in stored]
    assert all(r.status is not InboundStatus.NEW and r.deliveries == 1 for r in rows)
    assert all("same message" not in r.outcome for r in rows)


# PostgreSQL only (not a skip): SQLite has one writer at a time, so two receivers never store at once.
@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_two_receivers_storing_the_same_message_at_once_give_one_call(app, accounts):
    help_desk, support = accounts
    support_id = support.id
    first = store_message(MAIL, source="lmtp", account=help_desk)  # not committed yet
    seen = {}

    def other_receiver():
        with app.app_context():
            seen["stored"] = store_message(MAIL, source="imap", account=db.session.get(type(support), support_id))
            db.session.commit()
            db.session.remove()

    thread = threading.Thread(target=other_receiver)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), "the second copy's claim did not wait for the first transaction"
    db.session.commit()
    thread.join(10)
    assert seen["stored"].copy_of == first.inbound_id
    process_pending()
    assert calls() == ["the scanner on floor 3 is offline"]


def test_a_header_of_endless_fields_without_a_blank_line_is_read_within_the_header_bound(app, accounts):
    # 200,000 field lines and no blank line, two such mails differing only at the end: the
    # body search stops where the header bound does (inbound.bounds.MAX_HEADER_LINES), so
    # this answers the MTA at once and the differing tail still tells the two apart.
    help_desk, _ = accounts
    fields = b"X-Filler: a\r\n" * 200_000
    started = time.monotonic()
    first = store_message(b"From: carol@example.org\r\n" + fields + b"X-Tail: one\r\n", source="lmtp",
                          account=help_desk)
    second = store_message(b"From: carol@example.org\r\n" + fields + b"X-Tail: two\r\n", source="lmtp",
                           account=help_desk)
    db.session.commit()
    assert time.monotonic() - started < 5  # about 1 s for both here (0.02 s of it finding the body)
    assert not first.duplicate and not second.duplicate and first.inbound_id != second.inbound_id
