"""A mailbox password never crosses the network in clear text: IMAP and POP3
accounts with `--security none` are refused unless the server is on this
machine, from the command line and from the admin page (the same rule SMTP
servers follow)."""

import pytest

from switchboard.db import db
from switchboard.inbound.accounts import create_account, find_account, update_account
from switchboard.inbound.models import IncomingAccount
from tests.portal.conftest import count, field_error
from tests.portal.test_mail_accounts import _account_form

CLEAR_TEXT = "Security none would send the mailbox password over the network in clear text"


def _add(app, protocol: str, host: str, security: str):
    return app.test_cli_runner().invoke(
        args=["mail", "accounts", "add", "--name", f"{protocol}-{host}-{security}", "--protocol", protocol, "--host", host,
              "--security", security, "--username", "desk@example.org", "--password-stdin"],
        input="mailbox password 1\n")


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_the_command_refuses_a_clear_text_password_to_another_host(app, protocol):
    for host in ("imap.example.org", "192.0.2.7", "[2001:db8::1]"):
        result = _add(app, protocol, host, "none")
        assert result.exit_code != 0, host
        assert CLEAR_TEXT in result.output, result.output
        assert "mailbox password 1" not in result.output
    assert count(IncomingAccount) == 0
    # On this machine, or with TLS, the same account is fine.
    for host, security in (("127.0.0.1", "none"), ("localhost", "none"), ("::1", "none"),
                           ("imap.example.org", "starttls"), ("imap.example.org", "tls")):
        result = _add(app, protocol, host, security)
        assert result.exit_code == 0, (host, security, result.output)
    assert count(IncomingAccount) == 5


def test_an_account_cannot_be_moved_to_a_clear_text_remote_server(app):
    account = create_account("box", "imap", host="127.0.0.1", security="none", username="u", password="pw")
    db.session.commit()
    from switchboard.errors import InvalidInput

    with pytest.raises(InvalidInput, match=CLEAR_TEXT):
        update_account(account, host="imap.example.org")
    db.session.rollback()
    assert find_account("box").host == "127.0.0.1"


def test_the_admin_page_refuses_it_beside_the_security_field(login, people):
    portal = login("admin")
    response = portal.post("/admin/mail/accounts/new", _account_form(
        host="imap.example.org", security="none", password="mailbox password 1"))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert CLEAR_TEXT in field_error(html, "security")
    assert "mailbox password 1" not in html
    assert count(IncomingAccount) == 0
    response = portal.post("/admin/mail/accounts/new", _account_form(
        host="imap.example.org", security="starttls", password="mailbox password 1"))
    assert response.status_code == 303 and count(IncomingAccount) == 1
