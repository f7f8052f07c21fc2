"""OAuth2 sign-in to real mailboxes (issue 13): a real Dovecot whose oauth2 passdb checks
every token with the tests' own OAuth2 server (tests/servers/oauth2.py, HTTPS with the
session's throwaway CA). First login, tokens cached, refresh on expiry, rotated refresh
tokens kept, a revoked grant marked "needs reconnecting" and never retried, a provider
outage waited out: over IMAP and POP3, on both databases."""

from __future__ import annotations

import itertools
import os

import pytest

from receiver.poll import poll_account
from switchboard import secrets
from switchboard.db import db
from switchboard.inbound.models import AfterProcessing, IncomingAccount, InboundMessage, Protocol, Security
from switchboard.oauth.grants import new_grant
from switchboard.oauth.models import GrantState, OAuthGrant

_mailboxes = itertools.count(1)


def _mailbox(oauth_dovecot) -> str:
    email = f"desk{next(_mailboxes)}-{os.getpid()}@example.test"
    oauth_dovecot.append(email, b"From: carol@example.org\r\nSubject: warm-up\r\n\r\nmake the mailbox\r\n")
    oauth_dovecot.clear(email)
    return email


def _account(oauth_dovecot, email, grant, protocol) -> IncomingAccount:
    port = oauth_dovecot.ports.imaps if protocol is Protocol.IMAP else oauth_dovecot.ports.pop3s
    account = IncomingAccount(
        name=f"{protocol.value}-{email}", protocol=protocol, host=oauth_dovecot.host, port=port,
        security=Security.TLS, username=email, trusted_ca_pem=open(oauth_dovecot.ca_path).read(),
        after_processing=AfterProcessing.DELETE if protocol is Protocol.POP3 else AfterProcessing.SEEN,
        oauth_grant=grant)
    db.session.add(account)
    db.session.commit()
    return account


def _app_grant(provider, email) -> OAuthGrant:
    client_id, secret = provider.add_client(mailbox=email)
    return new_grant(provider="generic", flow="app", client_id=client_id, client_secret=secret,
                     token_endpoint=provider.token_endpoint)


def _delegated_grant(provider, email) -> OAuthGrant:
    client_id, secret = provider.add_client()
    return new_grant(provider="generic", flow="delegated", client_id=client_id, client_secret=secret,
                     token_endpoint=provider.token_endpoint,
                     refresh_token=provider.grant_refresh_token(client_id, email))


def _mail(n: int) -> bytes:
    return (f"From: carol@example.org\r\nTo: desk@example.test\r\nSubject: printer {n}\r\n"
            f"Message-ID: <oauth-{n}-{os.getpid()}-{next(_mailboxes)}@example.org>\r\n\r\nbody {n}\r\n").encode()


