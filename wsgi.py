"""The entry point: `flask --app wsgi ...` and `gunicorn 'wsgi:create_app()'`.

Composes the domain with its three front doors: the portal (web), the
receiver (mail in) and the scheduler (timed jobs)."""

from flask import Flask


def create_app(config: dict | None = None) -> Flask:
    from portal import init_portal
    from receiver import init_receiver
    from scheduler import init_scheduler
    from switchboard import init_domain

    app = Flask("switchboard", instance_relative_config=True, root_path=_root())
    init_domain(app, config)
    init_portal(app)
    init_receiver(app)
    init_scheduler(app)
    return app


def _root() -> str:
    import os

    return os.path.dirname(os.path.abspath(__file__))
