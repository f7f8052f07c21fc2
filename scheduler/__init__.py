"""Timed jobs (mail polling, the outbox sender, the inbound sweep) in one
APScheduler process: `flask --app wsgi scheduler run`."""

import logging

import click
from flask import current_app
from flask.cli import AppGroup

scheduler_cli = AppGroup("scheduler", help="The timed jobs.")


@scheduler_cli.command("run")
def run_scheduler():
    """Run the jobs in the foreground until Ctrl-C (only one scheduler is active per database)."""
    from scheduler.runner import JOBS, run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(levelname)s %(message)s")
    # APScheduler logs every run at INFO: our jobs log what they did instead.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    click.echo("scheduler: " + ", ".join(f"{job_id} every {s}s" for job_id, _, s in JOBS))
    run(current_app._get_current_object())


def init_scheduler(app) -> None:
    app.cli.add_command(scheduler_cli)
