"""What happened, for whoever needs to know (today: the mail notifications).

Services call `emit` after they have changed a record; handlers run at once,
in the same transaction, so a notification row exists exactly when the change
does. Handlers must not commit. The domain stays unaware of who listens."""

from collections import defaultdict
from collections.abc import Callable

# Every event a service emits, with the keyword arguments it passes.
EVENTS = {
    "call_logged": "call, actor",
    "call_updated": "call, actor, entry, via ('portal' or 'email')",
    "call_forwarded": "call, actor, entry, notify (True/False/None = use the setting)",
    "call_resolved": "call, actor, entry",
    "call_closed": "call, actor, entry",
    "call_reopened": "call, actor, entry",
    "task_started": "task, actor (an approval task now awaits its approver's decision)",
    "task_forwarded": "task, actor, entry, notify",
    "task_decided": "task, actor, entry",
}

_handlers: dict[str, list[Callable]] = defaultdict(list)


def subscribe(event: str, handler: Callable) -> None:
    if event not in EVENTS:
        raise KeyError(f"unknown event {event}")
    if handler not in _handlers[event]:
        _handlers[event].append(handler)


def emit(event: str, **details) -> None:
    for handler in list(_handlers.get(event, ())):
        handler(**details)
