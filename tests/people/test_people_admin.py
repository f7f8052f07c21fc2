"""What an admin does to people, groups and priorities, and that nobody
else can."""

import pytest

from switchboard.calls.admin import priorities, rename_priority
from switchboard.db import db
from switchboard.errors import InvalidInput, PermissionDenied
from switchboard.people.admin import add_group, add_member, add_person, remove_member, set_active


@pytest.fixture
def keep_priority_names(app):
    # The priority rows survive between tests (they are seeded reference
    # data), so a test that renames one puts the names back.
    names = {p.id: p.name for p in priorities()}
    yield
    for priority in priorities():
        priority.name = names[priority.id]
    db.session.commit()


def test_admin_adds_and_deactivates_people(people):
    admin = people["admin"]
    erin = add_person(admin, "Erin@Desk.test", "Erin", analyst=True, customer=False, password="erin-password-1")
    assert erin.email == "erin@desk.test" and erin.is_analyst and erin.can_log_in
    version = erin.session_version
    set_active(admin, erin, False)
    assert not erin.active and erin.session_version > version
    set_active(admin, erin, True)
    assert erin.active

    with pytest.raises(InvalidInput, match="at least one"):
        add_person(admin, "nobody@desk.test", customer=False)  # no flag ticked at all
    with pytest.raises(InvalidInput, match="yourself"):
        set_active(admin, admin, False)
    with pytest.raises(PermissionDenied):
        add_person(people["anna"], "x@desk.test", customer=True)
    with pytest.raises(PermissionDenied):
        set_active(people["anna"], people["bob"], False)


def test_an_admin_always_remains(people):
    second = add_person(people["admin"], "second@desk.test", admin=True, customer=False)
    set_active(second, people["admin"], False)
    # The deactivated admin can no longer act; the one who acted cannot
    # deactivate themselves, so someone is always left to undo it.
    with pytest.raises(PermissionDenied):
        set_active(people["admin"], second, True)
    with pytest.raises(InvalidInput, match="yourself"):
        set_active(second, second, False)


def test_groups_and_membership(people):
    admin, anna, carol = people["admin"], people["anna"], people["carol"]
    group = add_group(admin, "Field Support")
    add_member(admin, group, anna)
    assert anna in group.members
    with pytest.raises(InvalidInput, match="already"):
        add_member(admin, group, anna)
    with pytest.raises(InvalidInput, match="not an active analyst"):
        add_member(admin, group, carol)
    remove_member(admin, group, anna)
    assert anna not in group.members
    with pytest.raises(PermissionDenied):
        add_group(anna, "Shadow IT")


def test_rename_priority(people, keep_priority_names):
    rename_priority(people["admin"], 1, "  P1   Outage ")
    db.session.commit()
    assert priorities()[0].name == "P1 Outage"
    with pytest.raises(InvalidInput, match="called"):
        rename_priority(people["admin"], 2, "P1 Outage")
    with pytest.raises(InvalidInput):
        rename_priority(people["admin"], 2, " ")
    with pytest.raises(PermissionDenied):
        rename_priority(people["anna"], 2, "Whatever")
