"""Reading a Microsoft 365 mailbox through Microsoft Graph (issue 13, item 4): delta query,
paging, $value into the store-commit-then-settle pipeline, then move, mark read or delete;
throttling and server errors waited out; a refused token renewed once, then "needs
reconnecting"; a message over the size bound left in the mailbox. Both databases.

Against tests/servers/graph.py, a stand-in: no Graph server can run here (it is Microsoft's
cloud service), so this is the one mock of these tests; it follows the Graph API reference
pages it names. The tokens come from the tests' OAuth2 server through MSAL, for real."""

from __future__ import annotations

import itertools
import os

import sqlalchemy as sa

from receiver.poll import poll_account
from switchboard.db import db
from switchboard.inbound.accounts import create_account
from switchboard.inbound.models import IncomingAccount, InboundMessage, MailboxReceipt
from switchboard.oauth.models import GrantState, OAuthGrant

from .conftest import microsoft_grant

_serial = itertools.count(1)


def mail(subject: str, *, body: str = "Please help.\r\n") -> bytes:
    number = next(_serial)
    return (f"From: carol@example.org\r\nTo: help@contoso.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <graph-{number}-{os.getpid()}@example.org>\r\n"
            f"Date: Mon, 03 Mar 2025 09:15:00 +0000\r\n\r\n{body}").encode()


def graph_account(graph, provider, mailbox, server_tls, **settings) -> IncomingAccount:
    settings.setdefault("batch_size", 5)  # the delta pages: several per poll
    account = create_account(f"m365-{mailbox}", "graph", host="127.0.0.1", port=graph.port, username=mailbox,
                             trusted_ca_pem=server_tls.ca.read_text(), oauth_grant=microsoft_grant(provider, mailbox),
                             **settings)
    db.session.commit()
    return account


def stored_subjects(account_id: int) -> list[str]:
    db.session.rollback()
    return sorted(db.session.scalars(sa.select(InboundMessage.subject).where(InboundMessage.account_id == account_id)))


def test_a_poll_reads_the_folder_by_delta_pages_and_moves_each_message_once_stored(desk, graph, provider, mailbox,
                                                                                    server_tls):
    account = graph_account(graph, provider, mailbox, server_tls)
    for number in range(12):
        graph.append(mailbox, mail(f"Printer {number}"))
    result = poll_account(account.id)
    assert result.ok, result.error
    assert (result.stored, result.settled) == (12, 12)
    assert stored_subjects(account.id) == sorted(f"Printer {n}" for n in range(12))
    assert graph.messages(mailbox) == []  # every one moved out of the inbox...
    assert len(graph.messages(mailbox, "Processed")) == 12  # ...into the folder the poll made
    assert graph.count("delta") == 3  # 12 messages in pages of 5
    assert graph.count("value") == 12

    # The next poll starts from the kept delta link: only the new mail is read.
    graph.append(mailbox, mail("Scanner"))
    result = poll_account(account.id)
    assert result.ok, result.error
    assert (result.stored, result.duplicates, result.resumed) == (1, 0, 0)
    assert graph.count("value") == 13
    assert "Scanner" in stored_subjects(account.id)
    assert db.session.get(IncomingAccount, account.id).graph_delta_link.startswith(graph.base_url)


def test_mark_read_skips_read_mail_and_never_reads_a_message_twice(desk, graph, provider, mailbox, server_tls):
    account = graph_account(graph, provider, mailbox, server_tls, after_processing="seen")
    graph.append(mailbox, mail("Already read in Outlook"), is_read=True)
    for number in range(3):
        graph.append(mailbox, mail(f"VPN {number}"))
    result = poll_account(account.id)
    assert result.ok, result.error
    assert (result.stored, result.settled) == (3, 3)
    assert stored_subjects(account.id) == ["VPN 0", "VPN 1", "VPN 2"]
    assert all(m.is_read for m in graph.messages(mailbox))
    # Marking read is a change the next delta round reports: the settled receipts skip it.
    fetched = graph.count("value")
    result = poll_account(account.id)
    assert result.ok, result.error
    assert (result.stored, result.resumed, result.settled) == (0, 0, 0)
    assert graph.count("value") == fetched


