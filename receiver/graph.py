"""Reading a Microsoft 365 mailbox folder through Microsoft Graph, in the same order as IMAP:
a delta query says what is new in the folder since the last poll, each new message's MIME
($value) is fetched, stored and committed with its receipt (keyed by Graph's message id),
and only then moved to the processed folder, marked read or deleted, as the account says.

The delta link is kept on the account only once everything before it is stored (and then
settled): a poll killed anywhere starts again from the last kept link, finds the receipts
of what it stored and only settles those. A message that could not be stored (or is larger
than LMTP_MAX_MESSAGE_BYTES) keeps the link where it was, so the next poll sees it again."""

from __future__ import annotations

from urllib.parse import quote

import sqlalchemy as sa
from flask import current_app

from receiver.poll import FETCH_BYTES, PollResult, chunks, mark_settled, store_fetched
from receiver.signin import Credentials
from switchboard.db import db
from switchboard.graph import GraphClient, GraphError, TooLarge
from switchboard.inbound.models import AfterProcessing, IncomingAccount, MailboxReceipt

# Graph's well-known folder names ("mailFolder resource type"), usable in place of an id.
WELL_KNOWN = {"archive", "clutter", "conflicts", "conversationhistory", "deleteditems", "drafts", "inbox",
              "junkemail", "localfailures", "msgfolderroot", "outbox", "recoverableitemsdeletions",
              "scheduled", "searchfolders", "sentitems", "serverfailures", "syncissues"}
# A delta link Graph no longer knows: start the folder again (the receipts keep it harmless).
RESYNC_CODES = {"syncStateNotFound", "syncStateInvalid", "resyncRequired", "ErrorInvalidSyncStateData",
                "SyncStateNotFound", "SyncStateInvalid"}


def poll(account: IncomingAccount, credentials: Credentials, result: PollResult) -> None:
    result.step = "connect"
    with GraphClient(host=account.host, port=account.port, grant_id=credentials.grant_id,
                     mailbox=account.username or "", ca_pem=account.trusted_ca_pem,
                     timeout=account.timeout_seconds) as client:
        _Folder(client, account, result).poll()


def describe_folders(account: IncomingAccount, credentials: Credentials, result: PollResult) -> str:
    """For the admin's "test connection": signs in and finds the folders; reads and changes nothing."""
    result.step = "connect"
    with GraphClient(host=account.host, port=account.port, grant_id=credentials.grant_id,
                     mailbox=account.username or "", ca_pem=account.trusted_ca_pem,
                     timeout=account.timeout_seconds) as client:
        folders = _Folder(client, account, result)
        result.step = f"finding folder {account.folder!r}"
        folders.folder_id(account.folder, create=False)
        found = f"The folder {account.folder} exists."
        if account.after_processing is AfterProcessing.MOVE:
            result.step = f"finding folder {account.processed_folder!r}"
            try:
                folders.folder_id(account.processed_folder, create=False)
                found += f" The processed folder {account.processed_folder} exists."
            except GraphError as exc:
                if exc.status != 404:
                    raise
                found += f" The processed folder {account.processed_folder} will be created on the first poll."
    return found


