"""Reading a POP3 mailbox: receipts are keyed by UIDL. A message is RETRieved
only if its UIDL has no receipt, stored and committed, and only then DELEted;
the deletions take effect at QUIT, after which the receipts are settled.
A run that ends without QUIT deletes nothing; the next one deletes what is
already stored without fetching it again. Accounts set to keep their mail
("seen") leave it on the server and remember it by its receipt."""

import poplib

from receiver.poll import PollResult, by_size, chunks, known_receipts, mark_settled, store_fetched, tls_context
from receiver.signin import Credentials, pop3_sign_in
from switchboard.inbound.models import AfterProcessing, IncomingAccount, Security

# poplib refuses lines over 2048 bytes; real mail breaks RFC 5322's 998 often
# enough (unwrapped HTML) that such a message would block the mailbox.
poplib._MAXLINE = max(poplib._MAXLINE, 1024 * 1024)


def connect(account: IncomingAccount, credentials: Credentials, result: PollResult) -> poplib.POP3:
    context = tls_context(account.trusted_ca_pem) if account.security is not Security.NONE else None
    result.step = "connect"
    if account.security is Security.TLS:
        pop = poplib.POP3_SSL(account.host, account.port, timeout=account.timeout_seconds, context=context)
    else:
        pop = poplib.POP3(account.host, account.port, timeout=account.timeout_seconds)
    try:
        if account.security is Security.STARTTLS:
            result.step = "STLS"
            pop.stls(context)
        result.step = "login"
        pop3_sign_in(pop, account, credentials)
    except BaseException:
        _close(pop)
        raise
    return pop


def poll(account: IncomingAccount, credentials: Credentials, result: PollResult) -> None:
    pop = connect(account, credentials, result)
    try:
        deleted = _poll_mailbox(pop, account, result)
        result.step = "QUIT"
        pop.quit()  # the server deletes the DELEted messages now, or not at all
    except BaseException:
        _close(pop)
        raise
    if deleted:
        mark_settled(account.id, deleted)
        result.settled += len(deleted)


def _poll_mailbox(pop: poplib.POP3, account: IncomingAccount, result: PollResult) -> list[str]:
    account_id = account.id
    keep = account.after_processing is not AfterProcessing.DELETE
    batch_size = account.batch_size
    result.step = "UIDL"
    listing = []
    for line in pop.uidl()[1]:
        number, _, uid = line.decode("ascii", "replace").partition(" ")
        listing.append((int(number), uid.strip()))
    listing = listing[: account.max_messages_per_session]
    result.step = "LIST"
    sizes = {}
    for line in pop.list()[1]:
        number, _, size = line.decode("ascii", "replace").partition(" ")
        sizes[int(number)] = int(size.split()[0]) if size.strip() else 0
    deleted: list[str] = []
    for batch in chunks(listing, batch_size):
        known = known_receipts(account_id, [uid for _, uid in batch])
        if not keep:
            result.resumed += sum(1 for _, uid in batch if uid in known)
        wanted = [(number, uid) for number, uid in batch if uid not in known]
        stored: set[str] = set()
        for part in by_size(wanted, {entry: sizes.get(entry[0], 0) for entry in wanted}):
            messages = []
            for number, uid in part:
                result.step = "RETR"
                lines = pop.retr(number)[1]
                messages.append((uid, b"\r\n".join(lines) + b"\r\n"))
            result.step = "storing"
            stored |= store_fetched(account, messages, "pop3", result)
        if keep:
            # Nothing is done in the mailbox: remembered, not "settled" there.
            mark_settled(account_id, stored)
            result.kept += len(stored)
            continue
        done = [(number, uid) for number, uid in batch if uid in known or uid in stored]
        result.step = "DELE"
        settle(pop, [number for number, _ in done])
        deleted.extend(uid for _, uid in done)
    return deleted


def settle(pop: poplib.POP3, numbers: list[int]) -> None:
    """Marks stored messages for deletion (effective at QUIT)."""
    for number in numbers:
        pop.dele(number)


def _close(pop: poplib.POP3) -> None:
    # Closing without QUIT: the server keeps every message (RFC 1939 section 6).
    try:
        pop.close()
    except Exception:
        pass
