"""Commands: `receiver run` and `mail ingest|poll|process|accounts ...`.

Names, flags, output lines and exit statuses are a contract for operators'
scripts, cron and MTAs: keep them stable."""

import itertools
import signal
import sys
import threading
from collections import Counter
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from switchboard.cli import exit_database_unavailable, password_from_stdin
from switchboard.graph import graph_grant_options
from switchboard.oauth.cli import grant_from_options, oauth2_options
from switchboard.db import db
from switchboard.errors import DeskError

receiver_group = AppGroup("receiver", help="The LMTP server the MTA delivers mail to.")
mail = AppGroup("mail", help="Incoming mail: ingest, poll, process, accounts.")
accounts = AppGroup("accounts", help="Incoming accounts: mailboxes to poll and LMTP addresses.")
mail.add_command(accounts)


def register(app) -> None:
    app.cli.add_command(receiver_group)
    # Outgoing mail may own a `mail` group too (`mail servers`): share it.
    existing = app.cli.commands.get("mail")
    if existing is None or existing is mail:
        app.cli.add_command(mail)
    else:
        for name, command in mail.commands.items():
            existing.add_command(command, name)


def _outcome_counts(results) -> str:
    return _outcome_line(Counter(r.status for r in results))


def _outcome_line(counts: Counter) -> str:
    if not counts:
        return "nothing to act on"
    return f"acted on {sum(counts.values())}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


# --- receiver run -------------------------------------------------------------

@receiver_group.command("run")
def run_receiver():
    """Serve LMTP (LMTP_HOST:LMTP_PORT) and act on stored mail, until Ctrl-C or SIGTERM."""
    from receiver import process_batch_size
    from receiver.lmtp import LMTPServer
    from receiver.storage import follow_storage
    from receiver.worker import ProcessingWorker, WriteGate

    app = current_app._get_current_object()
    # Before forking, so the acting processes too reopen a replaced SQLite file (and never recreate it empty).
    follow_storage(db.engine)
    gate = WriteGate.for_app(app)
    worker = ProcessingWorker(app, batch=process_batch_size(app), sweep_seconds=app.config["RECEIVER_SWEEP_SECONDS"],
                              gate=gate, processes=app.config["RECEIVER_PROCESSES"])
    server = LMTPServer(app, on_stored=worker.submit, gate=gate)
    # Workers first: forked processes must be made before this process has other threads.
    worker.start()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
    except OSError as exc:
        worker.stop()
        raise click.ClickException(f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}") from None
    click.echo(f"Receiving mail over LMTP on {server.host}:{server.port} "
               f"(messages up to {server.max_message_bytes} bytes). Ctrl-C stops.")
    try:
        while not stop.wait(1):
            pass
    finally:
        server.stop()
        worker.stop()
    click.echo("Receiver stopped.")


# --- mail ingest --------------------------------------------------------------

