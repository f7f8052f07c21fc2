"""Sessions and logins as an attacker tries them: a session cookie replayed
after logout, and logins that would tell which addresses have accounts."""

import pytest

from switchboard.db import db
from switchboard.people import models
from tests.portal.conftest import TOKEN, Portal


def _replay(app, cookie: str):
    """A second browser holding a copy of the cookie (what a thief would do)."""
    other = app.test_client()
    other.set_cookie("session", cookie)
    return other.get("/calls/")


def test_a_session_cookie_replayed_after_logout_is_refused(app, client, login, people):
    portal = login("anna")
    stolen = client.get_cookie("session").value
    assert _replay(app, stolen).status_code == 200  # the copy works while she is logged in
    assert portal.logout().status_code == 302
    response = _replay(app, stolen)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    # She can log in again afterwards; her old cookie stays dead.
    assert login("anna").get("/calls/").status_code == 200
    assert _replay(app, stolen).status_code == 302


def test_a_session_ends_when_its_person_is_no_longer_staff(app, client, login, people):
    portal = login("bob")
    people["bob"].is_analyst = False  # demoted to a plain customer
    db.session.commit()
    response = portal.get("/calls/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


@pytest.fixture
def hash_checks(monkeypatch):
    """Counts the slow password hash checks the login runs (not wall time: that is noisy)."""
    calls = []
    real = models.check_password_hash

    def counting(pwhash, password):
        calls.append(pwhash)
        return real(pwhash, password)

    monkeypatch.setattr(models, "check_password_hash", counting)
    return calls


def test_login_failures_read_the_same_and_cost_the_same(client, people, hash_checks):
    from switchboard.people.admin import set_active

    people["carol"].set_password("carol-password-1")  # a customer with a password
    set_active(people["admin"], people["bob"], False)  # an inactive analyst
    db.session.commit()  # dave: a customer without a password
    attempts = {
        "unknown address": ("nobody@desk.test", "some-password-1"),
        "wrong password": ("anna@desk.test", "some-password-1"),
        "no password": ("dave@example.org", "some-password-1"),
        "customer, wrong password": ("carol@example.org", "some-password-1"),
        "inactive, right password": ("bob@desk.test", "bob-password-1"),
    }
    pages = {}
    for case, (email, password) in attempts.items():
        portal = Portal(client)
        before = len(hash_checks)
        response = portal.login(email, password)
        assert response.status_code == 400, case
        assert len(hash_checks) - before == 1, f"{case}: {len(hash_checks) - before} hash checks"
        html = response.get_data(as_text=True)
        assert "Wrong email or password." in html, case
        assert "customers use email" not in html, case
        # Nothing else on the page differs (the CSRF token, signed with the time, aside).
        pages[case] = html.replace(TOKEN.search(html).group(1), "TOKEN").replace(email, "EMAIL")
        assert client.get("/").status_code == 302, case
    assert len(set(pages.values())) == 1, "the failure pages differ"


def test_only_the_right_password_tells_a_customer_to_use_email(portal, people, hash_checks):
    people["carol"].set_password("carol-password-1")
    db.session.commit()
    response = portal.login("carol@example.org", "carol-password-1")
    assert response.status_code == 400 and len(hash_checks) == 1
    assert "customers use email" in response.get_data(as_text=True)
    assert portal.get("/").status_code == 302
