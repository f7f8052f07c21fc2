"""Logging in and out of the portal: who gets in, how failures look, the
login rate limit, and CSRF on every form."""

from switchboard.calls.models import Call
from tests.portal.conftest import count, csrf_token


def test_login_page_renders_with_the_desk_name(client, app):
    response = client.get("/login")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<title>Log in · Switchboard</title>" in html
    assert 'for="email"' in html and 'for="password"' in html
    assert 'href="#main"' in html  # the skip link


def test_pages_need_login_and_come_back_after_it(portal, people):
    response = portal.get("/calls/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    response = portal.client.post(
        response.headers["Location"],
        data={"email": "anna@desk.test", "password": "anna-password-1", "csrf_token": portal.token()},
    )
    assert response.status_code == 302 and response.headers["Location"] == "/calls/"
    assert "Anna Analyst" in portal.get("/calls/").get_data(as_text=True)


def test_wrong_password_and_unknown_address_get_the_same_message(portal, people):
    wrong = portal.login("anna@desk.test", "not-her-password")
    unknown = portal.login("nobody@desk.test", "whatever-password")
    for response in (wrong, unknown):
        assert response.status_code == 400
        assert "Wrong email or password." in response.get_data(as_text=True)
    assert portal.get("/").status_code == 302  # still logged out


def test_a_customer_cannot_log_in_to_the_portal(portal, people):
    people["carol"].set_password("carol-password-1")
    from switchboard.db import db

    db.session.commit()
    response = portal.login("carol@example.org", "carol-password-1")
    assert response.status_code == 400
    assert "customers use email" in response.get_data(as_text=True)
    assert portal.get("/").status_code == 302


def test_login_attempts_are_limited(portal, people, app):
    limit = int(app.config["LOGIN_RATE_LIMIT"].split()[0])
    for _ in range(limit):
        assert portal.login("anna@desk.test", "guessing-password").status_code == 400
    response = portal.login("anna@desk.test", "anna-password-1")  # even the right one, now
    assert response.status_code == 429
    assert "Too many attempts" in response.get_data(as_text=True)


def test_logout_needs_a_post_with_the_token(login, people):
    portal = login("anna")
    assert portal.get("/logout").status_code == 405
    assert portal.client.post("/logout").status_code == 400  # no CSRF token
    assert portal.get("/").status_code == 200
    response = portal.logout()
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert portal.get("/").status_code == 302


def test_csrf_is_enforced_and_a_refused_post_changes_nothing(login, people):
    portal = login("anna")
    form = {"customer_email": "carol@example.org", "summary": "Printer jammed", "priority": "3"}
    response = portal.client.post("/calls/new", data=form)
    assert response.status_code == 400
    assert "CSRF token is missing" in response.get_data(as_text=True)
    response = portal.client.post("/calls/new", data={**form, "csrf_token": "forged"})
    assert response.status_code == 400
    # htmx sends the token in a header instead: a wrong one is refused as well.
    response = portal.client.post("/calls/new", data=form, headers={"X-CSRFToken": "forged", "HX-Request": "true"})
    assert response.status_code == 400
    assert count(Call) == 0
    # The real token (from the page's meta tag) goes through, in a field or the header.
    token = csrf_token(portal.client, "/calls/new")
    assert portal.client.post("/calls/new", data={**form, "csrf_token": token}).status_code == 303
    assert portal.client.post("/calls/new", data=form, headers={"X-CSRFToken": token}).status_code == 303
    assert count(Call) == 2


def test_deactivating_someone_ends_their_session(login, people):
    from switchboard.db import db
    from switchboard.people.admin import set_active

    portal = login("anna")
    set_active(people["admin"], people["anna"], False)
    db.session.commit()
    assert portal.get("/").status_code == 302
