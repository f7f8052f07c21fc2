"""What every response carries: security headers, no inline script, the
CSRF token for htmx, and the vendored htmx (no CDN)."""

import re

from switchboard.calls.services import log_call
from switchboard.db import db


def _pages(login, people):
    call = log_call(people["anna"], "Mail slow", customer=people["carol"])
    db.session.commit()
    portal = login("admin")
    return portal, ["/", "/calls/", f"/calls/{call.id}", "/calls/new", "/requests/", "/requests/new",
                    "/admin/people", "/admin/groups", "/admin/priorities", "/calls/999", "/me/settings",
                    "/admin/mail/accounts", "/admin/mail/accounts/new", "/admin/mail/inbound", "/admin/mail/servers/new",
                    "/admin/mail/templates", "/admin/mail/templates/1", "/admin/mail/notifications", "/admin/mail/outbox"]


def test_security_headers_on_every_response(client, login, people):
    responses = [client.get("/login"), client.get("/"), client.get("/static/desk.css")]
    portal, pages = _pages(login, people)
    responses += [portal.get(url) for url in pages]
    for response in responses:
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"


def test_pages_have_no_inline_script_and_carry_the_csrf_token(login, people):
    portal, pages = _pages(login, people)
    for url in pages:
        html = portal.get(url).get_data(as_text=True)
        scripts = re.findall(r"<script\b[^>]*>", html)
        # htmx under its fingerprinted name (portal/assets.py), the only script.
        assert len(scripts) == 1 and re.fullmatch(
            r'<script src="/static/vendor/htmx\.min\.[0-9a-f]{12}\.js" defer>', scripts[0]
        ), (url, scripts)
        assert not re.search(r"\son[a-z]+=", html), url  # no inline event handlers
        assert not re.search(r"\sstyle=", html), url
        token = re.search(r'<meta name="csrf-token" content="([^"]+)">', html).group(1)
        assert f"hx-headers='{{\"X-CSRFToken\": \"{token}\"}}'" in html
        assert "<title>" in html and "· Switchboard</title>" in html


def test_htmx_is_served_from_the_desk(client):
    response = client.get("/static/vendor/htmx.min.js")
    assert response.status_code == 200 and b"htmx" in response.data[:200]
    assert client.get("/static/vendor/htmx.LICENSE").status_code == 200


def test_desk_name_comes_from_config(client, app):
    app.config["DESK_NAME"] = "Acme IT Desk"
    try:
        assert "<title>Log in · Acme IT Desk</title>" in client.get("/login").get_data(as_text=True)
    finally:
        app.config["DESK_NAME"] = "Switchboard"
