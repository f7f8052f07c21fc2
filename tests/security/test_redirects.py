"""The login form's `next=` as an attacker writes it: a link to our login page
that sends the analyst, once logged in, to another site (an open redirect, the
first step of a phishing page that asks for the password again)."""

from urllib.parse import quote

import pytest

from tests.portal.conftest import PASSWORDS, Portal

# Each is a Location a browser follows off the site: Chromium and Firefox read
# "\" as "/" and drop tabs and line breaks, so each of these is "//evil.example".
OFF_SITE = [
    "//evil.example/",
    "/\\evil.example/",
    "/\\/evil.example/",
    "/\t/evil.example/",
    "/\n/evil.example/",
    "\\\\evil.example/",
    "https://evil.example/",
    "javascript:alert(1)",
]


def _login_with_next(client, people, target: str):
    portal = Portal(client)
    portal.token()
    return portal.client.post(
        "/login?next=" + quote(target, safe=""),
        data={"email": people["anna"].email, "password": PASSWORDS["anna"], "csrf_token": portal.token()},
    )


@pytest.mark.parametrize("target", OFF_SITE, ids=repr)
def test_next_never_leads_off_the_site(client, people, target):
    response = _login_with_next(client, people, target)
    assert response.status_code == 302
    # Logged in, and sent to My work instead.
    assert response.headers["Location"] == "/", response.headers["Location"]


def test_next_to_a_page_of_the_portal_is_kept(client, people):
    response = _login_with_next(client, people, "/calls/?status=open&q=printer%20jam")
    assert response.status_code == 302
    assert response.headers["Location"] == "/calls/?status=open&q=printer%20jam"
