"""What an admin changes about calls as a whole: the priorities' names (the
numbers 1..4 stay, so SLAs and old calls keep their meaning)."""

import sqlalchemy as sa

from switchboard.calls.models import Priority
from switchboard.db import db, transaction_cache
from switchboard.errors import InvalidInput, NotFound
from switchboard.permissions import require

NAME_MAX = 60


def priorities() -> list[Priority]:
    """Every priority, read once per transaction: the priority form lists them, then the
    action takes the chosen one from the same list (calls.services.get_priority)."""
    cache = transaction_cache()
    if "priorities" not in cache:
        cache["priorities"] = db.session.scalars(sa.select(Priority).order_by(Priority.id)).all()
    return list(cache["priorities"])


def rename_priority(actor, priority_id: int, name: str) -> Priority:
    require(actor, "admin")
    priority = db.session.get(Priority, priority_id)
    if priority is None:
        raise NotFound(f"There is no priority {priority_id}.")
    name = " ".join((name or "").split())
    if not name:
        raise InvalidInput("A priority needs a name.", field="name")
    if len(name) > NAME_MAX:
        raise InvalidInput(f"Keep it to {NAME_MAX} characters.", field="name")
    taken = db.session.scalar(sa.select(Priority.id).where(Priority.name == name, Priority.id != priority_id))
    if taken is not None:
        raise InvalidInput(f"Priority {taken} is called {name} already.", field="name")
    priority.name = name
    db.session.flush()
    return priority