def _stored(account) -> int:
    return db.session.query(InboundMessage).filter_by(account_id=account.id).count()


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3], ids=["imap", "pop3"])
def test_first_login_with_a_client_credentials_token_and_the_token_is_reused(desk, provider, oauth_dovecot, protocol):
    email = _mailbox(oauth_dovecot)
    account = _account(oauth_dovecot, email, _app_grant(provider, email), protocol)
    before = provider.token_requests
    oauth_dovecot.append(email, _mail(1))
    result = poll_account(account.id)
    assert result.ok, result.error
    assert _stored(account) == 1
    oauth_dovecot.append(email, _mail(2))
    assert poll_account(account.id).ok
    assert _stored(account) == 2
    assert provider.token_requests - before == 1, "a valid cached token was not reused"
    grant = db.session.get(OAuthGrant, account.oauth_grant_id)
    assert grant.state is GrantState.CONNECTED and grant.access_token_encrypted
    assert "at-" not in grant.access_token_encrypted, "the access token is stored in clear"


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3], ids=["imap", "pop3"])
def test_a_delegated_grant_refreshes_before_expiry_and_keeps_each_rotated_refresh_token(
        desk, provider, oauth_dovecot, protocol, monkeypatch):
    monkeypatch.setattr(provider, "access_seconds", 60)  # inside the 5-minute margin: refreshed every poll
    email = _mailbox(oauth_dovecot)
    grant = _delegated_grant(provider, email)
    first_refresh_token = secrets.decrypt(grant.refresh_token_encrypted)
    account = _account(oauth_dovecot, email, grant, protocol)
    before = provider.token_requests
    for n in range(3):
        oauth_dovecot.append(email, _mail(n))
        result = poll_account(account.id)
        assert result.ok, result.error
    assert _stored(account) == 3
    assert provider.token_requests - before == 3
    db.session.expire_all()
    grant = db.session.get(OAuthGrant, account.oauth_grant_id)
    kept = secrets.decrypt(grant.refresh_token_encrypted)
    server_side = next(g for g in provider.grants if g.username == email and g.refresh_token)
    assert kept == server_side.refresh_token != first_refresh_token, "the rotated refresh token was not kept"


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3], ids=["imap", "pop3"])
def test_a_revoked_grant_needs_reconnecting_and_is_never_tried_again(desk, provider, oauth_dovecot, protocol):
    email = _mailbox(oauth_dovecot)
    account = _account(oauth_dovecot, email, _delegated_grant(provider, email), protocol)
    assert poll_account(account.id).ok
    provider.revoke(email)  # the cached access token still looks valid to the desk
    oauth_dovecot.append(email, _mail(1))
    result = poll_account(account.id)
    assert not result.ok and "needs reconnecting" in result.error and "invalid_grant" in result.error
    grant = db.session.get(OAuthGrant, account.oauth_grant_id)
    assert grant.state is GrantState.NEEDS_RECONNECTING
    requests, introspections = provider.token_requests, provider.introspections
    for _ in range(5):
        later = poll_account(account.id)
        assert not later.ok and "needs reconnecting" in later.error
    assert (provider.token_requests, provider.introspections) == (requests, introspections), \
        "the desk kept asking the provider or logging in after the grant was refused"
    assert oauth_dovecot.messages(email), "the mail must stay in the mailbox"
    assert _stored(account) == 0
    # An admin reconnects (a new sign-in): the mail comes in at the next poll.
    from switchboard.oauth.tokens import reconnected

    reconnected(grant, refresh_token=provider.grant_refresh_token(grant.client_id, email))
    db.session.commit()
    assert poll_account(account.id).ok
    assert _stored(account) == 1


def test_a_provider_outage_is_waited_out_without_a_login_storm(desk, provider, oauth_dovecot):
    email = _mailbox(oauth_dovecot)
    account = _account(oauth_dovecot, email, _app_grant(provider, email), Protocol.IMAP)
    provider.fail_next[:] = [503]
    before = provider.token_requests
    result = poll_account(account.id)
    assert not result.ok and "HTTP 503" in result.error
    again = poll_account(account.id)  # within the pause: the provider is not asked
    assert not again.ok and "next try after" in again.error
    assert provider.token_requests - before == 1
    grant = db.session.get(OAuthGrant, account.oauth_grant_id)
    assert grant.state is not GrantState.NEEDS_RECONNECTING, "an outage is not a refusal"
    grant.retry_after = None  # the pause is over
    db.session.commit()
    oauth_dovecot.append(email, _mail(1))
    assert poll_account(account.id).ok
    assert _stored(account) == 1


def test_a_wrong_client_secret_needs_reconnecting_at_once(desk, provider, oauth_dovecot):
    email = _mailbox(oauth_dovecot)
    client_id, _ = provider.add_client(mailbox=email)
    grant = new_grant(provider="generic", flow="app", client_id=client_id, client_secret="Not-The-Secret-42",
                      token_endpoint=provider.token_endpoint)
    account = _account(oauth_dovecot, email, grant, Protocol.IMAP)
    result = poll_account(account.id)
    assert not result.ok and "invalid_client" in result.error and "needs reconnecting" in result.error
    assert "Not-The-Secret-42" not in result.error


def test_the_admins_hear_once_that_a_mailbox_needs_reconnecting(desk, provider, oauth_dovecot, people):
    from switchboard.outbox.models import OutboxMessage
    from switchboard.oauth.tokens import reconnected

    email = _mailbox(oauth_dovecot)
    account = _account(oauth_dovecot, email, _delegated_grant(provider, email), Protocol.IMAP)
    provider.revoke(email)
    for _ in range(4):
        assert not poll_account(account.id).ok
    notices = db.session.query(OutboxMessage).filter_by(template_key="mailbox_needs_reconnecting").all()
    admins = [p for p in people.values() if getattr(p, "is_admin", False) and p.active]
    assert admins and sorted(n.to[0] for n in notices) == sorted(a.email for a in admins), \
        "one notice per admin, however many polls met the refusal"
    assert f"/admin/mail/accounts/{account.id}" in str(notices[0].context)
    assert "invalid_grant" in str(notices[0].context)
    # Reconnected, then refused again: a new notice.
    grant = db.session.get(OAuthGrant, account.oauth_grant_id)
    reconnected(grant, refresh_token="rt-not-known-to-the-provider")
    db.session.commit()
    assert not poll_account(account.id).ok
    assert db.session.query(OutboxMessage).filter_by(template_key="mailbox_needs_reconnecting").count() \
        == 2 * len(admins)


