"""Operations on people and groups. They flush; the caller commits."""

import functools
import secrets

from email import errors
from email.headerregistry import Address

from switchboard.db import db, flush, transaction_cache
from switchboard.errors import InvalidInput, NotFound
from switchboard.people.models import Group, Person


@functools.lru_cache(maxsize=4096)  # the same senders write again and again; the parse is dear
def normalize_email(address: str) -> str:
    """Checks the syntax and lower-cases the whole address: one person per
    mailbox, whatever case a mail client uses. Any domain the mail system
    delivers for is fine (intranet desks have .local and .internal ones)."""
    text = (address or "").strip()
    try:
        parsed = Address(addr_spec=text)
    except (ValueError, IndexError, errors.HeaderParseError):
        parsed = None
    if (
        parsed is None
        or not parsed.username
        or not parsed.domain
        or len(text) > 320
        or any(ch.isspace() or ord(ch) < 32 for ch in text)
        or parsed.domain.startswith(".")
        or ".." in parsed.domain
    ):
        raise InvalidInput(f"Not a valid email address: {text[:80]!r}", field="email")
    return parsed.addr_spec.lower()


# email -> Person or None, for this transaction: filled by look_up_people and create_person.
_KNOWN = "people_by_email"


def find_person(email: str) -> Person | None:
    try:
        email = normalize_email(email)
    except InvalidInput:
        return None
    known = transaction_cache().get(_KNOWN)
    if known is not None and email in known:
        person = known[email]
        if person is None or person.email == email:
            return person
    return db.session.scalar(db.select(Person).where(Person.email == email))


def look_up_people(emails) -> None:
    """Finds many people in one query, so that find_person answers from memory for
    them (and for those not found) until the transaction ends: a batch of mail
    looks up each sender once. People created meanwhile by create_person are found
    too, even before they are flushed."""
    wanted = set()
    for email in emails:
        try:
            wanted.add(normalize_email(email))
        except InvalidInput:
            continue
    known = transaction_cache().setdefault(_KNOWN, {})
    missing = wanted - known.keys()
    if missing:
        found = {p.email: p for p in db.session.scalars(db.select(Person).where(Person.email.in_(missing)))}
        for email in missing:
            known[email] = found.get(email)


def get_person(person_id: int) -> Person:
    person = db.session.get(Person, person_id)
    if person is None:
        raise NotFound(f"No person #{person_id}.")
    return person


def create_person(
    email: str,
    name: str = "",
    *,
    analyst: bool = False,
    admin: bool = False,
    customer: bool = True,
    password: str | None = None,
) -> Person:
    email = normalize_email(email)
    if find_person(email) is not None:
        raise InvalidInput(f"{email} already exists.", field="email")
    person = Person(
        email=email,
        # One line, as summaries and titles are: a name goes into mail headers and bodies.
        name=" ".join((name or "").split())[:200],
        is_analyst=analyst or admin,
        is_admin=admin,
        is_customer=customer,
        active=True,  # set here, not left to the column default: batched writes read it before the flush
        session_version=1,
    )
    if password is not None:
        check_password_strength(password)
        person.set_password(password)
    db.session.add(person)
    flush()
    known = transaction_cache().get(_KNOWN)
    if known is not None:
        known[email] = person
    return person


def find_or_create_customer(email: str, name: str = "") -> Person:
    person = find_person(email)
    if person is None:
        person = create_person(email, name)
    return person


def check_password_strength(password: str) -> None:
    if len(password) < 10:
        raise InvalidInput("A password needs at least 10 characters.", field="password")


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def create_group(name: str, email: str | None = None, members=()) -> Group:
    name = " ".join((name or "").split())  # one line: a group's name reaches mail
    if not name:
        raise InvalidInput("A group needs a name.", field="name")
    if db.session.scalar(db.select(Group).where(Group.name == name)):
        raise InvalidInput(f"A group named {name} exists already.", field="name")
    group = Group(name=name, email=normalize_email(email) if email else None)
    for member in members:
        if not member.is_analyst:
            raise InvalidInput(f"{member.email} is not an analyst.", field="members")
        group.members.append(member)
    db.session.add(group)
    db.session.flush()
    return group


def analysts():
    return db.session.scalars(
        db.select(Person).where(Person.is_analyst, Person.active).order_by(Person.name, Person.email)
    ).all()


def groups():
    return db.session.scalars(db.select(Group).where(Group.active).order_by(Group.name)).all()
