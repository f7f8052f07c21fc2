"""What happened, for whoever needs to know (today: the mail notifications).

Services call `emit` after they have changed a record; handlers run at once,
in the same transaction, so a notification row exists exactly when the change
does. Handlers must not commit. The domain stays unaware of who listens."""

import contextlib
import threading
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


_local = threading.local()


class HeldEvents:
    """Events emitted inside `held()`, waiting for `release()`."""

    def __init__(self) -> None:
        self.waiting: list[tuple[str, dict]] = []

    def release(self) -> None:
        """Runs the handlers of the waiting events, in the order they were emitted."""
        waiting, self.waiting = self.waiting, []
        for event, details in waiting:
            _run(event, details)


@contextlib.contextmanager
def held():
    """Within this block (in this thread) `emit` only notes the event; the caller
    releases them later in the same transaction, for instance once the rows they
    concern have ids (the inbound pipeline's batched writes)."""
    previous = getattr(_local, "held", None)
    _local.held = holder = HeldEvents()
    try:
        yield holder
    finally:
        _local.held = previous


def emit(event: str, **details) -> None:
    holder = getattr(_local, "held", None)
    if holder is not None:
        holder.waiting.append((event, details))
        return
    _run(event, details)


def _run(event: str, details: dict) -> None:
    for handler in list(_handlers.get(event, ())):
        handler(**details)
