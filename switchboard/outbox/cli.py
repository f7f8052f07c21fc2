"""Commands: `outbox send` and `mail servers add|list|remove`.

Names, flags, output lines and exit statuses are a contract for operators' scripts and
cron: keep them stable."""

import signal
import sys
import threading
from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy.exc import SQLAlchemyError

from switchboard.cli import EX_TEMPFAIL, exit_database_unavailable, password_from_stdin
from switchboard.graph import graph_grant_options
from switchboard.oauth.cli import grant_from_options, oauth2_options
from switchboard.db import db
from switchboard.errors import DeskError

# Exit status of `outbox send` when mail was due and no server could be used.
EX_UNREACHABLE = EX_TEMPFAIL  # try again later


def register(app) -> None:
    """Adds `outbox`, and `servers` under the `mail` group (shared with the receiver's
    `mail ingest|poll|accounts`: whichever registers first creates it)."""
    outbox = AppGroup("outbox", help="Outgoing mail: send what is due.")
    outbox.add_command(send)
    app.cli.add_command(outbox)
    mail = app.cli.commands.get("mail")
    if mail is None:
        mail = AppGroup("mail", help="Mail in and out: ingest, poll, process, accounts, servers.")
        app.cli.add_command(mail)
    servers = AppGroup("servers", help="Outgoing SMTP servers, tried in priority order.")
    for command in (add_server, list_servers, remove_server):
        servers.add_command(command)
    mail.add_command(servers)


# --- outbox send ---------------------------------------------------------------------------

@click.command("send")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most N mails (default: all that are due).")
@click.option("--loop", "loop_seconds", type=click.FloatRange(min=0.1),
              help="Keep going: look for due mail every SECONDS until Ctrl-C or SIGTERM.")
@click.option("--batch", type=click.IntRange(1, 5000), default=100, show_default=True,
              help="Mails claimed (and sent over the same connections) at a time.")
@click.option("--lease", "lease_seconds", type=click.IntRange(10, 86400), default=300, show_default=True,
              help="Seconds a claimed mail stays with this sender before another may take it.")
def send(limit, loop_seconds, batch, lease_seconds):
    """Send the mail that is due. Prints `sent N, deferred N, failed N`.

    Exits 75 when mail was due but no outgoing server could be used (none configured,
    or none reachable), or the database could not be reached: the mail stays queued.
    With --loop, prints a line whenever it did something and keeps running through
    server and database outages."""
    if loop_seconds is None:
        try:
            report = _send_once(limit, batch, lease_seconds)
        except SQLAlchemyError as exc:  # what was sent is marked; the rest waits for the next run
            exit_database_unavailable("outbox send", exc)
        click.echo(report.summary())
        for problem in report.problems:
            click.echo(f"outbox send: {problem}", err=True)
        if report.unreachable:
            sys.exit(EX_UNREACHABLE)
        return

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"Sending due mail every {loop_seconds:g} s. Ctrl-C stops.")
    reported: set[str] = set()
    while not stop.is_set():
        try:
            report = _send_once(limit, batch, lease_seconds)
        except Exception as exc:  # the database went away: say so, keep trying
            db.session.rollback()
            click.echo(f"outbox send: {type(exc).__name__}: {str(exc)[:300]}", err=True)
        else:
            if report.claimed:
                click.echo(report.summary())
            for problem in report.problems:
                if problem not in reported:
                    click.echo(f"outbox send: {problem}", err=True)
            reported = set(report.problems)
        stop.wait(loop_seconds)
    click.echo("Sender stopped.")


def _send_once(limit, batch, lease_seconds):
    from switchboard.outbox.sender import Connections, SendReport, send_due

    total = SendReport()
    with Connections() as connections:
        while limit is None or total.claimed < limit:
            size = batch if limit is None else min(batch, limit - total.claimed)
            report = send_due(limit=size, lease_seconds=lease_seconds, connections=connections)
            total.add(report)
            if report.claimed < size or report.unreachable:
                break
    return total


# --- mail servers --------------------------------------------------------------------------

