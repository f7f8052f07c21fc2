"""Fixtures for the receiver: the real LMTP server on a loopback port, a
raw-socket LMTP client that reads every reply, and a way to make the
database refuse to store mail (a trigger: what a full disk looks like)."""

import contextlib
import socket
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
import sqlalchemy as sa

from switchboard.db import db


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Polls `predicate` (with a fresh view of the database) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        db.session.rollback()
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def make_mail(subject="Log call: printer jammed", sender="carol@example.org", to="help@desk.test",
              body="The printer on floor 2 is jammed again.\n", message_id=None, size=0) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain="example.org")
    msg["Date"] = "Mon, 03 Mar 2025 09:15:00 +0000"
    if size:
        body = body + ("x" * 76 + "\n") * (size // 77)
    msg.set_content(body)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@dataclass
class Reply:
    code: int
    text: str


class RawLMTP:
    """A plain LMTP client over a socket that reads every reply line, which
    smtplib does not do after DATA (it reads one)."""

    def __init__(self, host: str, port: int, timeout: float = 10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> Reply:
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            lines.append(line.decode().rstrip("\r\n"))
            if line[3:4] != b"-":
                break
        return Reply(int(lines[-1][:3]), "\n".join(l[4:] for l in lines))

    def command(self, line: str) -> Reply:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def deliver(self, mail_from: str, recipients: list[str], data: bytes) -> tuple[list[Reply], list[Reply]]:
        """Returns the RCPT replies and the replies after DATA (one per accepted recipient)."""
        self.command("LHLO client.test")
        assert self.command(f"MAIL FROM:<{mail_from}>").code == 250
        rcpt = [self.command(f"RCPT TO:<{r}>") for r in recipients]
        accepted = sum(1 for r in rcpt if r.code == 250)
        if not accepted:
            return rcpt, []
        assert self.command("DATA").code == 354
        stuffed = b"\r\n".join(b"." + l if l.startswith(b".") else l for l in data.split(b"\r\n"))
        if not stuffed.endswith(b"\r\n"):
            stuffed += b"\r\n"
        self.sock.sendall(stuffed + b".\r\n")
        return rcpt, [self.reply() for _ in range(accepted)]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.command("QUIT")
        self.file.close()
        self.sock.close()


@pytest.fixture
def desk_accounts(app):
    """Two LMTP accounts: help (help@desk.test and the @support.desk.test
    catch-all) and sales (sales@desk.test)."""
    from switchboard.inbound.accounts import create_account

    help_account = create_account("help", "lmtp", addresses=["help@desk.test", "@support.desk.test"])
    sales = create_account("sales", "lmtp", addresses=["sales@desk.test"])
    db.session.commit()
    return {"help": help_account.id, "sales": sales.id}


class Receiver:
    """The LMTP server and the processing worker, as `receiver run` starts them."""

    def __init__(self, app, **options):
        from receiver.lmtp import LMTPServer
        from receiver.worker import ProcessingWorker, WriteGate

        from receiver import process_batch_size

        gate = WriteGate.for_app(app)
        self.worker = ProcessingWorker(app, batch=process_batch_size(app), sweep_seconds=options.pop("sweep_seconds", 3600), gate=gate)
        self.server = LMTPServer(app, host="127.0.0.1", port=options.pop("port", 0),
                                 on_stored=self.worker.submit, gate=gate, **options)

    def start(self):
        self.server.start()
        self.worker.start()
        return self

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self):
        self.server.stop()
        self.worker.stop()

    def smtp(self):
        import smtplib

        return smtplib.LMTP("127.0.0.1", self.port, timeout=10)

    def raw(self) -> RawLMTP:
        return RawLMTP("127.0.0.1", self.port)


@pytest.fixture
def receiver(app):
    started = []

    def start(**options) -> Receiver:
        running = Receiver(app, **options).start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@contextlib.contextmanager
def storage_fails(account_id: int | None = None):
    """Makes the database refuse to store inbound mail (for one account, or
    all) until the block ends: a trigger raises, as a full disk would."""
    engine = db.engine
    condition = f"NEW.account_id = {int(account_id)}" if account_id is not None else "1 = 1"
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(
                "CREATE OR REPLACE FUNCTION refuse_inbound() RETURNS trigger AS $$ BEGIN "
                f"IF {condition} THEN RAISE EXCEPTION 'could not extend file: No space left on device'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"))
            conn.execute(sa.text("CREATE TRIGGER refuse_inbound BEFORE INSERT ON inbound_message "
                                 "FOR EACH ROW EXECUTE FUNCTION refuse_inbound()"))
        else:
            conn.execute(sa.text(
                f"CREATE TRIGGER refuse_inbound BEFORE INSERT ON inbound_message WHEN {condition} "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER IF EXISTS refuse_inbound" +
                                 (" ON inbound_message" if conn.dialect.name == "postgresql" else "")))


# --- real mail servers ---------------------------------------------------------------------
# Dovecot and Postfix over loopback: the fixtures of tests/servers (loaded by the root
# conftest), skipped on a developer machine without them, failed under CI=true.


@pytest.fixture
def mailbox_account(app, dovecot, server_tls):
    """Adds an IMAP or POP3 account reading a Dovecot mailbox (a `mail_account`); returns its id."""
    from switchboard.inbound.accounts import create_account

    def add(mailbox, protocol: str = "imap", security: str = "none", *, name: str | None = None,
            password: str | None = None, **settings) -> int:
        ports = dovecot.ports
        port = {("imap", "tls"): ports.imaps, ("pop3", "tls"): ports.pop3s}.get(
            (protocol, security), ports.imap if protocol == "imap" else ports.pop3)
        if security != "none":
            settings.setdefault("trusted_ca_pem", server_tls.ca.read_text())
        account = create_account(name or f"{protocol}-{security}", protocol, host="127.0.0.1", port=port,
                                 security=security, username=mailbox.email,
                                 password=password or mailbox.password, timeout_seconds=10, **settings)
        db.session.commit()
        return account.id

    return add


@pytest.fixture
def postfix(postfix_factory):
    """A real Postfix relaying desk.test and support.desk.test to LMTP on `.lmtp_port`,
    where the test starts the receiver (before or after: Postfix defers until it answers)."""
    from tests.servers.process import free_port

    return postfix_factory(free_port(), domains=("desk.test", "support.desk.test"))
