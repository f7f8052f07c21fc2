"""Plain snapshots of calls, requests, tasks and people, the only things mail templates see.

Templates never get live database objects: a view copies the documented attributes, so a
template cannot follow a relationship, call a method or read a column nobody documented.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from types import SimpleNamespace


class View(SimpleNamespace):
    """Attributes for templates; `{{ view }}` alone prints its natural label."""

    def __init__(self, _label: str = "", **attributes):
        super().__init__(**attributes)
        object.__setattr__(self, "_label", _label)

    def __str__(self) -> str:
        return self._label


def choice_view(value) -> View | None:
    """A status or kind (an enum or a plain string): `.value` ("open"), `.label` ("Open")."""
    if value is None:
        return None
    raw = getattr(value, "value", value)
    text = str(raw)
    label = text.replace("_", " ").capitalize()
    return View(label, value=text, name=getattr(value, "name", text), label=label)


def priority_view(priority) -> View | None:
    if priority is None:
        return None
    name = getattr(priority, "name", None) or str(priority)
    return View(name, id=getattr(priority, "id", None), name=name)


def person_view(person) -> View | None:
    if person is None:
        return None
    email = getattr(person, "email", "") or ""
    name = getattr(person, "name", None) or ""
    display = getattr(person, "display_name", None) or name or email
    return View(display, display_name=display, name=name, email=email)


def group_view(group) -> View | None:
    if group is None:
        return None
    return View(group.name, name=group.name, email=getattr(group, "email", None))


def call_view(call) -> View:
    return View(
        call.ref,
        # `title` too, so a list of calls, requests and tasks reads alike in templates.
        id=call.id, ref=call.ref, summary=call.summary, title=call.summary,
        description=call.description,
        status=choice_view(call.status), priority=priority_view(call.priority),
        customer=person_view(call.customer), logged_by=person_view(call.logged_by),
        assigned_analyst=person_view(call.assigned_analyst),
        assigned_group=group_view(call.assigned_group), source=call.source,
        logged_at=call.logged_at, first_response_at=call.first_response_at,
        resolved_at=call.resolved_at, closed_at=call.closed_at, updated_at=call.updated_at,
    )


def request_view(request) -> View | None:
    if request is None:
        return None
    return View(
        request.ref,
        id=request.id, ref=request.ref, title=request.title, description=request.description,
        requester=person_view(request.requester), status=choice_view(request.status),
    )


def task_view(task) -> View:
    return View(
        task.ref,
        id=task.id, ref=task.ref, kind=choice_view(task.kind), title=task.title,
        description=task.description, status=choice_view(task.status),
        assigned_analyst=person_view(task.assigned_analyst),
        assigned_group=group_view(task.assigned_group), approver=person_view(task.approver),
        decided_at=task.decided_at, decision_reason=task.decision_reason,
        request=request_view(task.request),
    )


def desk_view(name: str, address: str, url: str = "") -> View:
    return View(name, name=name, address=address, url=url)


def item_view(ref: str, title: str, status, updated_at=None, url: str = "") -> View:
    """One line of a summary reply (a call, request or task)."""
    return View(ref, ref=ref, title=title, status=choice_view(status), updated_at=updated_at,
                url=url)


# -- snapshots: variables stored with an outbox row (JSON) and rendered when it is sent ------

def snapshot(value):
    """Template variables as JSON-able data; `restore` gives back what templates need.

    Views keep their label, datetimes stay datetimes; live domain objects (a Person, a
    Call...) are turned into their views first, anything else unknown is refused.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, datetime):
        return {"_datetime": value.isoformat()}
    if isinstance(value, date):
        return {"_date": value.isoformat()}
    if isinstance(value, Enum):
        return snapshot(value.value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, View):
        fields = {k: snapshot(v) for k, v in vars(value).items() if k != "_label"}
        return {"_label": value._label, **fields}
    if isinstance(value, SimpleNamespace):
        return {str(k): snapshot(v) for k, v in vars(value).items()}
    if isinstance(value, Mapping):
        return {str(k): snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [snapshot(v) for v in value]
    view = _view_of(value)
    if view is None:
        raise TypeError(f"a {type(value).__name__} cannot go into mail template variables; "
                        "pass a view (switchboard.outbox.views) or plain data")
    return snapshot(view)


def restore(value):
    """The inverse of `snapshot`: mappings become views (attribute access, no dict methods
    in the way of names like `items`), datetimes come back. Other values pass through."""
    if isinstance(value, list):
        return [restore(v) for v in value]
    if isinstance(value, dict):
        if value.keys() == {"_datetime"}:
            return datetime.fromisoformat(value["_datetime"])
        if value.keys() == {"_date"}:
            return date.fromisoformat(value["_date"])
        fields = {str(k): restore(v) for k, v in value.items() if k != "_label"}
        return View(str(value.get("_label", "")), **fields)
    return value


def _view_of(obj) -> View | None:
    # Duck typing on the domain's attribute names (CONTEXT.md), so this module needs no models.
    has = lambda *names: all(hasattr(obj, n) for n in names)  # noqa: E731
    if has("ref", "summary", "customer"):
        return call_view(obj)
    if has("ref", "approver", "request"):
        return task_view(obj)
    if has("ref", "requester", "tasks"):
        return request_view(obj)
    if has("name", "members"):
        return group_view(obj)
    if has("email"):
        return person_view(obj)
    return None
