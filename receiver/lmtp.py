"""The LMTP server an MTA (Postfix...) delivers to: aiosmtpd on its own event
loop, 250 for a recipient only once its message is committed, 451 when
storing failed so the MTA keeps the mail and retries, one reply per accepted
recipient after DATA (RFC 2033). No database work runs on the event loop:
recipient look-ups go to a thread pool, and storing to one writer thread that
commits the deliveries arriving together in one transaction (group commit)."""

import asyncio
import logging
import queue
import re
import socket
import threading
import time
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import Envelope

from receiver.storage import StorageHealth, follow_storage
from receiver.worker import WriteGate, run_in_app
from switchboard.db import db, rollback_or_drop

log = logging.getLogger(__name__)

# A path of plain characters only: letters, digits and the usual punctuation of a mailbox.
_PLAIN_PATH = re.compile(r"\s*<([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+)>")

TEMPORARY_FAILURE = "451 4.3.0 Temporary failure storing the message; please try again later"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"


class DeskEnvelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.account_ids: dict[str, int] = {}  # accepted recipient -> incoming account id


class DeskLMTP(LMTP):
    """aiosmtpd's LMTP, with the replies after DATA made one per recipient
    even where aiosmtpd answers once (message too big, line too long, an
    unexpected error): an LMTP client waits for one reply per recipient."""

    def __init__(self, handler, *, max_recipients: int = 100, **kwargs):
        super().__init__(handler, **kwargs)
        self.max_recipients = max_recipients
        self._data_recipients = 0

    def _create_envelope(self) -> DeskEnvelope:
        return DeskEnvelope()

    def _getaddr(self, arg: str):
        # An empty address makes aiosmtpd answer "501 Syntax" to MAIL and RCPT. So
        # are a NUL (nothing downstream can keep it in a text column) and a path
        # the email package trips over ("<" alone: IndexError): refused for good,
        # where an exception would answer 451 and the MTA retry it for days.
        if "\x00" in (arg or ""):
            return "", ""
        # The usual "<local@domain> PARAMS" without the RFC 5322 parser aiosmtpd
        # uses (a tenth of the receiver's time); anything else still goes to it.
        match = _PLAIN_PATH.match(arg or "")
        if match is None:
            try:
                return super()._getaddr(arg)
            except (IndexError, ValueError, TypeError, AttributeError):
                log.info("LMTP: unparseable path %r refused with 501", (arg or "")[:200])
                return "", ""
        address = match.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, arg[match.end():]

    async def smtp_RCPT(self, arg: str | None) -> None:
        # RFC 5321 4.5.3.1.8: past the limit, 452 each further recipient; the MTA
        # delivers them in another transaction (Postfix does).
        envelope = self.envelope
        if envelope is not None and envelope.mail_from and len(envelope.rcpt_tos) >= self.max_recipients:
            await self.push(TOO_MANY_RECIPIENTS)
            return
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        recipients = len(self.envelope.rcpt_tos) if self.envelope is not None else 0
        self._data_recipients = recipients if recipients and not arg else 0
        try:
            await super().smtp_DATA(arg)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            log.exception("LMTP DATA failed")
            if self._data_recipients:
                self._set_post_data_state()
                self._data_recipients, count = 0, self._data_recipients
                await self.push("\r\n".join([TEMPORARY_FAILURE] * count))
            else:
                raise
        finally:
            self._data_recipients = 0

    async def push(self, status):
        if self._data_recipients and isinstance(status, str):
            if status.startswith("552"):
                limit = self.data_size_limit
                status = f"552 5.3.4 Message too big for this desk (limit {limit} bytes)"
                status = "\r\n".join([status] * self._data_recipients)
            elif status.startswith("500 Line too long"):
                status = "\r\n".join(["500 5.5.2 Line too long (see RFC 5321 4.5.3.1.6)"] * self._data_recipients)
        await super().push(status)


