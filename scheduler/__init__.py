"""Timed jobs (mail polling, the outbox sender, the inbound sweep,
housekeeping) in one APScheduler process: `flask --app wsgi scheduler run`."""

import logging
import os

import click
from flask import current_app
from flask.cli import AppGroup

scheduler_cli = AppGroup("scheduler", help="The timed jobs.")

# Settings read from the environment unless the app config sets them (tests do).
DEFAULTS = {
    # Accounts polled at once: a hanging server holds one thread until its timeout.
    "SCHEDULER_POLL_THREADS": (4, int),
    # `job=seconds,...` overriding a job's interval (scheduler.runner.JOBS).
    "SCHEDULER_INTERVALS": ("", str),
    # How often a standby scheduler tries to become the active one.
    "SCHEDULER_STANDBY_SECONDS": (10.0, float),
}


@scheduler_cli.command("run")
def run_scheduler():
    """Run the jobs in the foreground until Ctrl-C (only one scheduler is active per database)."""
    from scheduler.runner import intervals, run

    app = current_app._get_current_object()
    try:
        every = intervals(app)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(levelname)s %(message)s")
    # APScheduler logs every run at INFO: our jobs log what they did instead.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    click.echo("scheduler: " + ", ".join(f"{job_id} every {s}s" for job_id, s in every.items()))
    run(app, standby_retry=app.config["SCHEDULER_STANDBY_SECONDS"])


def init_scheduler(app) -> None:
    for name, (default, kind) in DEFAULTS.items():
        if name not in app.config:
            value = os.environ.get(name)
            app.config[name] = kind(value) if value not in (None, "") else default
    app.cli.add_command(scheduler_cli)
