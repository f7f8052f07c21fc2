"""`flask --app wsgi slm sweep`: one sweep by hand or from cron (the scheduler runs it every
minute); prints its one-line report and exits 0, or 75 when the database cannot be reached."""

import click
import sqlalchemy as sa
from flask.cli import AppGroup

slm = AppGroup("slm", help="Service level management.")


@slm.command("sweep")
def sweep():
    """Fire every escalation level and breach that is due, once, and queue their mail."""
    from switchboard.cli import exit_database_unavailable
    from switchboard.slm.sweep import run_sweep

    try:
        report = run_sweep()
    except sa.exc.OperationalError as exc:
        exit_database_unavailable("slm sweep", exc)
    click.echo(report.summary())


def register(app) -> None:
    app.cli.add_command(slm)
