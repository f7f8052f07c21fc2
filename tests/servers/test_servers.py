"""The server fixtures work: real Dovecot and Postfix over loopback, TLS checked against the test CA."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import ssl
import threading
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP

from .process import accepts, free_port
from .require import require_binary

# Loaded here too so these tests run before (and whether or not) the root conftest lists it.
# The real-server fixtures come from tests/conftest.py (pytest_plugins).


def raw_message(subject: str, body: str = "Hello from the tests.\n") -> bytes:
    message = EmailMessage()
    message["From"] = "Ada Customer <ada@example.org>"
    message["To"] = "help@desk.test"
    message["Subject"] = subject
    message["Date"] = formatdate()
    message["Message-ID"] = make_msgid(domain="example.org")
    message.set_content(body)
    return message.as_bytes().replace(b"\n", b"\r\n")


def trusting(server) -> ssl.SSLContext:
    """A client context that trusts only the throwaway CA, with hostname checks on."""
    return ssl.create_default_context(cafile=str(server.ca_path))


# -- Dovecot: IMAP ------------------------------------------------------------------------

def test_imap_plain_login_fetches_appended_message(dovecot, mail_account):
    raw = raw_message("Printer on fire")
    mail_account.append(raw)
    with imaplib.IMAP4(dovecot.host, dovecot.ports.imap) as imap:
        imap.login(mail_account.email, mail_account.password)
        assert imap.select("INBOX") == ("OK", [b"1"])
        _, data = imap.fetch("1", "(RFC822)")
    assert data[0][1] == raw


def test_imap_starttls_presents_certificate_of_test_ca(dovecot, mail_account):
    with imaplib.IMAP4(dovecot.host, dovecot.ports.imap) as imap:
        imap.starttls(trusting(dovecot))
        assert imap.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert imap.login(mail_account.email, mail_account.password)[0] == "OK"


def test_imap_starttls_is_refused_by_client_without_the_test_ca(dovecot):
    imap = imaplib.IMAP4(dovecot.host, dovecot.ports.imap)
    with pytest.raises(ssl.SSLCertVerificationError):  # the failed handshake closes the socket
        imap.starttls(ssl.create_default_context())


def test_imaps_implicit_tls_login(dovecot, mail_account):
    mail_account.append(raw_message("Over TLS"))
    with imaplib.IMAP4_SSL(dovecot.host, dovecot.ports.imaps, ssl_context=trusting(dovecot)) as imap:
        imap.login(mail_account.email, mail_account.password)
        assert imap.select("INBOX", readonly=True) == ("OK", [b"1"])


def test_imap_wrong_password_is_refused(dovecot, mail_account):
    with imaplib.IMAP4(dovecot.host, dovecot.ports.imap) as imap:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login(mail_account.email, "not the password")


# -- Dovecot: POP3 ------------------------------------------------------------------------

def pop3_retrieve_all(pop: poplib.POP3, account) -> list[bytes]:
    pop.user(account.email)
    pop.pass_(account.password)
    count, _ = pop.stat()
    messages = [b"\r\n".join(pop.retr(n)[1]) + b"\r\n" for n in range(1, count + 1)]
    pop.quit()
    return messages


def test_pop3_plain_retrieves_appended_message(dovecot, mail_account):
    raw = raw_message("By POP3")
    mail_account.append(raw)
    assert pop3_retrieve_all(poplib.POP3(dovecot.host, dovecot.ports.pop3), mail_account) == [raw]


def test_pop3_stls_presents_certificate_of_test_ca(dovecot, mail_account):
    mail_account.append(raw_message("By POP3 with STLS"))
    pop = poplib.POP3(dovecot.host, dovecot.ports.pop3)
    pop.stls(trusting(dovecot))
    assert pop.sock.version() in ("TLSv1.2", "TLSv1.3")
    assert len(pop3_retrieve_all(pop, mail_account)) == 1


def test_pop3s_implicit_tls(dovecot, mail_account):
    mail_account.append(raw_message("By POP3S"))
    pop = poplib.POP3_SSL(dovecot.host, dovecot.ports.pop3s, context=trusting(dovecot))
    assert len(pop3_retrieve_all(pop, mail_account)) == 1


def test_pop3_deletion_empties_the_mailbox(dovecot, mail_account):
    mail_account.append(raw_message("Delete me"))
    pop = poplib.POP3(dovecot.host, dovecot.ports.pop3)
    pop.user(mail_account.email)
    pop.pass_(mail_account.password)
    pop.dele(1)
    pop.quit()
    assert mail_account.messages() == []


# -- Dovecot: the handle's mailbox helpers ------------------------------------------------

def test_folders_and_messages_follow_what_imap_clients_do(dovecot, mail_account):
    first, second = raw_message("First"), raw_message("Second")
    mail_account.append(first)
    mail_account.append(second, folder="Desk.Erledigt Übersicht")  # hierarchy and mUTF-7
    with imaplib.IMAP4(dovecot.host, dovecot.ports.imap) as imap:
        imap.login(mail_account.email, mail_account.password)
        _, listed = imap.list()
        assert any(b'"Desk.Erledigt &ANw-bersicht"' in line for line in listed)
        imap.create("Done")
        imap.select("INBOX")
        imap.copy("1", "Done")
        imap.store("1", "+FLAGS", r"\Deleted")
        imap.expunge()
        imap.append("INBOX", None, None, raw_message("Appended by a client"))
    # Only folders that exist as such: IMAP lists the parent "Desk" too, as \\Noselect.
    assert mail_account.folders() == ["INBOX", "Desk.Erledigt Übersicht", "Done"]
    assert mail_account.messages("Done") == [first]
    assert mail_account.messages("Desk.Erledigt Übersicht") == [second]
    assert [m.split(b"Subject: ")[1].split(b"\r\n")[0] for m in mail_account.messages()] == [
        b"Appended by a client"]


def test_messages_keep_imap_order(mail_account):
    for n in range(5):
        mail_account.append(raw_message(f"Number {n}"))
    assert [b"Number %d" % n in m for n, m in enumerate(mail_account.messages())] == [True] * 5


def test_clear_removes_all_mail_but_keeps_the_login(dovecot, mail_account):
    mail_account.append(raw_message("Old"), folder="Archive")
    dovecot.clear(mail_account.email)
    assert mail_account.folders() == ["INBOX"] and mail_account.messages() == []
    with imaplib.IMAP4(dovecot.host, dovecot.ports.imap) as imap:
        imap.login(mail_account.email, mail_account.password)
        assert imap.select("INBOX") == ("OK", [b"0"])


def test_users_can_be_added_and_changed_while_running(dovecot):
    email = f"late-{time.monotonic_ns()}@Example.test"
    dovecot.add_user(email, "first password")
    with imaplib.IMAP4(dovecot.host, dovecot.ports.imap) as imap:
        imap.login(email.lower(), "first password")
    dovecot.add_user(email, "second password")
    with imaplib.IMAP4(dovecot.host, dovecot.ports.imap) as imap:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(email, "first password")
    with imaplib.IMAP4(dovecot.host, dovecot.ports.imap) as imap:
        imap.login(email, "second password")
    dovecot.clear(email)


def test_stop_closes_every_port_and_start_brings_them_back(dovecot, mail_account):
    ports = [dovecot.ports.imap, dovecot.ports.imaps, dovecot.ports.pop3, dovecot.ports.pop3s]
    dovecot.stop()
    try:
        assert not any(accepts(port) for port in ports)
    finally:
        dovecot.start()
    assert all(accepts(port) for port in ports)
    with imaplib.IMAP4(dovecot.host, dovecot.ports.imap) as imap:
        imap.login(mail_account.email, mail_account.password)


# -- Postfix ------------------------------------------------------------------------------

class LmtpSink:
    """A tiny LMTP server that stores what it gets and answers `reply` after DATA."""

    def __init__(self, port: int):
        self.port = port
        self.received: list[tuple[str, list[str], bytes]] = []
        self.reply = "250 2.0.0 stored"
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    async def handle_DATA(self, server, session, envelope):
        if self.reply.startswith("250"):
            with self._lock:
                self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        # LMTP answers once per recipient (RFC 2033); aiosmtpd's LMTP class does not do that
        # for us, and Postfix would wait for the missing answers until its timeout.
        return "\r\n".join([self.reply] * len(envelope.rcpt_tos))

    def start(self) -> None:
        controller = Controller(self, hostname="127.0.0.1", port=self.port)
        controller.factory = lambda: LMTP(self)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def lmtp_sink():
    sink = LmtpSink(free_port())
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


def test_postfix_relays_the_test_domain_to_lmtp(postfix_factory, lmtp_sink):
    postfix = postfix_factory(lmtp_sink.port)
    raw = raw_message("Log call: printer jammed")
    queue_id = postfix.send("ada@example.org", ["help@desk.test", "it@desk.test"], raw)
    delivered = postfix.wait_until_delivered(timeout=10)
    assert {(d.queue_id, d.recipient, d.status) for d in delivered} == {
        (queue_id, "help@desk.test", "sent"), (queue_id, "it@desk.test", "sent")}
    [(mail_from, rcpt_tos, content)] = lmtp_sink.received
    assert (mail_from, sorted(rcpt_tos)) == ("ada@example.org", ["help@desk.test", "it@desk.test"])
    assert content.startswith(b"Received: from ") and content.endswith(raw)
    assert postfix.queue_empty()


def test_postfix_keeps_mail_while_receiver_is_down_and_delivers_it_once_after_flush(
        postfix_factory, lmtp_sink):
    postfix = postfix_factory(lmtp_sink.port)
    lmtp_sink.stop()
    queue_id = postfix.send("ada@example.org", "help@desk.test", raw_message("While down"))
    postfix.wait_for_log(rf"{queue_id}: to=<help@desk.test>.*status=deferred.*Connection refused")
    assert postfix.queue_ids() == [queue_id]

    lmtp_sink.start()
    postfix.flush()
    postfix.wait_until_delivered(timeout=10)
    assert len(lmtp_sink.received) == 1
    postfix.flush()  # nothing left to retry: a second flush delivers nothing twice
    time.sleep(0.2)
    assert len(lmtp_sink.received) == 1 and postfix.queue_empty()


def test_postfix_retries_after_a_temporary_failure_and_bounces_a_permanent_one(
        postfix_factory, lmtp_sink):
    postfix = postfix_factory(lmtp_sink.port)
    lmtp_sink.reply = "451 4.3.0 try again later"
    queue_id = postfix.send("ada@example.org", "help@desk.test", raw_message("Retry me"))
    with pytest.raises(AssertionError, match="451 4.3.0 try again later"):
        postfix.wait_until_delivered(timeout=10)
    assert postfix.queue_ids() == [queue_id]
    lmtp_sink.reply = "250 2.0.0 stored"
    postfix.flush()
    postfix.wait_until_delivered(timeout=10)
    assert len(lmtp_sink.received) == 1

    lmtp_sink.reply = "550 5.1.1 no such desk"
    bounced = postfix.send("ada@example.org", "nobody@desk.test", raw_message("Bounce me"))
    postfix.wait_for_log(rf"{bounced}: to=<nobody@desk.test>.*status=bounced")


def test_relay_can_be_pointed_at_another_lmtp_port(postfix_factory, lmtp_sink):
    other = LmtpSink(free_port())
    other.start()
    try:
        postfix = postfix_factory(lmtp_sink.port)
        postfix.set_lmtp_port(other.port)
        postfix.send("ada@example.org", "help@desk.test", raw_message("Moved"))
        postfix.wait_until_delivered(timeout=10)
        assert (len(lmtp_sink.received), len(other.received)) == (0, 1)
    finally:
        other.stop()


def test_reset_clears_the_queue_and_earlier_outcomes(postfix_factory, lmtp_sink):
    postfix = postfix_factory(lmtp_sink.port)
    lmtp_sink.stop()
    queue_id = postfix.send("ada@example.org", "help@desk.test", raw_message("Left behind"))
    postfix.wait_for_log(rf"{queue_id}: .*status=deferred")
    postfix.reset()
    assert postfix.queue_empty()
    lmtp_sink.start()
    postfix.send("ada@example.org", "help@desk.test", raw_message("Next test"))
    assert [d.status for d in postfix.wait_until_delivered(timeout=10)] == ["sent"]


def test_postfix_refuses_to_relay_other_domains(postfix_factory, lmtp_sink):
    postfix = postfix_factory(lmtp_sink.port)
    with pytest.raises(smtplib.SMTPRecipientsRefused, match="Relay access denied"):
        postfix.send("ada@example.org", "someone@example.com", raw_message("Elsewhere"))


def test_postfix_offers_starttls_and_implicit_tls_with_the_test_certificate(postfix_factory, lmtp_sink):
    postfix = postfix_factory(lmtp_sink.port)
    with smtplib.SMTP(postfix.host, postfix.smtp_port, timeout=10) as smtp:
        smtp.starttls(context=trusting(postfix))
        smtp.sendmail("ada@example.org", ["help@desk.test"], raw_message("STARTTLS"))
    with smtplib.SMTP_SSL(postfix.host, postfix.smtps_port, context=trusting(postfix), timeout=10) as smtp:
        smtp.sendmail("ada@example.org", ["help@desk.test"], raw_message("Implicit TLS"))
    postfix.wait_until_delivered(timeout=10)
    assert len(lmtp_sink.received) == 2


def test_two_postfix_instances_run_side_by_side(postfix_factory, lmtp_sink):
    first, second = postfix_factory(lmtp_sink.port), postfix_factory(lmtp_sink.port)
    assert first.smtp_port != second.smtp_port
    first.send("ada@example.org", "help@desk.test", raw_message("One"))
    second.send("ada@example.org", "help@desk.test", raw_message("Two"))
    first.wait_until_delivered(timeout=10)
    second.wait_until_delivered(timeout=10)
    assert len(lmtp_sink.received) == 2
    first.stop()
    assert not accepts(first.smtp_port) and accepts(second.smtp_port)


# -- The skipping rule --------------------------------------------------------------------

def test_missing_binary_skips_on_a_developer_machine(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-server not installed: apt-get install it"):
        require_binary("no-such-server", "apt-get install it")


def test_missing_binary_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-server not installed"):
        require_binary("no-such-server", "apt-get install it")