@mail.command("ingest")
@click.argument("files", nargs=-1, required=True)
@click.option("--account", "account_name", help="The incoming account the mail arrived for (by name).")
@click.option("--recipient", help="The address the mail was delivered to; picks its account.")
@click.option("--sender", help="The envelope sender (the MTA's $sender), if known.")
def ingest(files, account_name, recipient, sender):
    """Store and act on messages from FILEs, or one message from stdin ("-").

    A FILE that is an mbox (its first line a `From ` line) holds several messages: each is
    ingested on its own, as `<file>#<n>`, and a last line says how many there were.
    Prints `<file>: <status>: <outcome>` per message. Exits 75 (EX_TEMPFAIL)
    when a message could not be stored, so an MTA keeps it and retries;
    66 for a file that cannot be read; 67 for an unknown --recipient."""
    from receiver import pipe
    from switchboard.inbound.accounts import find_account
    from switchboard.inbound.store import account_for_recipient

    try:
        account_id = None
        if account_name:
            account = find_account(account_name)
            if account is None:
                click.echo(f"mail ingest: no incoming account named {account_name!r} "
                           "(exit 75: the MTA keeps the mail)", err=True)
                sys.exit(pipe.EX_TEMPFAIL)
            account_id = account.id
        elif recipient:
            account = account_for_recipient(recipient)
            if account is None:
                click.echo(f"mail ingest: no active incoming account receives for {recipient}", err=True)
                sys.exit(pipe.EX_NOUSER)
            account_id = account.id
    except DeskError as exc:
        click.echo(f"mail ingest: {exc.message}", err=True)
        sys.exit(pipe.EX_USAGE)
    except Exception as exc:
        exit_database_unavailable("mail ingest", exc)

    status = pipe.EX_OK
    limit = current_app.config["LMTP_MAX_MESSAGE_BYTES"]
    from switchboard.inbound.budget import limit_memory

    if not current_app.testing:  # a test runner's own process must keep its address space
        limit_memory()  # this process only takes mail in: one costly message fails, not the host

    def one(label: str, raw: bytes | int) -> int:
        """Ingest one message (its size when it was too large to read) and say how it went."""
        if isinstance(raw, int) or len(raw) > limit:
            # EX_DATAERR: an MTA's pipe transport bounces it; retrying could never succeed.
            click.echo(f"{label}: refused: larger than LMTP_MAX_MESSAGE_BYTES ({limit} bytes); "
                       "nothing stored (exit 65)", err=True)
            return pipe.EX_DATAERR
        done = pipe.ingest(raw, account_id=account_id, sender=sender, recipients=[recipient] if recipient else [])
        if not done.stored:
            click.echo(f"{label}: not stored: {done.outcome} (exit 75: try again later)", err=True)
            return pipe.EX_TEMPFAIL
        click.echo(f"{label}: {done.status}: {done.outcome}")
        return pipe.EX_OK

    def worst(current: int, new: int) -> int:
        return current if current == pipe.EX_TEMPFAIL or new == pipe.EX_OK else new

    for name in files:
        label = "<stdin>" if name == "-" else name
        try:
            # At most one byte over the limit is read: enough to know, never the whole input.
            # Stdin is one message, as an MTA's pipe transport hands it over (with or without
            # its From line); a file may be an mbox, read one message at a time.
            if name == "-":
                raw = sys.stdin.buffer.read(limit + 1)
            else:
                with open(name, "rb") as source:
                    if pipe.starts_like_mbox(source.read(8)):
                        source.seek(0)
                        messages = pipe.mbox_messages(source, limit)
                        first, second = next(messages, None), next(messages, None)
                        if second is not None:
                            status = worst(status, _ingest_mbox(
                                label, itertools.chain((first, second), messages), one, worst))
                            continue
                    # One message (after its From line or not): stored as the file holds it.
                    source.seek(0)
                    raw = source.read(limit + 1)
        except OSError as exc:
            click.echo(f"{label}: not read: {exc.strerror or exc}", err=True)
            status = status if status == pipe.EX_TEMPFAIL else pipe.EX_NOINPUT
            continue
        status = worst(status, one(label, raw))
    sys.exit(status)


def _ingest_mbox(label: str, messages, one, worst) -> int:
    """Each message of an mbox file, as `<file>#<n>`, then a line saying how many there were."""
    status, count = 0, 0
    for count, raw in enumerate(messages, start=1):
        status = worst(status, one(f"{label}#{count}", raw))
    click.echo(f"{label}: an mbox file of {count} messages: each ingested on its own (above, as {label}#N)")
    return status


# --- mail poll / process ----------------------------------------------------------

@mail.command("poll")
@click.option("--account", "account_name", help="Poll only this account (by name).")
def poll(account_name):
    """Poll every active IMAP/POP3 account (or one) once, acting on new mail as it is stored.

    One line per account: `<name>: ok: ...` or `<name>: FAILED: <why>`.
    Exits 1 when any account failed."""
    from receiver.poll import poll_accounts
    from receiver.worker import ProcessingWorker, WriteGate

    app = current_app._get_current_object()
    workers = None
    if app.config["RECEIVER_PROCESSES"]:
        # Acting processes (forked now, before this process has other threads) act on each
        # batch as soon as it is committed, while the poll fetches the next.
        gate = WriteGate.for_app(app)
        workers = ProcessingWorker(app, batch=50, sweep_seconds=3600, gate=gate,
                                   processes=app.config["RECEIVER_PROCESSES"])
        workers.start()
    try:
        results = poll_accounts(account_name, gate=workers and workers.gate, on_stored=workers and workers.submit)
    except Exception as exc:  # the database itself: nothing was polled
        db.session.rollback()
        if workers is not None:
            workers.stop()
        click.echo(f"mail poll: FAILED: the database is not available ({type(exc).__name__}: {str(exc)[:200]})",
                   err=True)
        sys.exit(1)
    if account_name and not results:
        raise click.ClickException(f"No incoming account named {account_name!r}.")
    if not results:
        click.echo("No active IMAP or POP3 accounts to poll.")
    failed = []
    for result in results:
        if result.ok:
            click.echo(f"{result.account}: ok: {result.summary()}")
        else:
            failed.append(result)
            click.echo(f"{result.account}: FAILED: {result.error}")
    try:
        click.echo(_act_on_new_mail(workers))
    except Exception as exc:
        db.session.rollback()
        click.echo(f"acting on new mail failed: {type(exc).__name__}: {str(exc)[:300]}", err=True)
        sys.exit(1)
    if failed:
        names = ", ".join(r.account for r in failed)
        click.echo(f"mail poll: {len(failed)} account(s) failed: {names}", err=True)
        sys.exit(1)


