"""Configuring the outgoing SMTP servers mail leaves through. The CLI (`mail servers`)
and the admin pages call these; they validate, flush, and leave the commit to the caller.
Passwords are stored encrypted (switchboard.secrets) and only decrypted to send."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import sqlalchemy as sa

from switchboard import secrets
from switchboard.db import db, utcnow
from switchboard.errors import DeskError, InvalidInput, NotFound
from switchboard.graph import GRAPH_HOST, GRAPH_PORT
from switchboard.outbox.models import OutgoingServer
from switchboard.outbox.smtp import SECURITY_MODES, SendResult, SmtpServerSettings, session_for
from switchboard.permissions import require

DEFAULT_PORTS = {"tls": 465, "starttls": 587, "none": 25}
# smtp: an SMTP server; graph: a Microsoft 365 mailbox sending through Graph's sendMail.
PROTOCOLS = ("smtp", "graph")


def find_server(name: str) -> OutgoingServer | None:
    return db.session.scalar(sa.select(OutgoingServer).where(OutgoingServer.name == (name or "").strip()))


def get_server(name: str) -> OutgoingServer:
    server = find_server(name)
    if server is None:
        raise NotFound(f"No outgoing server named {name!r}.")
    return server


def list_servers() -> list[OutgoingServer]:
    """All servers, in the order the sender tries them."""
    return list(db.session.scalars(sa.select(OutgoingServer).order_by(
        OutgoingServer.priority, OutgoingServer.id)))


def add_server(name: str, host: str, *, from_address: str, port: int | None = None,
               security: str | None = None, username: str | None = None,
               password: str | None = None, from_name: str | None = None, priority: int = 10,
               trusted_ca_pem: str | None = None, timeout_seconds: int = 30, protocol: str = "smtp",
               actor=None, oauth_grant=None) -> OutgoingServer:
    """Adds a server. `actor`, when given (the admin pages), must be an admin; the
    command line is trusted."""
    if actor is not None:
        require(actor, "admin")
    if protocol not in PROTOCOLS:
        raise InvalidInput(f"The protocol is one of: {', '.join(PROTOCOLS)}.", field="protocol")
    if protocol == "graph":
        host, port, security = host or GRAPH_HOST, port or GRAPH_PORT, security or "tls"
        if security != "tls":
            raise InvalidInput("Microsoft Graph is reached over HTTPS only: security tls.", field="security")
        if not (username or "").strip():
            raise InvalidInput("Give the mailbox that sends: its user principal name or user id.",
                               field="username")
        if password or oauth_grant is None:
            raise InvalidInput("A Microsoft Graph server signs in with OAuth2 only: give its grant "
                               "(--oauth2-provider microsoft ...), no password.", field="oauth_grant")
    security = security or "starttls"
    fields = _checked(None, bool(password), name=name, host=host, port=port, security=security,
                      username=username, from_address=from_address, from_name=from_name,
                      priority=priority, trusted_ca_pem=trusted_ca_pem,
                      timeout_seconds=timeout_seconds)
    fields["protocol"] = protocol
    server = OutgoingServer(password_encrypted=secrets.encrypt(password), active=True,
                            created_at=utcnow(), **fields)
    if oauth_grant is not None:  # switchboard.oauth: sign in with tokens instead of a password
        server.oauth_grant_id = oauth_grant.id
    db.session.add(server)
    db.session.flush()
    return server


# What update_server may change (the password has its own argument).
EDITABLE = ("name", "host", "port", "security", "username", "from_address", "from_name",
            "priority", "trusted_ca_pem", "timeout_seconds")


def update_server(server: OutgoingServer, *, actor=None, password: str | None = None,
                  **changes) -> OutgoingServer:
    """Changes the given settings, checked as add_server checks them. `password=None`
    keeps the stored one, `password=""` clears it; `port=None` means the security's
    default port."""
    if actor is not None:
        require(actor, "admin")
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise InvalidInput(f"Unknown server setting: {', '.join(unknown)}.")
    values = {field: getattr(server, field) for field in EDITABLE}
    values.update(changes)
    has_password = bool(password) if password is not None else bool(server.password_encrypted)
    for field, value in _checked(server, has_password, **values).items():
        setattr(server, field, value)
    if password is not None:
        server.password_encrypted = secrets.encrypt(password)
    db.session.flush()
    return server


def _checked(current: OutgoingServer | None, has_password: bool, *, name, host, port, security,
             username, from_address, from_name, priority, trusted_ca_pem,
             timeout_seconds) -> dict:
    """The server's columns, cleaned, or InvalidInput naming the field to fix."""
    from switchboard.people.services import normalize_email

    name = " ".join((name or "").split())
    if not name or len(name) > 80:
        raise InvalidInput("A server needs a name (at most 80 characters).", field="name")
    other = find_server(name)
    if other is not None and other is not current:
        raise InvalidInput(f"There is an outgoing server named {name!r} already.", field="name")
    security = (security or "").strip().lower()
    if security not in SECURITY_MODES:
        raise InvalidInput(f"Security must be one of: {', '.join(SECURITY_MODES)}.", field="security")
    host = (host or "").strip()
    if not host or any(c.isspace() for c in host):
        raise InvalidInput("A server needs a host name or address.", field="host")
    port = DEFAULT_PORTS[security] if port is None else port
    if not 0 < int(port) < 65536:
        raise InvalidInput(f"Not a TCP port: {port}.", field="port")
    try:
        from_address = normalize_email(from_address)
    except InvalidInput:
        raise InvalidInput(f"Not a valid From address: {str(from_address)[:80]!r}.",
                           field="from_address") from None
    username = (username or "").strip() or None
    if has_password and not username:
        raise InvalidInput("A password needs a user name.", field="username")
    if not 1 <= int(timeout_seconds) <= 600:
        raise InvalidInput("The timeout is 1 to 600 seconds.", field="timeout_seconds")
    pem = check_ca_pem(trusted_ca_pem)
    try:
        # The same rules the sender applies (e.g. no AUTH in clear text over the network).
        SmtpServerSettings(name=name, host=host, port=int(port), security=security,
                           username=username, password="set" if has_password else None,
                           ca_pem=pem, from_address=from_address, timeout=timeout_seconds)
    except ValueError as error:
        raise InvalidInput(str(error), field="security") from None
    return dict(name=name, host=host, port=int(port), security=security, username=username,
                trusted_ca_pem=pem, from_address=from_address,
                from_name=" ".join((from_name or "").split()) or None, priority=int(priority),
                timeout_seconds=int(timeout_seconds))


