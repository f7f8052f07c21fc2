"""Portal test helpers: a test client, logging in through the real login
form, and posting forms with the CSRF token a page handed out (the way a
browser does: CSRF stays enforced in these tests)."""

import re

import pytest
from flask import g, request_started

from switchboard.db import db

TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
PASSWORDS = {
    "admin": "admin-password-1",
    "anna": "anna-password-1",
    "bob": "bob-password-1",
}


def csrf_token(client, page: str = "/login") -> str:
    """The CSRF token from a page's meta tag (every portal page has one)."""
    html = client.get(page, follow_redirects=True).get_data(as_text=True)
    match = TOKEN.search(html)
    assert match, f"no CSRF token on {page}"
    return match.group(1)


class Portal:
    """A browser-like session: remembers its CSRF token and posts with it."""

    def __init__(self, client):
        self.client = client
        self._token = None

    def get(self, url, **kwargs):
        return self.client.get(url, **kwargs)

    def token(self) -> str:
        if self._token is None:
            self._token = csrf_token(self.client, "/login")
        return self._token

    def post(self, url, data=None, *, htmx=False, **kwargs):
        data = dict(data or {})
        data.setdefault("csrf_token", self.token())
        headers = kwargs.pop("headers", {})
        if htmx:
            headers = {**headers, "HX-Request": "true"}
        return self.client.post(url, data=data, headers=headers, **kwargs)

    def login(self, email: str, password: str):
        response = self.post("/login", {"email": email, "password": password})
        # Logging in starts a new session: fetch the token again.
        self._token = None
        return response

    def logout(self):
        response = self.post("/logout")
        self._token = None
        return response


@pytest.fixture
def _fresh_g_per_request(app):
    """The `app` fixture keeps one app context open for the whole test, so
    requests would share `g`: Flask-Login's current user and Flask-WTF's
    CSRF token would leak from one client to the next. A real server gives
    every request its own; so do we."""

    def forget(sender, **_extra):
        g.__dict__.clear()

    request_started.connect(forget, app)
    yield
    request_started.disconnect(forget, app)


@pytest.fixture
def client(app, _fresh_g_per_request):
    return app.test_client()


@pytest.fixture
def portal(client):
    return Portal(client)


@pytest.fixture
def login(people, portal):
    """login("anna") logs that cast member in and returns the Portal."""

    def log_in(name: str) -> Portal:
        response = portal.login(people[name].email, PASSWORDS[name])
        assert response.status_code == 302, response.get_data(as_text=True)
        return portal

    return log_in


def count(model) -> int:
    return db.session.scalar(db.select(db.func.count()).select_from(model))


def field_error(html: str, field_id: str) -> str | None:
    """The error shown beside a field (its `<p id="FIELD-error">`), if any."""
    match = re.search(rf'<p class="error" id="{re.escape(field_id)}-error">(.*?)</p>', html, re.S)
    return match.group(1) if match else None


def is_fragment(html: str) -> bool:
    return "<html" not in html and "<body" not in html


# The mail admin pages also use the shared Dovecot fixtures (dovecot,
# mail_account, server_tls: tests/servers, loaded by the root conftest) and
# an SMTP sink like the outbox tests use.
@pytest.fixture
def smtp_sink():
    from tests.outbox.smtp_sink import SmtpSink

    with SmtpSink() as sink:
        yield sink
