"""Domain commands: `flask --app wsgi users ...` and `flask --app wsgi desk ...`.

Output and flags are a contract for operators' scripts: keep them stable."""

import json
import sys
from typing import NoReturn

import click
from flask.cli import AppGroup

from switchboard.db import db, rollback_or_drop
from switchboard.errors import DeskError

users = AppGroup("users", help="People who log in.")
desk = AppGroup("desk", help="The desk as a whole: stats, demo data.")


def register(app) -> None:
    app.cli.add_command(users)
    app.cli.add_command(desk)
    from switchboard.outbox.cli import register as register_outbox  # outbox send, mail servers
    register_outbox(app)
    from switchboard.slm.cli import register as register_slm  # slm sweep
    register_slm(app)
    from switchboard.health import cli as _health_cli  # noqa: F401  (desk health)


def password_from_stdin() -> str:
    """The `--password-stdin` of the mail account and server commands: one line,
    never empty. Never from argv: it would show in `ps` and shell history."""
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.ClickException("--password-stdin: stdin gave no password.")
    return password


EX_TEMPFAIL = 75  # sysexits.h: try again later (MTAs keep the mail; cron's next run retries)


def exit_database_unavailable(command: str, exc: Exception) -> NoReturn:
    """How a mail command (`mail ingest`, `outbox send`) ends when its database cannot be
    reached: one line on stderr, no traceback, exit 75, nothing changed."""
    rollback_or_drop()
    click.echo(f"{command}: the database is not available ({type(exc).__name__}); exit 75", err=True)
    sys.exit(EX_TEMPFAIL)


def _read_password(prompt: bool) -> str:
    # Never from argv: it would show in `ps` and shell history.
    if sys.stdin.isatty() and prompt:
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


@users.command("create-admin")
@click.option("--email", required=True, help="The admin's email address (the login).")
@click.option("--name", default="", help="Display name.")
def create_admin(email, name):
    """Create an admin. The password is read from stdin (or prompted on a terminal)."""
    from switchboard.people.services import create_person

    password = _read_password(prompt=True)
    try:
        person = create_person(email, name, admin=True, customer=False, password=password)
        db.session.commit()
    except DeskError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    click.echo(f"Created admin {person.email}.")


@users.command("ensure-admin")
@click.option("--email", default="admin@switchboard.local", show_default=True)
@click.option("--default-group", "group_name", default="Service Desk", show_default=True,
              help="When the desk has no default group: the group (made if missing) that new calls "
                   "nothing else routes land in.")
def ensure_admin(email, group_name):
    """Create a first admin if there is none, printing its generated password once; give the
    desk a default group if it has none."""
    from switchboard.people.models import Person
    from switchboard.people.services import create_person, generate_password

    if db.session.scalar(db.select(Person.id).where(Person.is_admin, Person.active).limit(1)):
        click.echo("An admin exists already.")
        _ensure_default_group(group_name)
        return
    password = generate_password()
    person = create_person(email, "Administrator", admin=True, customer=False, password=password)
    db.session.commit()
    click.echo("")
    click.echo("  First admin created. Log in with:")
    click.echo(f"    email:    {person.email}")
    click.echo(f"    password: {password}")
    click.echo("  This password is shown once; change it after logging in.")
    click.echo("")
    _ensure_default_group(group_name)


def _ensure_default_group(name: str) -> None:
    # First start (and the first after an upgrade): calls that nothing routes need a group.
    # Silent once the desk has one, so the command's output stays as scripts know it.
    from switchboard.desk.routing import ensure_default_group

    try:
        made = ensure_default_group(name)
        db.session.commit()
    except DeskError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    if made is not None:
        group, gathered, added = made
        click.echo(_default_group_line(group, gathered)
                   + (f" Members added: {', '.join(p.email for p in added)}." if added else ""))


def _default_group_line(group, gathered: int) -> str:
    line = f"Default group for new calls: {group.name}."
    if gathered:
        line += f" {gathered} call{'' if gathered == 1 else 's'} without a group moved into it."
    return line


@users.command("set-password")
@click.option("--email", required=True)
def set_password(email):
    """Set a person's password, read from stdin (or prompted on a terminal)."""
    from switchboard.people.services import check_password_strength, find_person

    person = find_person(email)
    if person is None:
        raise click.ClickException(f"No person {email}.")
    password = _read_password(prompt=True)
    try:
        check_password_strength(password)
    except DeskError as exc:
        raise click.ClickException(exc.message) from None
    person.set_password(password)
    db.session.commit()
    click.echo(f"Password set for {person.email}.")


@desk.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts and monitoring.")
def stats(as_json):
    """Counts of calls, requests, tasks (and mail) by status."""
    from switchboard.stats import desk_stats

    data = desk_stats()
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
        return
    for key, counts in data.items():
        click.echo(f"{key}: " + ", ".join(f"{status} {n}" for status, n in counts.items()))


@desk.command("default-group")
@click.argument("name", required=False)
@click.option("--create", is_flag=True, help="Make the group if there is none by that name.")
def default_group_command(name, create):
    """Print the desk's default group (where calls nothing else routes land), or make NAME
    the default; calls that sit in no group move into it."""
    from switchboard.desk.routing import default_group, make_default
    from switchboard.people.models import Group
    from switchboard.people.services import create_group

    if name is None:
        group = default_group()
        click.echo(group.name if group is not None else "(none)")
        return
    name = " ".join(name.split())
    try:
        group = db.session.scalar(db.select(Group).where(Group.name == name))
        if group is None:
            if not create:
                raise click.ClickException(f"No group named {name!r} (add --create to make it).")
            group = create_group(name)
        gathered = make_default(group)
        db.session.commit()
    except DeskError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    click.echo(_default_group_line(group, gathered))


@desk.command("demo")
def demo():
    """Load a small, realistic demo data set (people, groups, calls, a request)."""
    from switchboard.demo import load_demo

    try:
        summary = load_demo()
        db.session.commit()
    except DeskError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    click.echo(summary)