def test_delete_after_storing_and_nested_folders(desk, graph, provider, mailbox, server_tls):
    account = graph_account(graph, provider, mailbox, server_tls, after_processing="delete")
    graph.append(mailbox, mail("Laptop"))
    result = poll_account(account.id)
    assert result.ok, result.error
    assert graph.messages(mailbox) == [] and len(graph.messages(mailbox, "deleteditems")) == 1

    # A folder below the inbox, by path: said when missing (nothing read), found once made.
    db.session.delete(db.session.get(IncomingAccount, account.id))
    db.session.commit()
    nested = graph_account(graph, provider, mailbox, server_tls, folder="Inbox/Desk", processed_folder="Inbox/Desk/Done")
    result = poll_account(nested.id)
    assert not result.ok and "has no folder 'Desk'" in result.error
    graph.add_folder(mailbox, "Desk", parent="inbox")
    graph.append(mailbox, mail("In the desk folder"), folder="Desk")
    result = poll_account(nested.id)
    assert result.ok, result.error
    assert stored_subjects(nested.id) == ["In the desk folder"]
    assert len(graph.messages(mailbox, "Done")) == 1


def test_throttling_and_server_errors_are_waited_out_and_nothing_is_stored_twice(desk, graph, provider, mailbox,
                                                                                  server_tls, monkeypatch):
    from switchboard import graph as graph_client

    monkeypatch.setattr(graph_client, "BACKOFF_SECONDS", (0.05,) * 4)  # Graph's own Retry-After still holds
    account = graph_account(graph, provider, mailbox, server_tls)
    for number in range(6):
        graph.append(mailbox, mail(f"Outage {number}"))
    graph.fail("delta", 429, retry_after="1")
    graph.fail("value", 503, retry_after="1")
    graph.fail("value", 500)
    graph.fail("move", 504)
    graph.fail("move", 502, accept=True)  # moved, and the answer lost: the retry finds it gone (404)
    result = poll_account(account.id)
    assert result.ok, result.error
    assert (result.stored, result.settled) == (6, 6)
    assert stored_subjects(account.id) == sorted(f"Outage {n}" for n in range(6))
    assert graph.messages(mailbox) == [] and len(graph.messages(mailbox, "Processed")) == 6
    assert graph.count("delta", status=429) == 1 and graph.count("value", status=503) == 1


def test_throttling_longer_than_the_bound_fails_the_poll_and_the_next_poll_resumes(desk, graph, provider, mailbox,
                                                                                   server_tls, monkeypatch):
    from switchboard import graph as graph_client

    monkeypatch.setattr(graph_client, "BACKOFF_SECONDS", (0.01,) * 4)
    account = graph_account(graph, provider, mailbox, server_tls)
    for number in range(3):
        graph.append(mailbox, mail(f"Busy {number}"))
    graph.fail("move", 503, times=5)  # more than the retries: the poll gives up, mail stays stored
    result = poll_account(account.id)
    assert not result.ok and "HTTP 503" in result.error
    assert result.stored == 3
    assert db.session.scalar(sa.select(sa.func.count()).select_from(MailboxReceipt)
                             .where(MailboxReceipt.account_id == account.id, MailboxReceipt.settled)) == 0
    graph.fail("value", 429, retry_after="3600")  # asks for an hour: never waited, never reached here
    result = poll_account(account.id)
    assert result.ok, result.error
    assert (result.stored, result.resumed, result.settled) == (0, 3, 3)  # settled without fetching again
    assert len(stored_subjects(account.id)) == 3 and graph.messages(mailbox) == []


