"""Mail admin pages: only admins get in; incoming accounts are added,
edited and deactivated through the forms (the password never shown back,
stored encrypted), and Test connection logs in to a real Dovecot."""

import re

from switchboard import secrets
from switchboard.db import db
from switchboard.inbound.accounts import find_account
from switchboard.inbound.models import AfterProcessing, IncomingAccount, Protocol, Security
from tests.portal.conftest import count, field_error, is_fragment

MAIL_PAGES = [
    "/admin/mail/accounts", "/admin/mail/accounts/new", "/admin/mail/inbound", "/admin/mail/servers",
    "/admin/mail/servers/new", "/admin/mail/templates", "/admin/mail/templates/1", "/admin/mail/notifications",
    "/admin/mail/outbox",
]


def _account_form(**values) -> dict:
    form = {
        "name": "Support mailbox", "protocol": "imap", "addresses": "", "host": "imap.example.org", "port": "",
        "security": "tls", "username": "support@example.org", "password": "", "trusted_ca_pem": "",
        "folder": "INBOX", "after_processing": "", "processed_folder": "Processed",
        "poll_interval_seconds": "60", "batch_size": "100", "max_messages_per_session": "1000",
        "timeout_seconds": "10", "allow_new_calls": "y", "unknown_senders": "create",
        "default_priority": "", "default_group": "", "default_analyst": "",
    }
    form.update(values)
    return {k: v for k, v in form.items() if v is not None}


def test_mail_pages_are_for_admins_only(client, login, people):
    for url in MAIL_PAGES:
        response = client.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login"), url
    portal = login("anna")
    for url in MAIL_PAGES:
        response = portal.get(url)
        assert response.status_code == 403, url
        assert "Only an admin can do that." in response.get_data(as_text=True)
    response = portal.post("/admin/mail/accounts/new", _account_form(password="secret-1"))
    assert response.status_code == 403 and count(IncomingAccount) == 0
    assert portal.post("/admin/mail/templates/1/preview", {"subject": "x", "text": "y"}, htmx=True).status_code == 403


def test_the_admin_check_covers_every_mail_endpoint(app, login, people):
    """The check is the admin blueprint's: even a route nobody lists here is refused."""
    portal = login("bob")
    routes = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("admin.mail.")]
    assert len(routes) >= 25
    for rule in routes:
        url = re.sub(r"<any\(([^,)]+)[^>]*>", r"\1", rule.rule)  # <any(deactivate, reactivate):change>
        url = re.sub(r"<int:\w+>", "1", url)
        assert "<" not in url, url
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = portal.get(url) if method == "GET" else portal.post(url, {"to": "x@example.org"})
            assert response.status_code == 403, (method, url)


def test_every_mail_page_renders_for_an_admin_with_the_admin_menu(login, people):
    portal = login("admin")
    for url in MAIL_PAGES:
        response = portal.get(url)
        assert response.status_code == 200, url
        page = response.get_data(as_text=True)
        menu = page.split('aria-label="Admin"', 1)[1].split("</nav>", 1)[0]
        for label in ("Mail accounts", "Inbound log", "Outgoing servers", "Templates", "Notifications", "Outbox"):
            assert f">{label}</a>" in menu, (url, label)
        assert menu.count('aria-current="page"') == 1, url


def test_add_edit_and_deactivate_an_account(login, people):
    portal = login("admin")
    response = portal.post("/admin/mail/accounts/new", _account_form(
        password="mailbox secret 1", default_group=str(people["service_desk"].id),
        default_analyst=str(people["bob"].id), default_priority="2"))
    assert response.status_code == 303, response.get_data(as_text=True)
    account = find_account("Support mailbox")
    assert (account.protocol, account.security, account.port) == (Protocol.IMAP, Security.TLS, 993)
    assert account.after_processing is AfterProcessing.MOVE
    assert (account.default_group_id, account.default_analyst_id, account.default_priority_id) == (
        people["service_desk"].id, people["bob"].id, 2)
    assert "mailbox secret 1" not in account.password_encrypted
    assert secrets.decrypt(account.password_encrypted) == "mailbox secret 1"
    listing = portal.get("/admin/mail/accounts").get_data(as_text=True)
    assert "Account Support mailbox added." in listing and "Not polled yet" in listing

    page = portal.get(f"/admin/mail/accounts/{account.id}").get_data(as_text=True)
    assert "mailbox secret 1" not in page and account.password_encrypted not in page
    assert 'value=""' in re.search(r'<input[^>]*name="password"[^>]*>', page).group(0)
    assert 'value="imap.example.org"' in page

    # A blank password keeps the stored one; everything else is saved.
    stored = account.password_encrypted
    response = portal.post(f"/admin/mail/accounts/{account.id}", _account_form(
        name="Support", host="mail.example.org", security="starttls", port="", after_processing="seen",
        allow_new_calls=None, unknown_senders="reject", use_linked_analyst="y"))
    assert response.status_code == 303
    db.session.expire_all()
    assert (account.name, account.host, account.port, account.after_processing) == (
        "Support", "mail.example.org", 143, AfterProcessing.SEEN)  # a blank port: the usual one
    assert not account.allow_new_calls and account.use_linked_analyst
    assert account.unknown_senders.value == "reject" and account.default_analyst_id is None
    assert account.password_encrypted == stored

    # Bad input: the message beside the field, nothing saved, the typed password not echoed.
    response = portal.post(f"/admin/mail/accounts/{account.id}", _account_form(
        name="Support", host="", password="a new secret"))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "host") == "A IMAP account needs a host."
    assert "a new secret" not in page
    db.session.expire_all()
    assert account.host == "mail.example.org" and account.password_encrypted == stored

    assert portal.post(f"/admin/mail/accounts/{account.id}/deactivate").status_code == 303
    db.session.expire_all()
    assert not account.active
    assert "Inactive" in portal.get("/admin/mail/accounts").get_data(as_text=True)
    assert portal.post(f"/admin/mail/accounts/{account.id}/reactivate").status_code == 303
    db.session.expire_all()
    assert account.active
    assert portal.get("/admin/mail/accounts/999").status_code == 404


