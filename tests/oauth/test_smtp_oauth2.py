"""OAuth2 for outgoing mail (issue 13): the desk signs in to a real Postfix submission port
with AUTH XOAUTH2, Postfix asking the real Dovecot (its SASL, oauth2 passdb) which checks the
token with the tests' OAuth2 server. A revoked grant stops the server being used, once."""

from __future__ import annotations

import itertools
import os

import pytest

from switchboard.db import db
from switchboard.oauth.grants import new_grant
from switchboard.oauth.models import GrantState, OAuthGrant
from switchboard.outbox.smtp import SmtpServerSettings, SmtpSession
from tests.servers.process import free_ports

_senders = itertools.count(1)


@pytest.fixture
def submission(postfix_factory, oauth_dovecot):
    lmtp_port = free_ports(1)[0]  # nothing listens: accepted mail waits in Postfix's queue
    return postfix_factory(lmtp_port, domains=("desk.test",), settings={
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": str(oauth_dovecot.sasl_socket),
        "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
    })


def _session(submission, user, grant) -> SmtpSession:
    return SmtpSession(SmtpServerSettings(
        name="m365", host=submission.host, port=submission.smtp_port, security="starttls",
        username=user, ca_file=str(submission.ca_path), from_address=user, oauth_grant_id=grant.id))


def _message(user: str) -> bytes:
    return (f"From: {user}\r\nTo: carol@desk.test\r\nSubject: CALL-1 logged\r\n"
            f"Message-ID: <smtp-oauth-{next(_senders)}-{os.getpid()}@desk.example>\r\n\r\nhello\r\n").encode()


def test_mail_goes_out_through_a_submission_port_signed_in_with_xoauth2(desk, provider, submission):
    user = f"sender{next(_senders)}-{os.getpid()}@example.test"
    client_id, secret = provider.add_client(mailbox=user)
    grant = new_grant(provider="generic", flow="app", client_id=client_id, client_secret=secret,
                      token_endpoint=provider.token_endpoint)
    db.session.commit()
    with _session(submission, user, grant) as session:
        result = session.send(user, ["carol@desk.test"], _message(user))
    assert result.accepted == ["carol@desk.test"], result
    logged = "\n".join(submission.log_lines())
    assert f"sasl_method=XOAUTH2, sasl_username={user}" in logged


def test_a_revoked_grant_makes_the_server_unusable_and_needs_reconnecting(desk, provider, submission):
    user = f"sender{next(_senders)}-{os.getpid()}@example.test"
    client_id, secret = provider.add_client()
    grant = new_grant(provider="generic", flow="delegated", client_id=client_id, client_secret=secret,
                      token_endpoint=provider.token_endpoint,
                      refresh_token=provider.grant_refresh_token(client_id, user))
    db.session.commit()
    with _session(submission, user, grant) as session:
        assert session.send(user, ["carol@desk.test"], _message(user)).accepted
    provider.revoke(user)
    requests_before = provider.token_requests
    with _session(submission, user, grant) as session:
        result = session.send(user, ["carol@desk.test"], _message(user))
    assert result.server_failed and not result.accepted
    assert "needs reconnecting" in str(result)
    assert provider.token_requests - requests_before == 1, "one refresh attempt, then stop"
    db.session.expire_all()
    assert db.session.get(OAuthGrant, grant.id).state is GrantState.NEEDS_RECONNECTING
    with _session(submission, user, grant) as session:
        again = session.send(user, ["carol@desk.test"], _message(user))
    assert again.server_failed and provider.token_requests - requests_before == 1