def test_a_message_over_the_size_bound_is_left_in_the_mailbox_and_said(desk, graph, provider, mailbox, server_tls,
                                                                       monkeypatch):
    monkeypatch.setitem(desk.config, "LMTP_MAX_MESSAGE_BYTES", 4000)
    graph.chunked_values = True  # no Content-Length: the bound is kept while reading
    account = graph_account(graph, provider, mailbox, server_tls)
    graph.append(mailbox, mail("Small"))
    graph.append(mailbox, mail("Huge", body="x" * 76 + "\r\n"))
    big = graph.append(mailbox, mail("Huge attachment", body=("x" * 76 + "\r\n") * 200))
    result = poll_account(account.id)
    assert not result.ok
    assert "larger than LMTP_MAX_MESSAGE_BYTES (4000 bytes)" in result.error and "Huge attachment" in result.error
    assert sorted(stored_subjects(account.id)) == ["Huge", "Small"]
    assert [m.id for m in graph.messages(mailbox)] == [big]  # left where it was
    assert db.session.get(IncomingAccount, account.id).graph_delta_link is None  # not past it
    # The next poll sees it again (and only it is read again): still said, nothing doubled.
    result = poll_account(account.id)
    assert not result.ok and "Huge attachment" in result.error
    assert sorted(stored_subjects(account.id)) == ["Huge", "Small"]


def test_a_refused_token_is_renewed_once_then_the_grant_needs_reconnecting_and_graph_is_left_alone(
        desk, graph, provider, mailbox, server_tls):
    account = graph_account(graph, provider, mailbox, server_tls)
    graph.append(mailbox, mail("Hello"))
    assert poll_account(account.id).ok  # a token cached on the grant
    graph.append(mailbox, mail("Revoked"))
    graph.refuse_tokens = True  # consent withdrawn: Graph answers 401 to any token
    before, tokens_before = len(graph.log), provider.token_requests
    result = poll_account(account.id)
    assert not result.ok and "needs reconnecting" in result.error
    assert provider.token_requests == tokens_before + 1  # one new token, refused too
    assert [status for _, _, status in graph.log[before:]] == [401, 401]
    grant = db.session.get(OAuthGrant, db.session.get(IncomingAccount, account.id).oauth_grant_id)
    assert grant.state is GrantState.NEEDS_RECONNECTING
    # No login storm: the next polls ask neither Graph nor the provider.
    before, tokens_before = len(graph.log), provider.token_requests
    for _ in range(3):
        result = poll_account(account.id)
        assert not result.ok and "needs reconnecting" in result.error
    assert (len(graph.log), provider.token_requests) == (before, tokens_before)


def test_an_expired_delta_link_reads_the_folder_again_without_storing_anything_twice(desk, graph, provider, mailbox,
                                                                                     server_tls):
    account = graph_account(graph, provider, mailbox, server_tls, after_processing="seen")
    for number in range(4):
        graph.append(mailbox, mail(f"Round {number}"))
    assert poll_account(account.id).ok
    graph.forget_delta_tokens()
    graph.append(mailbox, mail("After the reset"))
    result = poll_account(account.id)
    assert result.ok, result.error
    assert graph.count("delta", status=410) == 1
    assert (result.stored, result.duplicates) == (1, 0)
    assert len(stored_subjects(account.id)) == 5


def test_test_connection_signs_in_and_finds_the_folders_without_reading_a_message(desk, graph, provider, mailbox,
                                                                                  server_tls):
    from portal.mail.connection import check_connection

    account = graph_account(graph, provider, mailbox, server_tls)
    graph.append(mailbox, mail("Untouched"))
    report = check_connection(account)
    assert report.ok, report.message
    assert "The folder INBOX exists. The processed folder Processed will be created on the first poll." \
        in report.message
    assert graph.count("value") == 0 and graph.count("delta") == 0 and len(graph.messages(mailbox)) == 1
    assert graph.messages(mailbox, "Processed") == []  # nothing made either
    graph.refuse_tokens = True
    report = check_connection(db.session.get(IncomingAccount, account.id))
    assert not report.ok and "needs reconnecting" in report.message


def test_a_link_to_another_server_is_not_followed_with_the_token(desk, graph, provider, mailbox, server_tls):
    account = graph_account(graph, provider, mailbox, server_tls)
    for number in range(7):  # two pages: the first one's next link points elsewhere
        graph.append(mailbox, mail(f"Page {number}"))
    graph.link_host = "graph.attacker.example"
    result = poll_account(account.id)
    assert not result.ok and "link to another server (https://graph.attacker.example/v1.0/" in result.error
    assert result.stored == 5  # the first page, stored and settled as usual
    assert db.session.get(IncomingAccount, account.id).graph_delta_link is None
