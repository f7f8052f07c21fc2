"""Outbox mail sent through Microsoft Graph's sendMail (issue 13, item 4): the composed MIME,
base64, as Microsoft documents ("user: sendMail"); throttling (429, 503 with Retry-After)
waited out and the mail sent exactly once; an answer lost after Graph took the mail never
makes a second copy (the next attempt finds it in Sent Items); a refused token renewed once,
then the grant needs reconnecting and Graph is left alone. Both databases.

Against tests/servers/graph.py, a stand-in: no Graph server can run here (it is Microsoft's
cloud service), so this is the one mock of these tests; the tokens are real (MSAL against
the tests' OAuth2 server)."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes

import sqlalchemy as sa

from switchboard.db import db, utcnow
from switchboard.oauth.models import GrantState, OAuthGrant
from switchboard.outbox import catalogue
from switchboard.outbox.models import OutboxMessage, OutboxStatus
from switchboard.outbox.queue import queue_mail
from switchboard.outbox.sender import send_due
from switchboard.outbox.servers import add_server

from .conftest import microsoft_grant


def graph_server(graph, provider, mailbox, server_tls):
    server = add_server("m365", "127.0.0.1", port=graph.port, protocol="graph", username=mailbox,
                        from_address=mailbox, trusted_ca_pem=server_tls.ca.read_text(),
                        oauth_grant=microsoft_grant(provider, mailbox))
    db.session.commit()
    return server


def queued(subject: str) -> OutboxMessage:
    row = queue_mail(catalogue.MANUAL_MESSAGE, ["customer@example.org"], subject=subject,
                     text="Your printer is fixed.\n", automatic=False)
    db.session.commit()
    return row


def row_of(row_id: int) -> OutboxMessage:
    db.session.rollback()
    return db.session.get(OutboxMessage, row_id)


def due_now(row_id: int) -> None:
    """As if the row's back-off had passed."""
    db.session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == row_id)
                       .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def test_mail_goes_out_as_mime_through_sendmail_once_after_429_and_503(desk, graph, provider, mailbox, server_tls):
    graph_server(graph, provider, mailbox, server_tls)
    row = queued("Printer fixed")
    graph.fail("sendMail", 429, retry_after="1")
    graph.fail("sendMail", 503, retry_after="1")
    report = send_due()
    assert (report.sent, report.deferred, report.failed) == (1, 0, 0), report.problems
    sent = graph.sent(mailbox)
    assert len(sent) == 1
    message = message_from_bytes(sent[0])
    assert message["Message-ID"] == row_of(row.id).message_id
    assert message["Subject"].startswith("Printer fixed") and message["To"] == "customer@example.org"
    assert "Your printer is fixed." in message.get_payload(decode=True).decode()
    done = row_of(row.id)
    assert (done.status, done.server_name) == (OutboxStatus.SENT, "m365")
    assert [graph.count("sendMail", status=s) for s in (429, 503, 202)] == [1, 1, 1]


def test_an_answer_lost_after_graph_took_the_mail_never_sends_a_second_copy(desk, graph, provider, mailbox,
                                                                            server_tls):
    graph_server(graph, provider, mailbox, server_tls)
    row = queued("Password reset")
    graph.fail("sendMail", 500, accept=True)  # Graph took it; the answer is an error
    report = send_due()
    assert report.deferred == 1 and report.sent == 0
    waiting = row_of(row.id)
    assert waiting.status is OutboxStatus.DEFERRED and "may have been sent" in waiting.last_message
    assert graph.count("sendMail") == 1  # not retried at once, not tried elsewhere
    due_now(row.id)
    report = send_due()
    assert report.sent == 1
    assert row_of(row.id).status is OutboxStatus.SENT
    assert len(graph.sent(mailbox)) == 1 and graph.count("sendMail") == 1  # found in Sent Items


def test_a_503_without_retry_after_is_tried_again_later_and_sent_once(desk, graph, provider, mailbox, server_tls):
    graph_server(graph, provider, mailbox, server_tls)
    row = queued("Laptop ready")
    graph.fail("sendMail", 503)  # not Graph's throttling answer: perhaps taken, so not resent now
    assert send_due().deferred == 1
    due_now(row.id)
    assert send_due().sent == 1
    assert len(graph.sent(mailbox)) == 1 and row_of(row.id).status is OutboxStatus.SENT


def test_a_refused_token_marks_the_grant_and_mail_waits_without_a_login_storm(desk, graph, provider, mailbox,
                                                                              server_tls):
    server = graph_server(graph, provider, mailbox, server_tls)
    grant_id = server.oauth_grant_id
    row = queued("Revoked")
    graph.refuse_tokens = True
    report = send_due()
    assert report.unreachable and "needs reconnecting" in " ".join(report.problems)
    assert db.session.get(OAuthGrant, grant_id).state is GrantState.NEEDS_RECONNECTING
    assert row_of(row.id).status is OutboxStatus.DEFERRED and graph.sent(mailbox) == []
    before, tokens_before = len(graph.log), provider.token_requests
    due_now(row.id)
    send_due()
    assert (len(graph.log), provider.token_requests) == (before, tokens_before)