@click.command("add")
@click.option("--name", required=True, help="A name for the server (unique).")
@click.option("--protocol", type=click.Choice(["smtp", "graph"]), default="smtp", show_default=True,
              help="graph: send as a Microsoft 365 mailbox through Microsoft Graph's sendMail (OAuth2 only).")
@click.option("--host", help="Required for SMTP. Graph: default graph.microsoft.com.")
@click.option("--port", type=int, help="Default: 465 for tls, 587 for starttls, 25 for none; 443 for Graph.")
@click.option("--security", type=click.Choice(["starttls", "tls", "none"]),
              help="Default: starttls (SMTP), tls (Graph, the only choice).")
@click.option("--username", help="For AUTH; the password then comes from --password-stdin.")
@click.option("--password-stdin", is_flag=True, help="Read the password from one line of stdin.")
@click.option("--from-address", required=True, help="The desk's address: From line and envelope sender.")
@click.option("--from-name", help="Display name on the From line (default: DESK_NAME).")
@click.option("--priority", type=int, default=10, show_default=True, help="Lower is tried first.")
@click.option("--trusted-ca", type=click.Path(exists=True, dir_okay=False),
              help="PEM file of the CA to trust for this server (instead of the system's).")
@click.option("--timeout", "timeout_seconds", type=click.IntRange(1, 600), default=30, show_default=True)
@oauth2_options
def add_server(name, protocol, host, port, security, username, password_stdin, from_address, from_name,
               priority, trusted_ca, timeout_seconds, oauth2):
    """Add an outgoing SMTP server, or a Microsoft 365 mailbox sending through Microsoft Graph
    (--protocol graph). The password (or OAuth2 client secret) is read from stdin,
    never from the command line."""
    from switchboard.outbox.servers import add_server as add

    password = None
    if protocol == "smtp" and not host:
        raise click.ClickException("An SMTP server needs --host.")
    if protocol == "smtp" and username and not password_stdin and not oauth2["oauth2_provider"]:
        raise click.ClickException("--username needs the password on stdin: add --password-stdin.")
    if password_stdin:
        password = password_from_stdin()
    try:
        if protocol == "graph":
            oauth2 = graph_grant_options(oauth2)
        grant = grant_from_options(oauth2, password_given=password is not None)
        if grant is not None and not username:
            raise click.ClickException("OAuth2 needs --username: the mailbox the desk sends as.")
        server = add(name, host, port=port, security=security, username=username, password=password,
                     from_address=from_address, from_name=from_name, priority=priority,
                     trusted_ca_pem=Path(trusted_ca).read_text() if trusted_ca else None,
                     timeout_seconds=timeout_seconds, oauth_grant=grant, protocol=protocol)
        db.session.commit()
    except DeskError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    click.echo(f"Added outgoing server {server.name}: {_where(server)}")


@click.command("list")
def list_servers():
    """One line per server, in the order they are tried: name, where, from, priority, state
    (tab-separated)."""
    from switchboard.outbox.servers import list_servers as all_servers

    for server in all_servers():
        sender = f"{server.from_name} <{server.from_address}>" if server.from_name else server.from_address
        click.echo("\t".join([server.name, _where(server), sender, str(server.priority), _state(server)]))


@click.command("remove")
@click.argument("name")
def remove_server(name):
    """Delete an outgoing server."""
    from switchboard.outbox.servers import remove_server as remove

    try:
        remove(name)
        db.session.commit()
    except DeskError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    click.echo(f"Removed outgoing server {name}.")


def _state(server) -> str:
    from switchboard.oauth.models import GrantState

    if not server.active:
        return "inactive"
    if server.oauth_grant is not None and server.oauth_grant.state is GrantState.NEEDS_RECONNECTING:
        return "needs-reconnecting"
    return "active"


def _where(server) -> str:
    auth = f" as {server.username}" if server.username else ""
    ca = ", own CA" if server.trusted_ca_pem else ""
    # Only OAuth2 servers say so: password servers' lines read as they always did.
    grant = server.oauth_grant
    oauth = f", OAuth2 {grant.provider.value} {grant.flow.value}" if grant is not None else ""
    kind = "graph " if server.protocol == "graph" else ""  # SMTP servers' lines read as they always did
    return f"{kind}{server.security} {server.host}:{server.port}{auth}{ca}{oauth}"
