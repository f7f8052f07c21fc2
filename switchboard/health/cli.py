"""`flask --app wsgi desk health [--json]`: for monitors. Output and exit
statuses are a contract (the README lists them)."""

import json
import sys

import click

from switchboard.cli import desk, exit_database_unavailable


@desk.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for monitors (a stable shape).")
def health(as_json):
    """Scheduler jobs, polled accounts and the outbox. Exits 1 when a job has not run for
    three of its intervals, 2 when an account has failed for an hour, 3 for both; 75 when
    the database cannot be reached."""
    from switchboard.health.report import desk_health, exit_status

    try:
        report = desk_health()
    except Exception as exc:
        exit_database_unavailable("desk health", exc)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
    else:
        for line in text_lines(report):
            click.echo(line)
    sys.exit(exit_status(report))


def text_lines(report: dict) -> list[str]:
    lines = []
    for job in report["jobs"]:
        state = "STALE" if job["stale"] else (job["outcome"] or "never run")
        ran = (f"last started {job['started_at']}, took {job['duration_seconds']:.3f} s"
               if job["started_at"] else "never started")
        line = f"job {job['job']} (every {job['interval_seconds']} s): {state}; {ran}"
        if job["outcome"] == "failed" and job["error"]:
            line += f"; error: {' '.join(job['error'].split())[:300]}"
        lines.append(line)
    for account in report["accounts"]:
        state = "FAILING" if account["alarm"] else account["state"]
        line = (f"account {account['account']} ({account['protocol']}, every {account['interval_seconds']} s): "
                f"{state}; last poll {account['last_poll_at'] or 'never'}")
        if account["failing_since"]:
            line += f"; failing since {account['failing_since']}: {' '.join((account['last_error'] or '').split())[:300]}"
        lines.append(line)
    outbox = report["outbox"]
    if outbox["oldest_due_id"] is None:
        lines.append("outbox: nothing due")
    else:
        lines.append(f"outbox: {outbox['due']} due, the oldest #{outbox['oldest_due_id']} "
                     f"due since {outbox['oldest_due_at']}")
    lines.extend(f"PROBLEM: {problem}" for problem in report["problems"])
    lines.append("health: ok" if report["ok"] else "health: problems found")
    return lines
