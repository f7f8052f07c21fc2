"""Reading an IMAP folder: messages are fetched with BODY.PEEK[] (nothing
is marked read by fetching), stored and committed with their receipts, and
only then moved, flagged \\Seen or deleted, as the account says.

Receipts are keyed "UIDVALIDITY:UID"; when the folder's UIDVALIDITY changes
(the folder was recreated) they are forgotten, and storing a message again is
harmless because the store recognises it by its fingerprint."""

from imapclient import IMAPClient, SocketTimeout
from imapclient.imapclient import DELETED, SEEN

from receiver.poll import (
    PollResult, by_size, chunks, forget_receipts, known_receipts, mark_settled, store_fetched, tls_context,
)
from receiver.signin import Credentials, imap_sign_in
from switchboard.db import db
from switchboard.inbound.models import AfterProcessing, IncomingAccount, Security


def connect(account: IncomingAccount, credentials: Credentials, result: PollResult) -> IMAPClient:
    context = tls_context(account.trusted_ca_pem) if account.security is not Security.NONE else None
    result.step = "connect"
    client = IMAPClient(
        account.host,
        port=account.port,
        ssl=account.security is Security.TLS,
        ssl_context=context,
        timeout=SocketTimeout(connect=account.timeout_seconds, read=account.timeout_seconds),
    )
    try:
        if account.security is Security.STARTTLS:
            result.step = "STARTTLS"
            client.starttls(context)
        result.step = "login"
        imap_sign_in(client, account, credentials)
    except BaseException:
        _close(client)
        raise
    return client


def poll(account: IncomingAccount, credentials: Credentials, result: PollResult) -> None:
    client = connect(account, credentials, result)
    try:
        _poll_folder(client, account, result)
        result.step = "logout"
        client.logout()
    except BaseException:
        _close(client)
        raise


def _poll_folder(client: IMAPClient, account: IncomingAccount, result: PollResult) -> None:
    account_id = account.id
    policy = account.after_processing
    processed_folder = account.processed_folder
    batch_size = account.batch_size
    result.step = f"selecting folder {account.folder!r}"
    selected = client.select_folder(account.folder)
    uidvalidity = int(selected[b"UIDVALIDITY"])
    if account.uidvalidity != uidvalidity:
        if account.uidvalidity is not None:
            forget_receipts(account_id)
        account.uidvalidity = uidvalidity
        db.session.commit()
    if policy is AfterProcessing.MOVE:
        result.step = f"creating folder {processed_folder!r}"
        if not client.folder_exists(processed_folder):
            client.create_folder(processed_folder)
    result.step = "search"
    # Flagged \Deleted but not yet expunged: already dealt with.
    criteria = ["UNSEEN", "NOT", "DELETED"] if policy is AfterProcessing.SEEN else ["NOT", "DELETED"]
    uids = sorted(client.search(criteria))[: account.max_messages_per_session]
    for batch in chunks(uids, batch_size):
        keys = {uid: f"{uidvalidity}:{uid}" for uid in batch}
        known = known_receipts(account_id, keys.values())
        result.resumed += sum(1 for uid in batch if keys[uid] in known)
        wanted = [uid for uid in batch if keys[uid] not in known]
        stored: set[str] = set()
        if wanted:
            result.step = "fetch"
            sizes = {uid: data.get(b"RFC822.SIZE", 0) for uid, data in client.fetch(wanted, [b"RFC822.SIZE"]).items()}
            for part in by_size(wanted, sizes):
                result.step = "fetch"
                fetched = client.fetch(part, [b"BODY.PEEK[]"])
                messages = [
                    (keys[uid], fetched[uid][b"BODY[]"])
                    for uid in part
                    if uid in fetched and fetched[uid].get(b"BODY[]") is not None
                ]
                result.step = "storing"
                stored |= store_fetched(account, messages, "imap", result)
        done = [uid for uid in batch if keys[uid] in known or keys[uid] in stored]
        if done:
            result.step = f"{policy.value} after storing"
            settle(client, policy, processed_folder, done)
            mark_settled(account_id, [keys[uid] for uid in done])
            result.settled += len(done)


def settle(client: IMAPClient, policy: AfterProcessing, processed_folder: str, uids: list[int]) -> None:
    """Tells the mailbox the messages are safely stored: the account's after-processing step."""
    if policy is AfterProcessing.SEEN:
        client.add_flags(uids, [SEEN], silent=True)
    elif policy is AfterProcessing.MOVE:
        if client.has_capability("MOVE"):
            client.move(uids, processed_folder)
        else:
            client.copy(uids, processed_folder)
            client.add_flags(uids, [DELETED], silent=True)
            _expunge(client, uids)
    else:
        client.add_flags(uids, [DELETED], silent=True)
        _expunge(client, uids)


def _expunge(client: IMAPClient, uids: list[int]) -> None:
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)
    else:
        # Without UIDPLUS, EXPUNGE also removes what others flagged \Deleted in this folder.
        client.expunge()


def _close(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except Exception:
        pass