class StoreWriter:
    """Stores LMTP deliveries in group commits: one thread takes every
    delivery waiting, stores each once per account, and commits them
    together; only then are their sessions answered. Should that transaction
    fail, each delivery and account is stored alone, so one failure answers
    451 only for its own recipients."""

    def __init__(self, app, *, gate: WriteGate | None = None, on_stored=None, max_group: int = 64,
                 threads: int = 1, health: StorageHealth | None = None):
        self.app = app
        self.health = health or StorageHealth()
        self.gate = gate or WriteGate(False, quiet=0)
        self.on_stored = on_stored  # called with the new inbound ids, from a writer thread
        self.max_group = max_group
        # One writer on SQLite (one write lock anyway); on PostgreSQL several,
        # so their round trips to the server overlap.
        self.threads = 1 if self.gate.exclusive else max(1, threads)
        self._queue: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for number in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"lmtp-store-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stores what was handed in already, then returns."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def submit(self, raw: bytes, mail_from: str | None, by_account: dict[int, list[str]]) -> Future:
        """A future of {account id: inbound id} for the accounts whose copy is committed."""
        future: Future = Future()
        self._queue.put((future, raw, mail_from, by_account))
        return future

    def _run(self) -> None:
        # This thread must outlive any failure: should it end, every session waits forever.
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            stopping = False
            while len(group) < self.max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
            try:
                with self.gate.urgent():
                    results = run_in_app(self.app, self._store_group, group)
            except Exception as exc:  # no app context, no session: every delivery here gets 451
                self.health.failed(exc, sum(len(by_account) for *_, by_account in group))
                for future, *_ in group:
                    _settle(future, exception=exc)
            else:
                for (future, *_), result in zip(group, results):
                    _settle(future, result=result)
            finally:
                for future, *_ in group:  # anything not settled above (it cannot happen) gets 451
                    if not future.done():
                        _settle(future, exception=RuntimeError("delivery not stored"))
            if stopping:
                return

    def _store_group(self, group) -> list[dict[int, int]]:
        """{account id: inbound id} per delivery, holding only the copies whose
        own commit returned: a copy is recorded after its commit, never before,
        so a failing COMMIT answers 451, never 250 with an id rolled back."""
        from switchboard.inbound.store import Incoming, store_messages

        def incoming(raw, mail_from, account_id, addresses) -> Incoming:
            return Incoming(raw, "lmtp", account_id, mail_from or None, tuple(addresses))

        new_ids: list[int] = []
        try:
            items, places = [], []
            for index, (_, raw, mail_from, by_account) in enumerate(group):
                for account_id, addresses in by_account.items():
                    items.append(incoming(raw, mail_from, account_id, addresses))
                    places.append((index, account_id))
            results = store_messages(items)
            db.session.commit()
        except Exception as exc:
            rollback_or_drop()
            if len(group) == 1 and len(group[0][3]) == 1:
                self.health.failed(exc)
                return [{}]
            # Each delivery and account alone, so a failure answers 451 only for its own recipients.
            log.debug("storing %d LMTP deliveries together failed; storing each alone", len(group))
            stored, failure, refused = [], None, 0
            for _, raw, mail_from, by_account in group:
                done = {}
                for account_id, addresses in by_account.items():
                    try:
                        [result] = store_messages([incoming(raw, mail_from, account_id, addresses)])
                        db.session.commit()
                    except Exception as exc:
                        rollback_or_drop()
                        failure, refused = exc, refused + 1
                        continue
                    done[account_id] = result  # its commit returned: only now is it stored
                stored.append(done)
            if failure is not None:
                self.health.failed(failure, refused)
            else:
                self.health.succeeded()
        else:
            stored = [{} for _ in group]
            for (index, account_id), result in zip(places, results):
                stored[index][account_id] = result
            self.health.succeeded()
        for done in stored:
            new_ids.extend(result.inbound_id for result in done.values() if not result.duplicate)
        if new_ids and self.on_stored is not None:
            # Handed over here, so mail whose client hung up before reading
            # the reply is still acted on now (the MTA's retry is a duplicate).
            # Committed already: a failure to hand over must not turn its 250 into
            # 451 (the sweep acts on what is still new).
            try:
                self.on_stored(new_ids)
            except Exception:
                log.exception("handing stored LMTP mail to the acting workers failed; the sweep takes it")
        return [{account_id: result.inbound_id for account_id, result in done.items()} for done in stored]


def _settle(future: Future, *, result=None, exception=None) -> None:
    # A client that hung up meanwhile cancelled its future: its message is
    # stored all the same (the MTA will retry, and the retry is a duplicate).
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