class _Folder:
    def __init__(self, client: GraphClient, account: IncomingAccount, result: PollResult):
        self.client, self.result = client, result
        self.account_id = account.id
        self.account = account
        self.policy = account.after_processing
        self.page_size = account.batch_size
        self.limit = current_app.config["LMTP_MAX_MESSAGE_BYTES"]
        self.clean = True  # nothing left behind so far this round: the link may move on

    def poll(self) -> None:
        account, result = self.account, self.result
        result.step = f"finding folder {account.folder!r}"
        folder = self.folder_id(account.folder, create=False)
        self.destination = None
        if self.policy is AfterProcessing.MOVE:
            result.step = f"finding folder {account.processed_folder!r}"
            self.destination = self.folder_id(account.processed_folder, create=True)
        start = self.client.url(f"/mailFolders/{quote(folder, safe='')}/messages/delta?$select=isRead,subject")
        link = account.graph_delta_link or start
        restarted, read = False, 0
        while True:
            result.step = "delta query"
            try:
                page = self.client.json("GET", link,
                                        headers={"Prefer": f"odata.maxpagesize={self.page_size}"})
            except GraphError as exc:
                if link != start and not restarted and (exc.status == 410 or exc.code in RESYNC_CODES):
                    restarted, link = True, start
                    self.keep_link(None)
                    continue
                raise
            entries = [e for e in page.get("value") or [] if isinstance(e, dict) and isinstance(e.get("id"), str)
                       and "@removed" not in e]  # removed: moved or deleted, by us or in Outlook
            self.take(entries)
            read += len(entries)
            # Checked before they are kept: a link carries the token, only ever to this server.
            next_link, delta_link = (self.client.url(link) if isinstance(link, str) else None
                                     for link in (page.get("@odata.nextLink"), page.get("@odata.deltaLink")))
            if next_link:
                if self.clean:
                    self.keep_link(next_link)  # this round's pages so far are done
                if read >= self.account.max_messages_per_session:
                    return  # the rest of the round next time
                link = next_link
                continue
            if delta_link and self.clean:
                self.keep_link(delta_link)
            return

    def keep_link(self, link: str | None) -> None:
        account = db.session.get(IncomingAccount, self.account_id)
        account.graph_delta_link = link
        db.session.commit()
        self.account = account

    def take(self, entries: list[dict]) -> None:
        """Stores what is new on this page, then settles it and what earlier runs stored."""
        result = self.result
        for page in chunks(entries, 500):
            receipts = dict(db.session.execute(
                sa.select(MailboxReceipt.mailbox_key, MailboxReceipt.settled)
                .where(MailboxReceipt.account_id == self.account_id,
                       MailboxReceipt.mailbox_key.in_([e["id"] for e in page]))).all())
            done, wanted = [], []
            for entry in page:
                key = entry["id"]
                if key in receipts:
                    if not receipts[key]:  # stored by an interrupted run, not settled yet
                        result.resumed += 1
                        done.append(key)
                    continue  # settled: our own change (marked read) seen again, or an edit
                if self.policy is AfterProcessing.SEEN and entry.get("isRead"):
                    continue  # read in the mailbox: not for the desk (IMAP reads only UNSEEN)
                wanted.append(entry)
            done += self.fetch_and_store(wanted)
            self.settle(done)

    def fetch_and_store(self, entries: list[dict]) -> list[str]:
        stored: set[str] = set()
        batch, size = [], 0
        for entry in entries:
            self.result.step = "fetching a message"
            try:
                raw = self.client.download(f"/messages/{quote(entry['id'], safe='')}/$value", self.limit)
            except TooLarge:
                self.left_behind(entry)
                continue
            except GraphError as exc:
                if exc.status == 404:
                    continue  # moved or deleted in the mailbox meanwhile: nothing to read
                raise
            batch.append((entry["id"], raw))
            size += len(raw)
            if size >= FETCH_BYTES:  # as IMAP bounds a fetch: at most about this much held at once
                stored |= self.store(batch)
                batch, size = [], 0
        if batch:
            stored |= self.store(batch)
        return [e["id"] for e in entries if e["id"] in stored]

    def store(self, messages: list[tuple[str, bytes]]) -> set[str]:
        self.result.step = "storing"
        before = self.result.not_stored
        stored = store_fetched(db.session.get(IncomingAccount, self.account_id), messages, "graph", self.result)
        if self.result.not_stored != before:
            self.clean = False
        return stored

    def left_behind(self, entry: dict) -> None:
        """Too large to take in: left in the mailbox, said on the account, the link held back."""
        self.clean = False
        self.result.not_stored += 1
        subject = " ".join(str(entry.get("subject") or "").split())[:100]
        self.result.error = self.result.error or (
            f"a message larger than LMTP_MAX_MESSAGE_BYTES ({self.limit} bytes) is left in the mailbox "
            f"(subject {subject!r}); move it out of the folder or raise the limit")

    def settle(self, keys: list[str]) -> None:
        """The account's after-processing step, for stored messages only."""
        settled: list[str] = []
        try:
            for key in keys:
                self.result.step = f"{self.policy.value} after storing"
                path = f"/messages/{quote(key, safe='')}"
                try:
                    if self.policy is AfterProcessing.MOVE:
                        self.client.json("POST", f"{path}/move", body={"destinationId": self.destination})
                    elif self.policy is AfterProcessing.SEEN:
                        self.client.json("PATCH", path, body={"isRead": True})
                    else:
                        self.client.request("DELETE", path).close()
                except GraphError as exc:
                    if exc.status != 404:
                        raise
                    # Gone already: an earlier run's move whose answer was lost, or someone else's.
                settled.append(key)
        finally:
            if settled:
                mark_settled(self.account_id, settled)
                self.result.settled += len(settled)

    def folder_id(self, name: str, *, create: bool) -> str:
        """A folder by path ("Inbox", "Inbox/Desk", "Processed"): Graph's well-known name for the
        first part where it is one, else looked up by display name (made when `create`)."""
        parts = [p for p in (name or "").split("/") if p.strip()] or ["inbox"]
        parent = None
        for part in parts:
            if parent is None and part.strip().lower().replace(" ", "") in WELL_KNOWN:
                parent = part.strip().lower().replace(" ", "")
                continue
            parent = self.child(parent, part.strip(), create=create)
        return parent

    def child(self, parent: str | None, name: str, *, create: bool) -> str:
        base = "/mailFolders" if parent is None else f"/mailFolders/{quote(parent, safe='')}/childFolders"
        literal = name.replace("'", "''")  # an OData string literal
        found = self.client.json("GET", base, params={"$filter": f"displayName eq '{literal}'",
                                                      "$select": "id,displayName"})
        for folder in found.get("value") or []:
            if isinstance(folder, dict) and folder.get("displayName") == name and folder.get("id"):
                return str(folder["id"])
        if not create:
            raise GraphError(f"the mailbox {self.client.mailbox} has no folder {name!r}", status=404,
                             temporary=False)
        made = self.client.json("POST", base, body={"displayName": name}, safe=False)
        if not made.get("id"):
            raise GraphError(f"creating the folder {name!r} gave no folder id", temporary=False)
        return str(made["id"])
