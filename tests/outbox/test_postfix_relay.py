"""The sender through a real Postfix (STARTTLS, verified against the test CA) that relays to an
LMTP sink: the mail arrives as composed, and Postfix's own refusals fail the row."""

import threading

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP

from switchboard.calls.services import log_call
from switchboard.db import db
from switchboard.outbox.servers import add_server

from .desk import DESK, FAILED, SENT, row, rows, send
from .smtp_sink import Received


class LmtpSink:
    """Where Postfix delivers: an aiosmtpd LMTP server that keeps what it gets."""

    def __init__(self, port: int):
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                with sink._lock:
                    sink.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                                  bytes(envelope.original_content), False, None))
                # One answer per recipient (RFC 2033); these tests send to one at a time.
                return "\r\n".join("250 2.0.0 Stored" for _ in envelope.rcpt_tos)

        class LmtpController(Controller):
            def factory(self):
                return LMTP(self.handler, **self.SMTP_kwargs)

        self.controller = LmtpController(Handler(), hostname="127.0.0.1", port=port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc_info):
        self.controller.stop()


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    from tests.servers.postfix import INSTALL_HINT, Postfix
    from tests.servers.process import free_port
    from tests.servers.require import require_binary, require_root
    from tests.servers.tls import make_certificates

    binary = require_binary("postfix", INSTALL_HINT)
    require_root("Postfix")
    tls = make_certificates(tmp_path_factory.mktemp("relay-tls"))
    postfix = Postfix(binary, tls, lmtp_port=free_port(), domains=("example.org",))
    with LmtpSink(postfix.lmtp_port) as sink:
        postfix.start()
        try:
            yield postfix, sink
        finally:
            postfix.remove()


@pytest.fixture
def through_postfix(app, relay):
    postfix, sink = relay
    add_server("postfix", "localhost", port=postfix.smtp_port, security="starttls", from_address=DESK,
               trusted_ca_pem=postfix.ca_path.read_text(), timeout_seconds=10)
    db.session.commit()
    sink.messages.clear()
    return postfix, sink


def test_mail_relayed_by_postfix_arrives_as_composed(through_postfix, people):
    postfix, sink = through_postfix
    call = log_call(people["carol"], "Printer jams")
    db.session.commit()
    assert send().sent == 1
    postfix.wait_until_delivered(timeout=20)
    [mail] = rows()
    [received] = sink.messages
    message = received.message
    assert received.mail_from == DESK and received.rcpt_tos == ["carol@example.org"]
    assert message["Message-ID"] == mail.message_id
    assert message["Subject"] == f"{call.ref} logged: Printer jams [SB-{mail.reply_token}]"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Switchboard-Origin"]
    assert "mta.switchboard.test" in message["Received"]  # it really went through Postfix
    assert "TLS" in message["Received"] or "ESMTPS" in message["Received"]
    assert row(mail.id).status is SENT and row(mail.id).server_name == "postfix"


def test_postfix_refusing_to_relay_fails_the_mail_at_once(through_postfix, people):
    from switchboard.outbox import catalogue
    from switchboard.outbox.queue import queue_mail

    mail = queue_mail(catalogue.MANUAL_MESSAGE, ["someone@elsewhere.test"], subject="Hi", text="Hello",
                      automatic=False)
    db.session.commit()
    assert send().failed == 1
    failed = row(mail.id)
    assert failed.status is FAILED and failed.last_code == 554
    assert "Relay access denied" in failed.last_message
