"""The delegated "Connect" flow in a real browser (issue 13): an admin fills in the OAuth2
settings on the account's page, presses Connect, signs in and allows access on the tests'
OAuth2 server's page, and comes back to "connected"; the mailbox is then polled for real."""

from __future__ import annotations

import os

import pytest

from tests.portal.live import served
from tests.portal.test_browser import CHROMIUM, CHROMIUM_ARGS, PHONE, sync_api  # noqa: F401  (fixture)


@pytest.fixture
def live_desk(tmp_path, server_tls, oauth_dovecot):
    from flask_migrate import upgrade

    from switchboard import secrets
    from switchboard.db import db
    from switchboard.inbound.models import AfterProcessing, IncomingAccount, Protocol, Security
    from switchboard.people.services import create_person
    from tests.conftest import make_test_app

    app = make_test_app(f"sqlite:///{tmp_path / 'connect.db'}", OAUTH2_CA_FILE=str(server_tls.ca))
    email = f"browser-{os.getpid()}@example.test"
    with app.app_context():
        upgrade()
        create_person("admin@desk.test", "Ada Admin", admin=True, customer=False, password="admin-password-1")
        account = IncomingAccount(
            name="M365 help", protocol=Protocol.IMAP, host=oauth_dovecot.host, port=oauth_dovecot.ports.imaps,
            security=Security.TLS, username=email, trusted_ca_pem=open(oauth_dovecot.ca_path).read(),
            after_processing=AfterProcessing.SEEN, password_encrypted=secrets.encrypt("unused"))
        db.session.add(account)
        db.session.commit()
        account_id = account.id
    try:
        with served(app) as base:
            yield app, base, account_id, email
    finally:
        with app.app_context():
            db.engine.dispose()


def test_an_admin_connects_a_mailbox_in_the_browser(sync_api, live_desk, provider, oauth_dovecot):  # noqa: F811
    from receiver.poll import poll_account
    from switchboard.db import db
    from switchboard.inbound.models import InboundMessage

    app, base, account_id, email = live_desk
    client_id, secret = provider.add_client()
    oauth_dovecot.append(email, b"From: carol@example.org\r\nSubject: printer\r\nMessage-ID: <b1@example.org>\r\n\r\nhi\r\n")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # The provider's certificate comes from the tests' own CA, which this browser does not know.
            page = browser.new_context(viewport=PHONE, ignore_https_errors=True).new_page()
            page.goto(f"{base}/login")
            page.fill("#email", "admin@desk.test")
            page.fill("#password", "admin-password-1")
            page.click("button[type=submit]")
            page.goto(f"{base}/admin/mail/accounts/{account_id}")
            page.click("text=OAuth2 settings")
            page.select_option("#provider", "generic")
            page.select_option("#flow", "delegated")
            page.fill("#client_id", client_id)
            page.fill("#client_secret", secret)
            page.fill("#token_endpoint", provider.token_endpoint)
            page.fill("#authorization_endpoint", f"{provider.base_url}/authorize")
            page.click("button:has-text('Save')")
            assert "not connected yet" in page.inner_text("#grant-state")
            page.click("button:has-text('Connect')")
            page.wait_for_url(f"{provider.base_url}/authorize*")
            page.fill("input[name=username]", email)
            page.click("button:has-text('Allow')")
            page.wait_for_url(f"{base}/admin/mail/accounts/{account_id}/oauth2")
            assert page.inner_text("#grant-state") == "connected"
            assert "Connected" in page.content()
        finally:
            browser.close()
    with app.app_context():
        assert poll_account(account_id).ok
        assert db.session.query(InboundMessage).filter_by(account_id=account_id).count() == 1
