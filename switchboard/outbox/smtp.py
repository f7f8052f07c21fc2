"""Hands composed mail to the desk's outgoing SMTP servers and says, per recipient, what happened.

A `Transport` keeps one connection per server open for a whole batch and fails over to
the next server when one cannot be reached; the sender job turns each `SendResult` into
sent / deferred / failed outbox rows.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import smtplib
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

log = logging.getLogger(__name__)

SECURITY_MODES = ("none", "starttls", "tls")


@dataclass(frozen=True)
class SmtpServerSettings:
    """One outgoing server as an admin configured it.

    `security`: "tls" (implicit TLS, usually port 465), "starttls" (usually 587) or
    "none". Certificates are always verified: against the system trust store, or only
    against the CA given as `ca_file` (a path) or `ca_pem` (PEM text) when one is set.
    `from_address` is the envelope sender (MAIL FROM) used with this server when the
    caller gives none; `from_name` is there for the caller's From header.
    """

    name: str
    host: str
    port: int = 587
    security: str = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    timeout: float = 30
    from_address: str | None = None
    helo_name: str | None = None
    ca_pem: str | None = field(default=None, repr=False)
    from_name: str | None = None
    # "smtp", or "graph": a Microsoft 365 mailbox sending through Microsoft Graph (outbox.graph)
    protocol: str = "smtp"
    # Set: sign in with an OAuth2 access token of this grant (switchboard.oauth), not a password.
    oauth_grant_id: int | None = None

    def __post_init__(self) -> None:
        if self.security not in SECURITY_MODES:
            raise ValueError(f"security must be one of {SECURITY_MODES}, not {self.security!r}")
        if not self.host:
            raise ValueError("an SMTP server needs a host")
        if not 0 < int(self.port) < 65536:
            raise ValueError(f"not a TCP port: {self.port!r}")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.ca_file and self.ca_pem:
            raise ValueError("give the CA as a file or as PEM text, not both")
        if self.password and not self.username:
            raise ValueError("a password without a username")
        if self.oauth_grant_id is not None and not self.username:
            raise ValueError("OAuth2 sign-in needs the user name (the mailbox it sends as)")
        if self.username and password_in_clear(self.host, self.security):
            # The password would cross the network in clear text.
            raise ValueError(f"server {self.name!r}: AUTH needs TLS or STARTTLS "
                             "unless the server is on this machine")


class Outcome(StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"  # try again later (4xx, network trouble)
    PERMANENT = "permanent"  # do not retry as is (5xx)


class Stage(StrEnum):
    """Where a send went wrong."""

    CONNECT = "connect"
    TLS = "tls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


# Failures at these stages are the server's, not the message's: try the next server.
SERVER_STAGES = frozenset({Stage.CONNECT, Stage.TLS, Stage.AUTH})

# Answers to MAIL FROM that mean "log in first": a configuration problem, not a bad message.
_AUTH_NEEDED_CODES = frozenset({530, 534, 535, 538})


@dataclass(frozen=True)
class RecipientResult:
    address: str
    outcome: Outcome
    code: int | None = None
    message: str = ""


@dataclass(frozen=True)
class SendResult:
    """What happened to one message.

    `outcome` is SENT once the server accepted the message for at least one recipient;
    then `deferred` (4xx) and `refused` (5xx) name the recipients that did not get it.
    Otherwise `outcome` is TEMPORARY or PERMANENT for the whole message, `stage` says
    where it failed and `code`/`message` carry the server's answer (code None for
    network trouble). `server` is the name of the server that answered, `attempts` what
    went wrong with the servers tried before it.
    """

    outcome: Outcome
    recipients: tuple[RecipientResult, ...]
    server: str | None = None
    stage: Stage | None = None
    code: int | None = None
    message: str = ""
    attempts: tuple[str, ...] = ()

    @property
    def accepted(self) -> list[str]:
        return [r.address for r in self.recipients if r.outcome is Outcome.SENT]

    @property
    def deferred(self) -> list[str]:
        return [r.address for r in self.recipients if r.outcome is Outcome.TEMPORARY]

    @property
    def refused(self) -> list[str]:
        return [r.address for r in self.recipients if r.outcome is Outcome.PERMANENT]

    @property
    def server_failed(self) -> bool:
        """True when no server could be used at all (nothing of the message was sent)."""
        return self.stage in SERVER_STAGES


class _ServerUnusable(Exception):
    def __init__(self, stage: Stage, message: str, code: int | None = None):
        super().__init__(message)
        self.stage, self.message, self.code = stage, message, code


class SmtpSession:
    """One connection to one server, reused for many messages (RSET between them).

    Connects on first use and reconnects transparently when the server has closed the
    connection in between. Not thread-safe: one session per sending thread.
    """

    def __init__(self, settings: SmtpServerSettings, *, local_hostname: str | None = None):
        self.settings = settings
        self.local_hostname = local_hostname or settings.helo_name
        self.connections = 0  # successful connections so far, for logs and tests
        self._smtp: smtplib.SMTP | None = None
        self._needs_reset = False
        self._tls: ssl.SSLContext | None = None

    def __enter__(self) -> SmtpSession:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._smtp is not None

    def open(self) -> None:
        """Connect now (otherwise the first send does). Raises ConnectionError if it cannot."""
        if self._smtp is None:
            try:
                self._connect()
            except _ServerUnusable as failure:
                raise ConnectionError(f"{self.settings.name}: {failure.stage}: {failure.message}")

    def close(self) -> None:
        """Say QUIT and close; never raises."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()

    def send(self, envelope_from: str | None, recipients: Iterable[str],
             message_bytes: bytes) -> SendResult:
        """Send one message; never raises for anything the server or network does."""
        rcpts = list(dict.fromkeys(r.strip() for r in recipients if r and r.strip()))
        if not rcpts:
            raise ValueError("no recipients")
        sender = envelope_from if envelope_from is not None else self.settings.from_address
        if sender is None:
            raise ValueError(f"no envelope sender (server {self.settings.name!r} has no from_address)")
        data = _crlf(message_bytes)
        try:
            self._ready()
        except _ServerUnusable as failure:
            return self._whole(Outcome.TEMPORARY, rcpts, failure.stage, failure.code, failure.message)

        try:
            return self._transaction(sender, rcpts, data)
        except _Dropped as dropped:
            # Possibly delivered already (dropped before the final DATA reply), so this is
            # a retry later, never a failover to the next server right away.
            self._drop()
            message = f"connection lost: {_describe(dropped.__cause__ or dropped)}"
            log.warning("SMTP server %s: %s at %s", self.settings.name, message, dropped.stage)
            return self._whole(Outcome.TEMPORARY, rcpts, dropped.stage, None, message)

    # -- the SMTP dialogue ---------------------------------------------------------------

    def _transaction(self, sender: str, rcpts: list[str], data: bytes) -> SendResult:
        smtp = self._smtp
        assert smtp is not None
        self._needs_reset = True
        mail_options: list[str] = []
        rcpt_options: list[str] = []
        if smtp.has_extn("size"):
            mail_options.append(f"SIZE={len(data)}")
        if not data.isascii() and smtp.has_extn("8bitmime"):
            mail_options.append("BODY=8BITMIME")
        if not all(a.isascii() for a in (sender, *rcpts)):
            if not smtp.has_extn("smtputf8"):
                return self._whole(Outcome.PERMANENT, rcpts, Stage.MAIL, None,
                                   "the server does not accept non-ASCII addresses (no SMTPUTF8)")
            mail_options.append("SMTPUTF8")

        code, reply = _step(Stage.MAIL, smtp.mail, sender, mail_options)
        if code != 250:
            if code in _AUTH_NEEDED_CODES:
                # Not the message's fault: let the failover try another server.
                return self._whole(Outcome.TEMPORARY, rcpts, Stage.AUTH, code, reply)
            return self._refused_whole(rcpts, Stage.MAIL, code, reply)

        results: dict[str, RecipientResult] = {}
        for address in rcpts:
            code, reply = _step(Stage.RCPT, smtp.rcpt, address, rcpt_options)
            if code == 421:  # the server is closing: nobody got anything
                self._drop()
                return self._whole(Outcome.TEMPORARY, rcpts, Stage.RCPT, code, reply)
            results[address] = RecipientResult(address, _classify(code, ok=(250, 251, 252)),
                                               code, reply)
        accepted = [a for a in rcpts if results[a].outcome is Outcome.SENT]
        if not accepted:
            # Worth another try if any refusal was temporary.
            outcome = (Outcome.TEMPORARY
                       if any(r.outcome is Outcome.TEMPORARY for r in results.values())
                       else Outcome.PERMANENT)
            first = next(r for r in results.values() if r.outcome is outcome)
            return SendResult(outcome, tuple(results[a] for a in rcpts), self.settings.name,
                              Stage.RCPT, first.code, first.message)

        try:
            code, reply = _step(Stage.DATA, smtp.data, data)
        except smtplib.SMTPDataError as refused:  # the DATA command itself was refused
            code, reply = refused.smtp_code, _text(refused.smtp_error)
        outcome = _classify(code, ok=(250,))
        if code == 421:
            self._drop()
        for address in accepted:
            results[address] = RecipientResult(address, outcome, code, reply)
        final = tuple(results[a] for a in rcpts)
        if outcome is Outcome.SENT:
            return SendResult(Outcome.SENT, final, self.settings.name, None, code, reply)
        return SendResult(outcome, final, self.settings.name, Stage.DATA, code, reply)

    def _ready(self) -> None:
        if self._smtp is not None and self._needs_reset:
            try:
                code, _ = self._smtp.rset()
                if code == 250:
                    self._needs_reset = False
                    return
            except (smtplib.SMTPException, OSError):
                pass
            # The server went away (idle timeout, restart): start over on a new connection.
            log.info("SMTP server %s: connection closed by the server, reconnecting",
                     self.settings.name)
            self._drop()
        if self._smtp is None:
            self._connect()

    def _connect(self) -> None:
        s = self.settings
        stage = Stage.CONNECT
        smtp: smtplib.SMTP | None = None
        try:
            if s.security == "tls":
                # A failed handshake surfaces as ssl.SSLError, reported as the TLS stage below.
                smtp = smtplib.SMTP_SSL(s.host, s.port, local_hostname=self.local_hostname,
                                        timeout=s.timeout, context=self._tls_context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, local_hostname=self.local_hostname,
                                    timeout=s.timeout)
            smtp.ehlo_or_helo_if_needed()
            if s.security == "starttls":
                stage = Stage.TLS
                if not smtp.has_extn("starttls"):
                    raise _ServerUnusable(stage, "the server does not offer STARTTLS")
                code, reply = smtp.starttls(context=self._tls_context())
                if code != 220:
                    raise _ServerUnusable(stage, _text(reply), code)
                smtp.ehlo()
            if s.username:
                stage = Stage.AUTH
                if not smtp.has_extn("auth"):
                    raise _ServerUnusable(stage, "the server does not offer AUTH")
                if s.oauth_grant_id is not None:
                    self._sign_in_with_token(smtp)
                else:
                    smtp.login(s.username, s.password or "")
        except _ServerUnusable as failure:
            self._give_up(smtp, failure)
        except ssl.SSLError as error:
            self._give_up(smtp, _ServerUnusable(Stage.TLS, _describe(error)))
        except (smtplib.SMTPConnectError, smtplib.SMTPHeloError,
                smtplib.SMTPAuthenticationError) as error:
            self._give_up(smtp, _ServerUnusable(stage, _text(error.smtp_error), error.smtp_code))
        except (smtplib.SMTPException, OSError) as error:
            self._give_up(smtp, _ServerUnusable(stage, _describe(error)))
        self._smtp = smtp
        self._needs_reset = False
        self.connections += 1
        log.info("SMTP server %s: connected to %s:%s (%s%s)", s.name, s.host, s.port,
                 s.security, ", authenticated" if s.username else "")

    def _sign_in_with_token(self, smtp: smtplib.SMTP) -> None:
        """AUTH XOAUTH2 (or OAUTHBEARER) with the token as the initial response (RFC 4954)."""
        from switchboard.errors import DeskError
        from switchboard.oauth import sasl
        from switchboard.oauth.signin import Refusal, sign_in

        s = self.settings
        advertised = (smtp.esmtp_features.get("auth") or "").split()
        mechanism = sasl.choose(advertised)
        if mechanism is None:
            raise _ServerUnusable(Stage.AUTH, "the server offers no OAuth2 login (XOAUTH2 or OAUTHBEARER); "
                                              f"it offers {' '.join(advertised) or 'none'}")

        def attempt(token: str) -> Refusal | None:
            payload = sasl.initial_response(mechanism, s.username, token, s.host, s.port).decode()
            try:
                # A server that answers with a challenge (its error, as Google's does) gets "" back.
                smtp.auth(mechanism, lambda challenge=None: payload if challenge is None else "",
                          initial_response_ok=True)
            except smtplib.SMTPAuthenticationError as error:
                return Refusal(f"{error.smtp_code} {_text(error.smtp_error)}", error.smtp_code // 100 == 4)
            return None

        try:
            sign_in(s.oauth_grant_id, s.username, f"{s.host}:{s.port}", attempt)
        except DeskError as error:  # needs reconnecting, provider down, refused: this server is unusable now
            raise _ServerUnusable(Stage.AUTH, error.message) from None

    def _give_up(self, smtp: smtplib.SMTP | None, failure: _ServerUnusable):
        if smtp is not None:
            smtp.close()
        # The password is never part of these messages: smtplib's errors carry only the
        # server's reply, and we log the user name at most.
        log.warning("SMTP server %s (%s:%s): %s failed: %s", self.settings.name,
                    self.settings.host, self.settings.port, failure.stage, failure.message)
        raise failure

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            # create_default_context loads only the given CA when there is one, otherwise
            # the system trust store; hostname checking is on either way.
            context = ssl.create_default_context(cafile=self.settings.ca_file,
                                                 cadata=self.settings.ca_pem or None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._tls = context
        return self._tls

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def _whole(self, outcome: Outcome, rcpts: list[str], stage: Stage, code: int | None,
               message: str) -> SendResult:
        return SendResult(outcome, tuple(RecipientResult(a, outcome, code, message) for a in rcpts),
                          self.settings.name, stage, code, message)

    def _refused_whole(self, rcpts: list[str], stage: Stage, code: int, reply: str) -> SendResult:
        if code == 421:
            self._drop()
        return self._whole(_classify(code, ok=()), rcpts, stage, code, reply)


class Transport:
    """The outgoing servers for one batch of mail: tries them in order, keeps connections open.

    A server that cannot be reached (refused, timed out, TLS or AUTH failed) is skipped for
    `retry_down_after` seconds, so a dead first server costs one timeout per batch, not one
    per message. Use as a context manager, or call close() at the end.
    """

    def __init__(self, servers: Sequence[SmtpServerSettings], *, retry_down_after: float = 300,
                 local_hostname: str | None = None):
        if not servers:
            raise ValueError("no outgoing SMTP server configured")
        names = [s.name for s in servers]
        if len(set(names)) != len(names):
            raise ValueError("outgoing server names must be unique")
        self.servers = list(servers)
        self.retry_down_after = retry_down_after
        self.sessions = {s.name: session_for(s, local_hostname) for s in servers}
        self._down_until: dict[str, float] = {}
        self._down_reason: dict[str, str] = {}

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()

    def send(self, envelope_from: str | None, recipients: Iterable[str],
             message_bytes: bytes) -> SendResult:
        rcpts = list(recipients)
        attempts: list[str] = []
        last: SendResult | None = None
        now = time.monotonic()
        for server in self.servers:
            if self._down_until.get(server.name, 0) > now:
                attempts.append(f"{server.name}: skipped, {self._down_reason[server.name]}")
                continue
            result = self.sessions[server.name].send(envelope_from, rcpts, message_bytes)
            if not result.server_failed:
                self._down_until.pop(server.name, None)
                return replace(result, attempts=tuple(attempts))
            reason = f"{result.stage} failed: {result.message}"
            attempts.append(f"{server.name}: {reason}")
            self._down_until[server.name] = time.monotonic() + self.retry_down_after
            self._down_reason[server.name] = reason
            last = result
        summary = "no outgoing server could be used (" + "; ".join(attempts) + ")"
        stage = last.stage if last else Stage.CONNECT
        code = last.code if last else None
        return SendResult(Outcome.TEMPORARY,
                          tuple(RecipientResult(a, Outcome.TEMPORARY, code, summary)
                                for a in dict.fromkeys(r.strip() for r in rcpts if r and r.strip())),
                          None, stage, code, summary, tuple(attempts))


def session_for(settings: SmtpServerSettings, local_hostname: str | None = None):
    """The server's own kind of session: SMTP, or Microsoft Graph's sendMail."""
    if settings.protocol == "graph":
        from switchboard.outbox.graph import GraphSession  # it builds on this module

        return GraphSession(settings)
    return SmtpSession(settings, local_hostname=local_hostname)


def send_with_failover(servers: Sequence[SmtpServerSettings], envelope_from: str | None,
                       recipients: Iterable[str], message_bytes: bytes) -> SendResult:
    """Send one message through the first server that works (one-off; batches use Transport)."""
    with Transport(servers) as transport:
        return transport.send(envelope_from, recipients, message_bytes)


# -- helpers ---------------------------------------------------------------------------------

class _Dropped(Exception):
    def __init__(self, stage: Stage):
        super().__init__(stage)
        self.stage = stage


def _step(stage: Stage, command, *args) -> tuple[int, str]:
    try:
        code, reply = command(*args)
    except smtplib.SMTPDataError:
        raise
    except (smtplib.SMTPServerDisconnected, OSError) as error:
        raise _Dropped(stage) from error
    return code, _text(reply)


def _classify(code: int, *, ok: tuple[int, ...]) -> Outcome:
    if code in ok:
        return Outcome.SENT
    if 500 <= code <= 599:
        return Outcome.PERMANENT
    return Outcome.TEMPORARY  # 4xx, and anything unexpected, is worth another try


def _text(reply) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return " ".join(str(reply).split())


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if not isinstance(error, smtplib.SMTPException) else text


_BARE_LF = re.compile(rb"(?<!\r)\n")


def _crlf(data: bytes) -> bytes:
    # SMTP wants CRLF everywhere; a bare LF can be refused or mangled by some servers.
    return _BARE_LF.sub(b"\r\n", bytes(data))


def password_in_clear(host: str, security: str) -> bool:
    """Whether a password given to this server would cross the network in clear
    text: no TLS, and the server not on this machine. The one rule for every
    server the desk logs in to (SMTP here, IMAP and POP3 in inbound.accounts)."""
    return security == "none" and not _is_loopback(host)


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
