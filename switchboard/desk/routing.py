"""Where a call goes when nothing else routes it: the desk-wide default group.

A call logged by mail through an account without a group of its own, or logged with
neither analyst nor group, lands in this group, so it is always in some analyst's
"Unassigned" view in My work. The group is made at first start (`users ensure-admin`,
which `make run` runs) and named by the admin (the Groups admin page, `desk default-group`).
Functions flush; the caller commits."""

import sqlalchemy as sa

from switchboard.calls.models import Call, CallStatus
from switchboard.db import db, transaction_cache, utcnow
from switchboard.desk.models import THE_DESK, DeskSettings
from switchboard.errors import InvalidInput
from switchboard.history.models import EntryKind, HistoryEntry
from switchboard.people.models import Group, Person
from switchboard.people.services import create_group
from switchboard.permissions import require

# What `make run` names the group on a desk that has none (users ensure-admin --default-group).
FIRST_GROUP_NAME = "Service Desk"

_CACHE_KEY = "desk_default_group_id"


def default_group_id() -> int | None:
    """The default group's id, or None when the desk has none. Asked once per transaction
    (acting on a batch of mail asks it per message)."""
    cache = transaction_cache()
    if _CACHE_KEY not in cache:
        with db.session.no_autoflush:
            cache[_CACHE_KEY] = db.session.scalar(
                sa.select(DeskSettings.default_group_id).where(DeskSettings.id == THE_DESK))
    return cache[_CACHE_KEY]


def default_group() -> Group | None:
    group_id = default_group_id()
    return db.session.get(Group, group_id) if group_id is not None else None


def set_default_group(actor, group: Group) -> int:
    """Make `group` the desk's default (an admin's choice) and gather the calls that sit in
    no group into it. Returns how many calls were gathered."""
    require(actor, "admin")
    return make_default(group)


def make_default(group: Group) -> int:
    """set_default_group for commands (`desk default-group`): whoever runs them has the
    database already, so there is no actor to check."""
    return _set(group)


def ensure_default_group(name: str = FIRST_GROUP_NAME) -> tuple[Group, int, list[Person]] | None:
    """First start, and the first start after an upgrade: when the desk has no default group,
    make the group called `name` the default (creating it if there is none), put the active
    admins in it when it has no active member (so someone sees what lands there), and gather
    the calls that sit in no group. Returns (group, calls gathered, people added), or None
    when the desk had a default group already. Run by `users ensure-admin`, with no actor:
    whoever runs the command has the database already."""
    if default_group() is not None:
        return None
    name = " ".join((name or "").split())
    if not name:
        raise InvalidInput("The default group needs a name.", field="name")
    group = db.session.scalar(sa.select(Group).where(Group.name == name))
    if group is None:
        group = create_group(name)
    added = []
    if not any(member.active for member in group.members):
        admins = db.session.scalars(
            sa.select(Person).where(Person.is_admin, Person.active).order_by(Person.id)).all()
        for admin in admins:
            group.members.append(admin)
            added.append(admin)
    gathered = _set(group)
    return group, gathered, added


def _set(group: Group) -> int:
    if group is None or group.id is None:
        raise InvalidInput("Choose a group.", field="group")
    if not group.active:
        raise InvalidInput(f"{group.name} is not active.", field="group")
    row = db.session.get(DeskSettings, THE_DESK)
    if row is None:
        row = DeskSettings(id=THE_DESK)
        db.session.add(row)
    row.default_group_id = group.id
    row.updated_at = utcnow()
    db.session.flush()
    transaction_cache()[_CACHE_KEY] = group.id
    return gather_unrouted_calls(group)


def gather_unrouted_calls(group: Group) -> int:
    """Calls still open (or resolved) with neither analyst nor group, from before the desk had
    a default group, go to `group`, each with a line on its timeline saying why. Set-based: an
    upgraded desk may hold thousands. Closed calls stay as they were."""
    unrouted = sa.and_(Call.assigned_group_id.is_(None), Call.assigned_analyst_id.is_(None),
                       Call.status != CallStatus.CLOSED)
    now = utcnow()
    entry = HistoryEntry.__table__
    nobody = {"analyst_id": None, "group_id": None}
    db.session.execute(entry.insert().from_select(
        ["call_id", "kind", "summary", "body", "internal", "sender_unverified", "created_at", "details"],
        sa.select(
            Call.id,
            sa.literal(EntryKind.FORWARD, entry.c.kind.type),
            sa.literal(f"Forwarded to {group.name} (the desk's default group: the call had no group)"[:300],
                       entry.c.summary.type),
            sa.literal("", entry.c.body.type),
            # Routing is the desk's business, as every forward is (the customer's page omits it).
            sa.literal(False, entry.c.internal.type),
            sa.literal(False, entry.c.sender_unverified.type),
            sa.literal(now, entry.c.created_at.type),
            sa.literal({"from": nobody, "to": {**nobody, "group_id": group.id}, "default_group": True},
                       entry.c.details.type),
        ).where(unrouted)))
    gathered = db.session.execute(
        sa.update(Call).where(unrouted).values(assigned_group_id=group.id, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    # Calls this session holds may be among them: read them again when next used.
    for held in [obj for obj in db.session.identity_map.values() if isinstance(obj, Call)]:
        db.session.expire(held)
    return gathered