class DeliveryHandler:
    """aiosmtpd handler: recipients must belong to an active incoming account;
    the message is stored once per account (see StoreWriter)."""

    # A recipient found to belong to an account is believed for this long
    # (a deactivation reaches the server within it); a refusal never is, so a
    # newly added address works at once.
    KNOWN_SECONDS = 2.0

    def __init__(self, app, executor, writer: StoreWriter):
        self.app = app
        self.executor = executor
        self.writer = writer
        self.health = writer.health
        self._known: dict[str, tuple[int, float]] = {}  # address -> (account id, until); event loop only

    async def _db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, run_in_app, self.app, fn, *args)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        key = address.lower()
        account_id, until = self._known.get(key, (None, 0.0))
        if until < time.monotonic():
            try:
                account_id = await self._db(_account_id_for, address)
            except Exception as exc:
                self.health.failed(exc, doing="looking up recipients")
                return "451 4.3.0 Temporary failure looking up the recipient; please try again later"
            if account_id is None:
                self._known.pop(key, None)
                return f"550 5.1.1 <{address}>: no such mailbox here"
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[key] = (account_id, time.monotonic() + self.KNOWN_SECONDS)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        if isinstance(envelope, DeskEnvelope):
            envelope.account_ids[address] = account_id
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        account_ids = getattr(envelope, "account_ids", {})
        by_account: dict[int, list[str]] = {}
        for address in envelope.rcpt_tos:
            account_id = account_ids.get(address)
            if account_id is not None and address not in by_account.setdefault(account_id, []):
                by_account[account_id].append(address)
        stored = await self._store(envelope.original_content or b"", envelope.mail_from, by_account)
        replies = []
        for address in envelope.rcpt_tos:
            inbound_id = stored.get(account_ids.get(address))
            if inbound_id is None:
                replies.append(TEMPORARY_FAILURE)
            else:
                replies.append(f"250 2.0.0 <{address}> stored as message {inbound_id}")
        return "\r\n".join(replies)

    async def _store(self, raw, mail_from, by_account) -> dict[int, int]:
        return await asyncio.wrap_future(self.writer.submit(raw, mail_from, by_account))

    async def handle_exception(self, error):
        # Never aiosmtpd's "500 Error: (...)" with our exception text: ours is temporary.
        log.error("LMTP session error: %r", error, exc_info=error)
        return "451 4.3.0 Temporary local problem; please try again later"


def _account_id_for(address: str) -> int | None:
    from switchboard.inbound.store import account_for_recipient

    account = account_for_recipient(address)
    return account.id if account is not None else None


class LMTPServer:
    """Runs the LMTP server on an event loop in a thread: `start()` returns
    once it listens (port 0 picks a free port, see `.port`), `stop()` stops
    accepting, lets the pool finish what it is storing, and returns."""

    def __init__(self, app, *, host: str | None = None, port: int | None = None,
                 max_message_bytes: int | None = None, db_threads: int | None = None, on_stored=None,
                 gate: WriteGate | None = None, max_recipients: int | None = None):
        config = app.config
        self.app = app
        self.host = host if host is not None else config["LMTP_HOST"]
        self.port = port if port is not None else config["LMTP_PORT"]
        self.max_message_bytes = max_message_bytes if max_message_bytes is not None else config["LMTP_MAX_MESSAGE_BYTES"]
        self.max_recipients = max_recipients if max_recipients is not None else config["LMTP_MAX_RECIPIENTS"]
        threads = db_threads or config["LMTP_DB_THREADS"]
        # Recipient look-ups (reads) run in this pool; storing goes through one group-committing writer.
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lmtp-lookup")
        # One account of the storage's health for storing and looking up: one log line a minute.
        self.health = StorageHealth()
        self.writer = StoreWriter(app, gate=gate or WriteGate.for_app(app), on_stored=on_stored, threads=threads,
                                  health=self.health)
        with app.app_context():
            follow_storage(db.engine)
        self.handler = DeliveryHandler(app, self.executor, self.writer)
        self._hostname = socket.gethostname()  # once: getfqdn per connection may wait on DNS
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None

    def _factory(self):
        return DeskLMTP(
            self.handler,
            data_size_limit=self.max_message_bytes,
            max_recipients=self.max_recipients,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self._hostname,
            ident="Switchboard LMTP",
            loop=self._loop,
        )

    def start(self) -> None:
        self.writer.start()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(self._factory, host=self.host, port=self.port, reuse_address=True)
                )
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            self.port = self._server.sockets[0].getsockname()[1]
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._shutdown())
                loop.close()

        self._thread = threading.Thread(target=run, name="lmtp-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self.writer.stop()
            raise failure[0]
        log.info("LMTP listening on %s:%s", self.host, self.port)

    async def _shutdown(self) -> None:
        self._server.close()
        await self._server.wait_closed()
        tasks = [t for t in asyncio.all_tasks(self._loop) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None
        # Whatever was handed to the writer still commits; its MTA just sees
        # the connection drop and retries, which the fingerprint makes harmless.
        self.executor.shutdown(wait=True)
        self.writer.stop()
