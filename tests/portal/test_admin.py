"""Admin pages: only admins get in; people, groups and priorities."""

import pytest

from switchboard.calls.admin import priorities
from switchboard.db import db
from switchboard.people.models import Group, Person
from switchboard.people.services import find_person
from tests.portal.conftest import Portal, count, field_error

ADMIN_PAGES = ["/admin/", "/admin/people", "/admin/people/new", "/admin/groups", "/admin/priorities"]


@pytest.fixture
def keep_priority_names(app):
    # Priorities are seeded reference rows that outlive a test: put the names back.
    names = {p.id: p.name for p in priorities()}
    yield
    for priority in priorities():
        priority.name = names[priority.id]
    db.session.commit()


def test_analysts_get_403_and_strangers_the_login_page(client, login, people):
    group_page = f"/admin/groups/{people['network'].id}"
    for url in ADMIN_PAGES + [group_page]:
        response = client.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login"), url
    portal = login("anna")
    for url in ADMIN_PAGES + [group_page]:
        response = portal.get(url)
        assert response.status_code == 403, url
        assert "Only an admin can do that." in response.get_data(as_text=True)
    # Posting is refused as well, and changes nothing.
    response = portal.post("/admin/people/new", {"email": "mallory@desk.test", "admin": "y", "password": "x" * 12})
    assert response.status_code == 403 and find_person("mallory@desk.test") is None
    response = portal.post(f"/admin/people/{people['bob'].id}/deactivate")
    assert response.status_code == 403
    db.session.expire_all()
    assert people["bob"].active
    assert "/admin/" not in portal.get("/").get_data(as_text=True)  # no Admin link either


def test_admin_adds_a_person_who_can_then_log_in(login, people, client):
    portal = login("admin")
    assert all(portal.get(url).status_code == 200 for url in ADMIN_PAGES[1:])
    response = portal.post(
        "/admin/people/new",
        {"email": "erin@desk.test", "name": "Erin", "analyst": "y", "password": "erin-password-1"},
    )
    assert response.status_code == 303
    assert "erin@desk.test added." in portal.get("/admin/people").get_data(as_text=True)
    erin = find_person("erin@desk.test")
    assert erin.is_analyst and not erin.is_customer and not erin.is_admin
    other = Portal(client.application.test_client())
    response = other.login("erin@desk.test", "erin-password-1")
    assert response.status_code == 302, response.get_data(as_text=True)


def test_bad_person_input_is_beside_the_field(login, people):
    portal = login("admin")
    before = count(Person)
    response = portal.post("/admin/people/new", {"email": "anna@desk.test", "analyst": "y"})
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "email") == "anna@desk.test already exists."
    response = portal.post("/admin/people/new", {"email": "new@desk.test", "analyst": "y", "password": "short"})
    assert field_error(response.get_data(as_text=True), "password") == "A password needs at least 10 characters."
    response = portal.post("/admin/people/new", {"email": "new@desk.test"})
    assert "Tick at least one" in field_error(response.get_data(as_text=True), "customer")
    assert count(Person) == before


def test_deactivate_and_reactivate(login, people):
    portal = login("admin")
    bob = people["bob"]
    response = portal.post(f"/admin/people/{bob.id}/deactivate")
    assert response.status_code == 303
    page = portal.get("/admin/people").get_data(as_text=True)
    assert "bob@desk.test deactivated." in page
    db.session.expire_all()
    assert not bob.active
    assert portal.post(f"/admin/people/{bob.id}/reactivate").status_code == 303
    db.session.expire_all()
    assert bob.active
    # Nobody locks themselves out.
    portal.post(f"/admin/people/{people['admin'].id}/deactivate")
    assert "You cannot deactivate yourself." in portal.get("/admin/people").get_data(as_text=True)
    assert portal.post("/admin/people/999/deactivate").status_code == 404


def test_groups_and_members(login, people):
    portal = login("admin")
    response = portal.post("/admin/groups", {"name": "Field Support", "email": ""})
    assert response.status_code == 303
    group = db.session.scalars(db.select(Group).where(Group.name == "Field Support")).one()
    response = portal.post(f"/admin/groups/{group.id}", {"person": str(people["anna"].id)})
    assert response.status_code == 303
    page = portal.get(f"/admin/groups/{group.id}").get_data(as_text=True)
    assert "Anna Analyst" in page and "Member added." in page
    response = portal.post(f"/admin/groups/{group.id}", {"person": ""})
    assert field_error(response.get_data(as_text=True), "person") == "Choose an analyst."
    response = portal.post(f"/admin/groups/{group.id}/members/{people['anna'].id}/remove")
    assert response.status_code == 303
    db.session.expire_all()
    assert group.members == []
    response = portal.post("/admin/groups", {"name": "Network"})
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "name") == "A group named Network exists already."
    assert portal.get("/admin/groups/999").status_code == 404


def test_rename_a_priority(login, people, keep_priority_names):
    portal = login("admin")
    assert portal.post("/admin/priorities/1", {"p1-name": "P1 Outage"}).status_code == 303
    assert "P1 Outage" in portal.get("/admin/priorities").get_data(as_text=True)
    response = portal.post("/admin/priorities/2", {"p2-name": ""})
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "p2-name") == "A priority needs a name."
    assert [p.name for p in priorities()][:2] == ["P1 Outage", "P2 High"]
    assert portal.post("/admin/priorities/9", {"p9-name": "x"}).status_code == 404