def remove_server(name: str, *, actor=None) -> None:
    if actor is not None:
        require(actor, "admin")
    db.session.delete(get_server(name))
    db.session.flush()


def set_server_active(name: str, active: bool, *, actor=None) -> OutgoingServer:
    if actor is not None:
        require(actor, "admin")
    server = get_server(name)
    server.active = bool(active)
    db.session.flush()
    return server


def check_ca_pem(pem: str | None) -> str | None:
    """The PEM must load as trusted certificates, or TLS would fail later with a vaguer error."""
    if pem is None or not pem.strip():
        return None
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        raise InvalidInput(f"The trusted CA is not a PEM certificate ({exc}).",
                           field="trusted_ca_pem") from None
    return pem.strip() + "\n"


@dataclass(frozen=True)
class UsableServers:
    settings: list[SmtpServerSettings]
    problems: list[str]  # servers left out, and why (an unreadable password...)


def usable_servers() -> UsableServers:
    """The active servers as the sender uses them, by priority, passwords decrypted."""
    settings, problems = [], []
    rows = db.session.scalars(sa.select(OutgoingServer).where(OutgoingServer.active).order_by(
        OutgoingServer.priority, OutgoingServer.id))
    for row in rows:
        try:
            settings.append(server_settings(row))
        except (DeskError, ValueError) as error:
            problems.append(f"{row.name}: {getattr(error, 'message', error)}")
    return UsableServers(settings, problems)


def server_settings(row: OutgoingServer) -> SmtpServerSettings:
    """One server as the SMTP code uses it, password decrypted (InvalidInput when the
    stored password cannot be read with this key)."""
    return SmtpServerSettings(
        name=row.name, host=row.host, port=row.port, security=row.security,
        username=row.username, password=secrets.decrypt(row.password_encrypted),
        ca_pem=row.trusted_ca_pem, timeout=row.timeout_seconds,
        from_address=row.from_address, from_name=row.from_name, oauth_grant_id=row.oauth_grant_id,
        protocol=row.protocol or "smtp")


def send_test_mail(server: OutgoingServer, to: str, *, actor=None) -> SendResult:
    """Sends a short test mail to `to` through this server only (active or not), at once,
    not through the outbox, and returns what the server answered: the admin sees at once
    whether the settings work. Never raises for what the server or network does."""
    if actor is not None:
        require(actor, "admin")
    from flask import current_app

    from switchboard.outbox.compose import compose_message, message_to_bytes, new_message_id
    from switchboard.outbox.queue import mail_domain
    from switchboard.people.services import normalize_email

    try:
        to = normalize_email(to)
    except InvalidInput:
        raise InvalidInput(f"Not a valid address: {str(to or '').strip()[:80]!r}.", field="to") from None
    desk = current_app.config.get("DESK_NAME") or "Switchboard"
    who = f" by {actor.display_name}" if actor is not None else ""
    message = compose_message(
        from_addr=server.from_address, from_name=server.from_name or desk, to=[to],
        subject=f"Test mail from {desk} ({server.name})",
        text=(f"This is a test mail from {desk}, sent{who} through the outgoing server "
              f"{server.name} ({server.host}:{server.port}, {server.security}).\n\n"
              "If you can read it, the desk can send mail through this server.\n"),
        message_id=new_message_id(mail_domain()), automatic=True, origin=mail_domain())
    with session_for(server_settings(server)) as session:
        return session.send(server.from_address, [to], message_to_bytes(message))
