"""Timed jobs (mail polling, the outbox sender, the SLM sweep) in one APScheduler process."""


def init_scheduler(app) -> None:
    """Registers the scheduler's commands (none yet: later issues add them)."""
