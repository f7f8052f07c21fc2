"""A real SMTP server on loopback (aiosmtpd) that records what it receives and misbehaves on request.

Used by the outbox tests and bench/smtp_send.py. Plain, STARTTLS or implicit TLS, with
optional AUTH; faults: chosen answers at MAIL/RCPT/DATA, a connection dropped in the middle
of DATA or right after it, a slow DATA answer, a stopped server, and `drop_connections()`
to close every open connection as an idle-timeout would.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


@dataclass
class Received:
    """One message as the sink got it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.data)


@dataclass
class Faults:
    """What the sink should do wrong; change fields between sends."""

    mail_reply: str | None = None  # e.g. "553 5.1.8 Sender refused"
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> "451 ..."/"550 ..."
    data_command_reply: str | None = None  # answer to the DATA command itself (before 354)
    data_reply: str | None = None  # answer after the message, e.g. "451 ..." or "554 ..."
    drop_in_data: bool = False  # close after the first line of the message, no answer
    drop_after_data: bool = False  # store the message, then close without answering
    data_delay: float = 0.0  # seconds to wait before answering the message


class SmtpSink:
    """Start with start() (or use as a context manager); messages land in `.messages`."""

    def __init__(self, *, tls: str = "none", pki=None, users: dict[str, str] | None = None,
                 host: str = "127.0.0.1"):
        if tls not in ("none", "starttls", "tls"):
            raise ValueError(tls)
        if tls != "none" and pki is None:
            raise ValueError("TLS needs a TestPki (see certs.py)")
        self.tls = tls
        self.pki = pki
        self.users = dict(users or {})
        self.host = host
        self.port = free_port(host)
        self.messages: list[Received] = []
        self.faults = Faults()
        self.connections = 0  # connections accepted (after the TLS handshake for implicit TLS)
        self.auth_failures = 0
        self._live: set[SMTP] = set()
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> SmtpSink:
        kwargs: dict = {"hostname": self.host, "port": self.port}
        if self.tls == "tls":
            kwargs["ssl_context"] = self.pki.server_context()
        elif self.tls == "starttls":
            kwargs["tls_context"] = self.pki.server_context()
            kwargs["require_starttls"] = True
        if self.users:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_require_tls"] = self.tls != "none"
            kwargs["auth_required"] = True
        self._controller = _SinkController(self, _Handler(self), **kwargs)
        self._controller.start()
        self.connections = 0  # the controller's own start-up probe does not count
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def reset(self) -> None:
        self.messages.clear()
        self.faults = Faults()
        self.connections = 0
        self.auth_failures = 0

    def drop_connections(self) -> None:
        """Close every open client connection, as a server's idle timeout would."""
        assert self._controller is not None
        loop = self._controller.loop
        done = threading.Event()

        def close_all():
            for protocol in list(self._live):
                if protocol.transport is not None:
                    protocol.transport.close()
            done.set()

        loop.call_soon_threadsafe(close_all)
        done.wait(5)

    # -- for the tests ------------------------------------------------------------------------

    def settings(self, name: str = "sink", **overrides):
        """SmtpServerSettings that point at this sink (trusting the test CA)."""
        from switchboard.outbox.smtp import SmtpServerSettings

        values = dict(name=name, host=self.host, port=self.port, security=self.tls,
                      ca_file=str(self.pki.ca_file) if self.pki else None, timeout=5,
                      from_address="desk@example.org")
        if self.users:
            username, password = next(iter(self.users.items()))
            values.update(username=username, password=password)
        values.update(overrides)
        return SmtpServerSettings(**values)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            if self.users.get(login) == auth_data.password.decode():
                return AuthResult(success=True, auth_data=auth_data)
        self.auth_failures += 1
        return AuthResult(success=False, handled=False)


class _Handler:
    def __init__(self, sink: SmtpSink):
        self.sink = sink

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.sink.faults.mail_reply:
            return self.sink.faults.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.sink.faults.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        faults = self.sink.faults
        if faults.data_delay:
            await asyncio.sleep(faults.data_delay)
        if faults.data_reply:
            return faults.data_reply
        self.sink.messages.append(Received(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(envelope.original_content),
            tls=server.transport.get_extra_info("ssl_object") is not None,
            login=session.auth_data.login.decode()
            if isinstance(session.auth_data, LoginPassword) else None,
        ))
        if faults.drop_after_data:
            server.transport.abort()
        return "250 2.0.0 Message accepted"


class _SinkSMTP(SMTP):
    def __init__(self, sink: SmtpSink, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sink = sink
        self._sink_counted = False

    def connection_made(self, transport):
        super().connection_made(transport)
        if not self._sink_counted:  # STARTTLS calls this again on the same connection
            self._sink_counted = True
            with self._sink._lock:
                self._sink.connections += 1
        self._sink._live.add(self)

    def connection_lost(self, error):
        self._sink._live.discard(self)
        super().connection_lost(error)

    async def smtp_DATA(self, arg):
        faults = self._sink.faults
        if self.envelope is not None and self.envelope.rcpt_tos:
            if faults.data_command_reply:
                await self.push(faults.data_command_reply)
                return
            if faults.drop_in_data:
                await self.push("354 End data with <CR><LF>.<CR><LF>")
                await self._reader.readuntil(b"\r\n")
                self.transport.abort()
                return
        await super().smtp_DATA(arg)


class _SinkController(Controller):
    def __init__(self, sink: SmtpSink, handler, **kwargs):
        self._sink = sink
        super().__init__(handler, **kwargs)

    def factory(self):
        return _SinkSMTP(self._sink, self.handler, **self.SMTP_kwargs)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (nothing will listen there unless started)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class Blackhole:
    """Accepts TCP connections and never says a word: for timeouts."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((host, 0))
        self._socket.listen(16)  # the kernel completes handshakes; nobody ever answers
        self.port = self._socket.getsockname()[1]

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
