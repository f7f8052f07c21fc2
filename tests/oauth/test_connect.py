"""The admin's OAuth2 page and the delegated "Connect" round trip (issue 13): settings
saved with the secret write-only, Connect sends the admin to the provider's sign-in page
(authorization code with PKCE), the callback keeps the refresh token, and the mailbox is
then polled for real. A callback that was not started here changes nothing."""

from __future__ import annotations

import itertools
import os
from urllib.parse import parse_qs, urlsplit

import requests

from receiver.poll import poll_account
from switchboard import secrets
from switchboard.db import db
from switchboard.inbound.models import AfterProcessing, IncomingAccount, InboundMessage, Protocol, Security
from switchboard.oauth.models import GrantState, OAuthGrant
from tests.portal.conftest import Portal

_boxes = itertools.count(1)


def _admin(app, people) -> Portal:
    portal = Portal(app.test_client())
    assert portal.login(people["admin"].email, "admin-password-1").status_code == 302
    return portal


def _imap_account(oauth_dovecot, email) -> IncomingAccount:
    account = IncomingAccount(
        name=f"m365-{email}", protocol=Protocol.IMAP, host=oauth_dovecot.host, port=oauth_dovecot.ports.imaps,
        security=Security.TLS, username=email, trusted_ca_pem=open(oauth_dovecot.ca_path).read(),
        after_processing=AfterProcessing.SEEN, password_encrypted=secrets.encrypt("unused"))
    db.session.add(account)
    db.session.commit()
    return account


def _settings(provider, client_id, secret):
    return {"provider": "generic", "flow": "delegated", "client_id": client_id, "client_secret": secret,
            "token_endpoint": provider.token_endpoint, "authorization_endpoint": f"{provider.base_url}/authorize",
            "tenant_id": "", "scopes": ""}


def _sign_in_at_the_provider(location: str, ca: str, username: str, decision: str = "allow") -> str:
    """What the admin's browser does at the provider: open the sign-in page, allow. Returns
    where the provider sends the browser back (the desk's callback with code and state)."""
    page = requests.get(location, verify=ca, timeout=10)
    assert page.status_code == 200 and "Allow" in page.text
    form = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    back = requests.post(location.split("?")[0], data={**form, "username": username, "decision": decision},
                         verify=ca, allow_redirects=False, timeout=10)
    assert back.status_code in (302, 303)
    return back.headers["Location"]


def test_connect_keeps_the_refresh_token_and_the_mailbox_is_polled(desk, people, provider, oauth_dovecot, server_tls):
    email = f"connect{next(_boxes)}-{os.getpid()}@example.test"
    oauth_dovecot.append(email, b"From: carol@example.org\r\nSubject: printer\r\nMessage-ID: <c1@example.org>\r\n\r\nhi\r\n")
    account = _imap_account(oauth_dovecot, email)
    client_id, secret = provider.add_client()
    admin = _admin(desk, people)
    page = f"/admin/mail/accounts/{account.id}/oauth2"
    saved = admin.post(page, _settings(provider, client_id, secret))
    assert saved.status_code == 303, saved.get_data(as_text=True)
    html = admin.get(page).get_data(as_text=True)
    assert "not connected yet" in html and secret not in html
    started = admin.post(f"{page}/connect")
    assert started.status_code == 303 and started.headers["Location"].startswith(f"{provider.base_url}/authorize?")
    query = parse_qs(urlsplit(started.headers["Location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    back = _sign_in_at_the_provider(started.headers["Location"], str(server_tls.ca), email)
    done = admin.get(back[back.index("/admin/"):])
    assert done.status_code == 303
    html = admin.get(page).get_data(as_text=True)
    assert "Connected" in html and ">connected<" in html
    grant = db.session.get(OAuthGrant, db.session.get(IncomingAccount, account.id).oauth_grant_id)
    assert grant.state is GrantState.CONNECTED and grant.refresh_token_encrypted
    assert poll_account(account.id).ok
    assert db.session.query(InboundMessage).filter_by(account_id=account.id).count() == 1
    # The same callback again (a replay, or a second tab): the session no longer holds it.
    again = admin.get(back[back.index("/admin/"):], follow_redirects=True).get_data(as_text=True)
    assert "not started here" in again


def test_a_callback_with_another_state_or_a_refusal_changes_nothing(desk, people, provider, oauth_dovecot, server_tls):
    email = f"connect{next(_boxes)}-{os.getpid()}@example.test"
    account = _imap_account(oauth_dovecot, email)
    client_id, secret = provider.add_client()
    admin = _admin(desk, people)
    page = f"/admin/mail/accounts/{account.id}/oauth2"
    assert admin.post(page, _settings(provider, client_id, secret)).status_code == 303
    started = admin.post(f"{page}/connect")
    back = _sign_in_at_the_provider(started.headers["Location"], str(server_tls.ca), email)
    forged = back.replace("state=", "state=x")
    html = admin.get(forged[forged.index("/admin/"):], follow_redirects=True).get_data(as_text=True)
    assert "not started here" in html
    started = admin.post(f"{page}/connect")
    denied = _sign_in_at_the_provider(started.headers["Location"], str(server_tls.ca), email, decision="deny")
    html = admin.get(denied[denied.index("/admin/"):], follow_redirects=True).get_data(as_text=True)
    assert "did not grant access" in html and "access_denied" in html
    grant = db.session.get(OAuthGrant, db.session.get(IncomingAccount, account.id).oauth_grant_id)
    assert grant.state is GrantState.NOT_CONNECTED and not grant.refresh_token_encrypted


def test_bad_settings_are_refused_beside_the_field_and_save_nothing(desk, people, provider, oauth_dovecot):
    account = _imap_account(oauth_dovecot, f"bad{next(_boxes)}-{os.getpid()}@example.test")
    admin = _admin(desk, people)
    page = f"/admin/mail/accounts/{account.id}/oauth2"
    for change, says in (({"token_endpoint": "http://plain.example/token"}, "https://"),
                         ({"client_id": ""}, "client id"), ({"client_secret": ""}, "client secret")):
        response = admin.post(page, {**_settings(provider, "cid", "sec"), **change})
        assert response.status_code == 422 and says in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(IncomingAccount, account.id).oauth_grant_id is None