def test_account_form_refusals_are_beside_their_fields(login, people):
    portal = login("admin")
    cases = [
        (_account_form(password=""), "password", "Give the mailbox password."),
        (_account_form(password="x", protocol="pop3", after_processing="move"), "after_processing",
         "POP3 has no folders: after processing, delete the message or keep it (seen)."),
        (_account_form(password="x", trusted_ca_pem="not a certificate"), "trusted_ca_pem", None),
        (_account_form(password="x", poll_interval_seconds="5"), "poll_interval_seconds",
         "Poll interval seconds must be between 10 and 86400."),
        (_account_form(protocol="lmtp", host=""), "addresses", None),
        (_account_form(protocol="lmtp", addresses="not an address"), "addresses", None),
        (_account_form(password="x", port="seventy"), "port", "Not a valid integer value."),
    ]
    for form, field, message in cases:
        response = portal.post("/admin/mail/accounts/new", form)
        assert response.status_code == 422, field
        error = field_error(response.get_data(as_text=True), field)
        assert error and (message is None or error == message), (field, error)
    assert count(IncomingAccount) == 0
    response = portal.post("/admin/mail/accounts/new", _account_form(
        name="Help", protocol="lmtp", addresses="Help@Desk.Test\n@support.desk.test", host=""))
    assert response.status_code == 303
    assert [a.address for a in find_account("Help").addresses] == ["@support.desk.test", "help@desk.test"]


def test_test_connection_logs_in_to_a_real_dovecot(login, people, dovecot, mail_account, server_tls):
    portal = login("admin")
    mail_account.append(b"From: carol@example.org\r\nSubject: one\r\n\r\nfirst\r\n")
    mail_account.append(b"From: carol@example.org\r\nSubject: two\r\n\r\nsecond\r\n")
    ca = server_tls.ca.read_text()
    accounts = {
        "imap": _account_form(name="imap", host=dovecot.host, port=str(dovecot.ports.imap), security="none",
                              username=mail_account.email, password=mail_account.password),
        "imaps": _account_form(name="imaps", host=dovecot.host, port=str(dovecot.ports.imaps), security="tls",
                               username=mail_account.email, password=mail_account.password, trusted_ca_pem=ca),
        "pop3": _account_form(name="pop3", protocol="pop3", host=dovecot.host, port=str(dovecot.ports.pop3),
                              security="starttls", username=mail_account.email, password=mail_account.password,
                              trusted_ca_pem=ca),
    }
    for form in accounts.values():
        assert portal.post("/admin/mail/accounts/new", form).status_code == 303
    found = {
        "imap": "INBOX has 2 messages. The processed folder Processed will be created on the first poll.",
        "imaps": "INBOX has 2 messages.",
        "pop3": "The mailbox has 2 messages",
    }
    for name, expected in found.items():
        account = find_account(name)
        response = portal.post(f"/admin/mail/accounts/{account.id}/test", htmx=True)
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and is_fragment(html)
        assert f"Logged in to {dovecot.host}:{account.port} as {mail_account.email}." in html, html
        assert expected in html and "flash-message" in html, html

    # A wrong password: the server's refusal, in words, and still nothing changed.
    account = find_account("imap")
    assert portal.post(f"/admin/mail/accounts/{account.id}", dict(accounts["imap"], password="wrong")).status_code == 303
    response = portal.post(f"/admin/mail/accounts/{account.id}/test", htmx=True)
    html = response.get_data(as_text=True)
    assert "flash-error" in html and "login refused" in html and mail_account.email in html, html
    assert "wrong" not in html
    # Without JS: the same answer as a message on the account's page.
    response = portal.post(f"/admin/mail/accounts/{account.id}/test")
    assert response.status_code == 303
    assert "login refused" in portal.get(response.headers["Location"]).get_data(as_text=True)
    assert len(mail_account.messages()) == 2 and mail_account.folders() == ["INBOX"]
    db.session.expire_all()
    assert account.last_error is None and account.last_poll_at is None  # a test is not a poll


def test_test_connection_to_a_closed_port_says_so(login, people):
    from tests.servers.process import free_ports

    (port,) = free_ports(1)
    portal = login("admin")
    portal.post("/admin/mail/accounts/new", _account_form(
        name="nowhere", protocol="pop3", host="127.0.0.1", port=str(port), security="none",
        username="u", password="p", timeout_seconds="3"))
    account = find_account("nowhere")
    html = portal.post(f"/admin/mail/accounts/{account.id}/test", htmx=True).get_data(as_text=True)
    assert f"cannot connect to 127.0.0.1:{port}: connection refused" in html