def test_google_service_account_with_domain_wide_delegation_through_google_auth(desk, provider, oauth_dovecot):
    """google-auth's own code path: a JWT signed with the service account's key, acting for
    the mailbox's user (RFC 7523), at the tests' token endpoint standing in for Google's."""
    import json

    email = _mailbox(oauth_dovecot)
    key = provider.add_service_account()
    grant = new_grant(provider="google", flow="app", client_id=key["client_id"], client_secret=json.dumps(key),
                      token_endpoint=provider.token_endpoint)
    account = _account(oauth_dovecot, email, grant, Protocol.IMAP)
    oauth_dovecot.append(email, _mail(1))
    result = poll_account(account.id)
    assert result.ok, result.error
    assert _stored(account) == 1


def test_google_delegated_refresh_through_google_auth(desk, provider, oauth_dovecot):
    email = _mailbox(oauth_dovecot)
    client_id, secret = provider.add_client()
    grant = new_grant(provider="google", flow="delegated", client_id=client_id, client_secret=secret,
                      token_endpoint=provider.token_endpoint,
                      refresh_token=provider.grant_refresh_token(client_id, email))
    account = _account(oauth_dovecot, email, grant, Protocol.POP3)
    oauth_dovecot.append(email, _mail(1))
    result = poll_account(account.id)
    assert result.ok, result.error
    assert _stored(account) == 1
    db.session.expire_all()
    kept = secrets.decrypt(db.session.get(OAuthGrant, account.oauth_grant_id).refresh_token_encrypted)
    assert kept == next(g for g in provider.grants if g.username == email).refresh_token, \
        "a refresh token Google rotated was not kept"


@pytest.mark.parametrize("proof", ["secret", "certificate"])
def test_microsoft_client_credentials_through_msal(desk, provider, oauth_dovecot, proof):
    """MSAL's own code path (discovery, then the client credentials grant) against the test
    server standing in for Entra ID (no Microsoft endpoint can be reached from here). The app
    proves itself with a secret, or with a certificate: MSAL then signs a client assertion
    (RFC 7523) that the tests' server checks against the registered certificate."""
    email = _mailbox(oauth_dovecot)
    client_id, secret = (provider.add_client(mailbox=email) if proof == "secret"
                         else provider.add_certificate_client(mailbox=email))
    grant = new_grant(provider="microsoft", flow="app", client_id=client_id, client_secret=secret,
                      tenant_id="tenant-1", token_endpoint=f"{provider.base_url}/tenant-1")
    account = _account(oauth_dovecot, email, grant, Protocol.IMAP)
    oauth_dovecot.append(email, _mail(1))
    result = poll_account(account.id)
    assert result.ok, result.error
    assert _stored(account) == 1


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3], ids=["imap", "pop3"])
def test_oauthbearer_when_the_server_offers_only_it(desk, provider, oauth_dovecot, protocol, monkeypatch):
    """RFC 7628's OAUTHBEARER, as a server that does not offer XOAUTH2 gets it (Dovecot offers
    both; the advertised list the desk reads is cut to OAUTHBEARER)."""
    from switchboard.oauth import sasl

    offered = []
    choose = sasl.choose
    monkeypatch.setattr(sasl, "choose", lambda advertised: offered.append(list(advertised)) or
                        choose([m for m in advertised if str(m).upper() != sasl.XOAUTH2]))
    email = _mailbox(oauth_dovecot)
    account = _account(oauth_dovecot, email, _app_grant(provider, email), protocol)
    oauth_dovecot.append(email, _mail(1))
    result = poll_account(account.id)
    assert result.ok, result.error
    assert any("XOAUTH2" in [str(m).upper() for m in o] for o in offered), offered
    assert any("method=OAUTHBEARER" in line and email in line for line in oauth_dovecot.log_lines())
