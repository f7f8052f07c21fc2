"""Who may do what: the one place every action's rule lives.

Services call `require(person, action, record)` before changing anything; the
portal calls `allowed(...)` to decide which buttons to show. Both read the
same table, so a button is never shown for an action that would be refused."""

from switchboard.errors import PermissionDenied


def _staff(person, _record) -> bool:
    return person.is_staff


def _own_call_or_staff(person, call) -> bool:
    return person.is_staff or call.customer_id == person.id


def _own_request_or_staff(person, request) -> bool:
    return person.is_staff or request.requester_id == person.id


def _task_visible(person, task) -> bool:
    return person.is_staff or task.approver_id == person.id or task.request.requester_id == person.id


def _approver(person, task) -> bool:
    # Only the named approver decides, analysts and admins included: an
    # approval is a person's word, not a role's.
    return task.approver_id is not None and task.approver_id == person.id


def _staff_or_approver(person, task) -> bool:
    return person.is_staff or _approver(person, task)


RULES = {
    "view_call": _own_call_or_staff,
    "update_call": _own_call_or_staff,
    "close_call": _own_call_or_staff,
    "reopen_call": _own_call_or_staff,
    "forward_call": _staff,
    "resolve_call": _staff,
    "hold_call": _staff,
    "change_call": _staff,
    "log_call_for_others": _staff,
    "view_request": _own_request_or_staff,
    "create_request": _staff,
    "update_request": _own_request_or_staff,
    "view_task": _task_visible,
    "update_task": _staff_or_approver,
    "forward_task": _staff,
    "complete_task": _staff,
    "add_task": _staff,
    "decide_task": _approver,
    "admin": lambda person, _record: person.is_admin,
}

MESSAGES = {
    "view_call": "You can only see your own calls.",
    "update_call": "You can only update your own calls.",
    "close_call": "You can only close your own calls.",
    "reopen_call": "You can only reopen your own calls.",
    "decide_task": "Only the task's approver can approve or reject it.",
    "admin": "Only an admin can do that.",
}


def allowed(person, action: str, record=None) -> bool:
    if person is None or not getattr(person, "active", False):
        return False
    return RULES[action](person, record)


def require(person, action: str, record=None) -> None:
    if not allowed(person, action, record):
        raise PermissionDenied(MESSAGES.get(action, "Only an analyst can do that."))