def _act_on_new_mail(workers) -> str:
    """`acted on N: ...` once everything new is acted on (by the workers, when there are)."""
    from switchboard.inbound.process import process_pending

    if workers is None:
        return _outcome_counts(process_pending())
    outcomes, failures = workers.finish()
    if failures:
        raise RuntimeError(failures[-1])
    return _outcome_line(outcomes)


@mail.command("process")
@click.option("--reprocess-failed", is_flag=True, help="Also try again the messages that failed.")
def process(reprocess_failed):
    """Act on stored mail still new (and, with --reprocess-failed, the failed)."""
    import sqlalchemy as sa

    from switchboard.inbound.models import InboundMessage, InboundStatus
    from switchboard.inbound.process import process_batch, process_pending

    results = []
    if reprocess_failed:
        # The ids first: a message failing again must not be picked up forever.
        failed = list(db.session.scalars(
            sa.select(InboundMessage.id).where(InboundMessage.status == InboundStatus.FAILED).order_by(InboundMessage.id)
        ))
        for start in range(0, len(failed), 50):
            results.extend(process_batch(failed[start:start + 50], limit=50, reprocess=True))
            db.session.commit()
    results.extend(process_pending())
    click.echo(_outcome_counts(results))


# --- mail accounts ------------------------------------------------------------------

@accounts.command("add")
@click.option("--name", required=True, help="A name for the account (unique).")
@click.option("--protocol", required=True, type=click.Choice(["lmtp", "imap", "pop3", "graph"]),
              help="graph: a Microsoft 365 mailbox read through Microsoft Graph (OAuth2 only).")
@click.option("--address", "addresses", multiple=True,
              help="An address (or @domain catch-all) mail is delivered to; repeatable.")
@click.option("--host", help="The mail server. Graph: default graph.microsoft.com.")
@click.option("--port", type=int, help="Default: 993/143 for IMAP, 995/110 for POP3, 443 for Graph.")
@click.option("--security", type=click.Choice(["tls", "starttls", "none"]), default="tls", show_default=True)
@click.option("--username", help="The mailbox user. Graph: the mailbox's user principal name or user id.")
@click.option("--password-stdin", is_flag=True, help="Read the mailbox password from one line of stdin.")
@click.option("--folder", default="INBOX", show_default=True,
              help="IMAP or Graph folder to read (Graph: a path such as Inbox/Desk).")
@click.option("--after", "after_processing", type=click.Choice(["move", "seen", "delete"]),
              help="What to do with a message once stored. Default: move (IMAP), delete (POP3).")
@click.option("--processed-folder", default="Processed", show_default=True, help="Where --after move puts mail.")
@click.option("--trusted-ca", type=click.Path(exists=True, dir_okay=False),
              help="PEM file of the CA to trust for this server (a self-signed server).")
@click.option("--no-new-calls", is_flag=True, help="Mail here may update calls but never log new ones.")
@click.option("--reject-unknown-senders", is_flag=True, help="Reject mail from addresses the desk does not know.")
@click.option("--default-group", help="Group new calls from this account go to.")
@click.option("--default-priority", type=int, help="Priority (1-4) of new calls from this account.")
@click.option("--trusted-submission", is_flag=True,
              help="Every mail reaching this account passed authenticated submission, so its From line "
                   "is proof of the sender (closes, approvals... by mail). Off by default.")
@click.option("--interval", "poll_interval_seconds", type=int,
              help="Seconds between polls of this mailbox by the scheduler (10-86400). Default: 60.")
@click.option("--timeout", "timeout_seconds", type=int,
              help="Seconds to wait for the mail server to answer (1-600). Default: 30.")
