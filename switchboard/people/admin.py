"""What an admin does to people and groups: add them, deactivate and
reactivate people, change group membership. Every operation checks the
actor is an admin; they flush, the caller commits."""

from switchboard.db import db
from switchboard.errors import InvalidInput, NotFound
from switchboard.people.models import Group, Person
from switchboard.people.services import create_group, create_person
from switchboard.permissions import require


def get_group(group_id: int) -> Group:
    group = db.session.get(Group, group_id)
    if group is None:
        raise NotFound(f"No group #{group_id}.")
    return group


def add_person(
    actor,
    email: str,
    name: str = "",
    *,
    analyst: bool = False,
    admin: bool = False,
    customer: bool = True,
    password: str | None = None,
) -> Person:
    require(actor, "admin")
    if not (analyst or admin or customer):
        raise InvalidInput("Tick at least one of customer, analyst or admin.", field="customer")
    return create_person(
        email, name, analyst=analyst, admin=admin, customer=customer, password=password or None
    )


def set_active(actor, person: Person, active: bool) -> None:
    """Deactivating ends the person's sessions at once; their calls and
    history stay. An admin cannot deactivate themselves, so an active admin
    always remains to undo a mistake."""
    require(actor, "admin")
    if person.active == active:
        return
    if not active and person.id == actor.id:
        raise InvalidInput("You cannot deactivate yourself.", field="person")
    person.active = active
    person.end_sessions()  # a cookie from before the change never works again
    db.session.flush()


def add_group(actor, name: str, email: str | None = None) -> Group:
    require(actor, "admin")
    return create_group(name, email or None)


def add_member(actor, group: Group, person: Person) -> None:
    require(actor, "admin")
    if not (person.is_analyst and person.active):
        raise InvalidInput(f"{person.display_name} is not an active analyst.", field="person")
    if person in group.members:
        raise InvalidInput(f"{person.display_name} is in {group.name} already.", field="person")
    group.members.append(person)
    db.session.flush()


def remove_member(actor, group: Group, person: Person) -> None:
    require(actor, "admin")
    if person not in group.members:
        raise InvalidInput(f"{person.display_name} is not in {group.name}.", field="person")
    group.members.remove(person)
    db.session.flush()
