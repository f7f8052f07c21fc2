"""Test connection for an incoming account: log in to the mailbox the way the
poller does (receiver.imap / receiver.pop3 / receiver.graph, same TLS checks, the account's
timeout), look at the folder without touching a message, log out, and say
what was found or what went wrong, in the words the poller would record."""

from dataclasses import dataclass

from receiver import graph, imap, pop3
from receiver.poll import PollResult, describe_error
from receiver.signin import credentials_for
from switchboard.inbound.models import AfterProcessing, IncomingAccount, Protocol


@dataclass(frozen=True)
class ConnectionReport:
    ok: bool
    message: str


def check_connection(account: IncomingAccount) -> ConnectionReport:
    """Never raises; nothing in the mailbox or on the account changes."""
    if account.protocol is Protocol.LMTP:
        addresses = ", ".join(a.address for a in account.addresses) or "no address yet"
        return ConnectionReport(True, f"An LMTP account has no mailbox to log in to: the mail server "
                                      f"delivers mail for {addresses} to the receiver.")
    where = f"{account.host}:{account.port}"
    result = PollResult(account.name)
    try:
        result.step = "reading the password"
        credentials = credentials_for(account)
        if account.protocol is Protocol.IMAP:
            found = _imap(account, credentials, result)
        elif account.protocol is Protocol.GRAPH:
            found = graph.describe_folders(account, credentials, result)
        else:
            found = _pop3(account, credentials, result)
    except Exception as exc:  # every failure becomes the admin's message
        return ConnectionReport(False, describe_error(exc, account, result.step))
    return ConnectionReport(True, f"Logged in to {where} as {account.username}. {found}")


def _imap(account, credentials, result) -> str:
    client = imap.connect(account, credentials, result)
    try:
        result.step = f"selecting folder {account.folder!r}"
        # Read-only: not even the \Recent flags change.
        selected = client.select_folder(account.folder, readonly=True)
        count = int(selected.get(b"EXISTS", 0))
        found = f"{account.folder} has {_messages(count)}."
        if account.after_processing is AfterProcessing.MOVE:
            result.step = f"looking for folder {account.processed_folder!r}"
            if client.folder_exists(account.processed_folder):
                found += f" The processed folder {account.processed_folder} exists."
            else:
                found += f" The processed folder {account.processed_folder} will be created on the first poll."
        result.step = "logout"
        client.logout()
    except BaseException:
        try:
            client.shutdown()
        except Exception:
            pass
        raise
    return found


def _pop3(account, credentials, result) -> str:
    pop = pop3.connect(account, credentials, result)
    try:
        result.step = "STAT"
        count, size = pop.stat()
        result.step = "QUIT"
        pop.quit()  # nothing was marked for deletion, so nothing goes
    except BaseException:
        try:
            pop.close()
        except Exception:
            pass
        raise
    return f"The mailbox has {_messages(count)} ({size} bytes)."


def _messages(count: int) -> str:
    return f"{count} message{'' if count == 1 else 's'}"