@oauth2_options
def add_account(name, protocol, addresses, host, port, security, username, password_stdin, folder,
                after_processing, processed_folder, trusted_ca, no_new_calls, reject_unknown_senders,
                default_group, default_priority, trusted_submission, poll_interval_seconds, timeout_seconds,
                oauth2):
    """Add an incoming account. The password (or OAuth2 client secret) is read from stdin, never
    from the command line."""
    from switchboard.inbound.accounts import create_account

    password = None
    if password_stdin:
        password = password_from_stdin()
    settings = dict(
        addresses=addresses, host=host, port=port, username=username, password=password,
        allow_new_calls=not no_new_calls, unknown_senders="reject" if reject_unknown_senders else "create",
        default_group=default_group, default_priority=default_priority, trusted_submission=trusted_submission,
    )
    if protocol != "lmtp":
        settings.update(security=security, folder=folder, processed_folder=processed_folder,
                        after_processing=after_processing, poll_interval_seconds=poll_interval_seconds,
                        timeout_seconds=timeout_seconds)
        if trusted_ca:
            settings["trusted_ca_pem"] = Path(trusted_ca).read_text()
    elif host or username or password or poll_interval_seconds or timeout_seconds:
        raise click.ClickException("An LMTP account has no mailbox: give only --address (and the call settings).")
    try:
        if protocol == "graph":
            oauth2 = graph_grant_options(oauth2)
        grant = grant_from_options(oauth2, password_given=password is not None)
        if grant is not None:
            settings["oauth_grant"] = grant
        account = create_account(name, protocol, **settings)
        db.session.commit()
    except DeskError as exc:
        db.session.rollback()
        hint = " (use --password-stdin)" if getattr(exc, "field", None) == "password" else ""
        raise click.ClickException(exc.message + hint) from None
    click.echo(f"Added {account.protocol.value} account {account.name}: {_where(account)}")


@accounts.command("edit")
@click.argument("name")
@click.option("--interval", "poll_interval_seconds", type=int,
              help="Seconds between polls of this mailbox by the scheduler (10-86400).")
@click.option("--timeout", "timeout_seconds", type=int,
              help="Seconds to wait for the mail server to answer (1-600).")
def edit_account(name, poll_interval_seconds, timeout_seconds):
    """Change an account's polling settings; the options not given stay as they are."""
    from switchboard.inbound.accounts import get_account, update_account

    changes = {key: value for key, value in (("poll_interval_seconds", poll_interval_seconds),
                                             ("timeout_seconds", timeout_seconds)) if value is not None}
    if not changes:
        raise click.ClickException("Nothing to change: give --interval and/or --timeout.")
    try:
        account = get_account(name)
        if account.protocol.value == "lmtp":
            raise click.ClickException(f"{account.name} is an LMTP account: the MTA delivers its mail, "
                                       "nothing is polled.")
        update_account(account, **changes)
        db.session.commit()
    except DeskError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    click.echo(f"Account {account.name}: polled every {account.poll_interval_seconds} s, "
               f"server timeout {account.timeout_seconds} s.")


@accounts.command("list")
def list_accounts():
    """One line per account: name, protocol, state, where, last error (tab-separated)."""
    from switchboard.inbound.accounts import account_state, list_accounts as all_accounts

    for account in all_accounts():
        last = "-"
        if account.last_error:
            when = account.last_error_at.strftime("%Y-%m-%d %H:%M UTC") if account.last_error_at else ""
            last = f"{when} {' '.join(account.last_error.split())}".strip()
        click.echo("\t".join([account.name, account.protocol.value, account_state(account), _where(account), last]))


@accounts.command("remove")
@click.argument("name")
@click.option("--delete", "delete", is_flag=True,
              help="Delete it instead of deactivating it (its messages stay, without their account).")
def remove_account(name, delete):
    """Deactivate an account (it is no longer polled, its LMTP addresses are refused), or delete it."""
    from switchboard.inbound.accounts import deactivate_account, delete_account, get_account

    try:
        account = get_account(name)
        if delete:
            delete_account(account)
        else:
            deactivate_account(account)
        db.session.commit()
    except DeskError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    click.echo(f"{'Deleted' if delete else 'Deactivated'} account {name}.")


def _where(account) -> str:
    from switchboard.inbound.models import AfterProcessing, Protocol

    if account.protocol is Protocol.LMTP:
        return ", ".join(a.address for a in account.addresses) + _trust(account)
    text = f"{account.security.value} {account.username} at {account.host}:{account.port}"
    if account.protocol in (Protocol.IMAP, Protocol.GRAPH):
        text += f" folder {account.folder}"
    if account.after_processing is AfterProcessing.MOVE:
        text += f", then move to {account.processed_folder}"
    elif account.after_processing is AfterProcessing.SEEN:
        text += ", then mark seen" if account.protocol is not Protocol.POP3 else ", then keep on the server"
    else:
        text += ", then delete"
    if account.addresses:
        text += " (" + ", ".join(a.address for a in account.addresses) + ")"
    if account.oauth_grant is not None:
        # Only OAuth2 accounts say so: password accounts' lines read as they always did.
        text += f"; OAuth2 {account.oauth_grant.provider.value} {account.oauth_grant.flow.value}"
    return text + _trust(account)


def _trust(account) -> str:
    # Only trusted accounts say so: the lines of all others read as they always did.
    return "; trusted submission" if account.trusted_submission else ""
