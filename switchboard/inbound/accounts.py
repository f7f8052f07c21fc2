"""Configuring incoming accounts: the mailboxes the desk polls and the
addresses an MTA delivers to it over LMTP. The CLI (`mail accounts`) and the
admin pages call these same functions; they validate, flush, and leave the
commit to the caller."""

import ssl

import sqlalchemy as sa

from switchboard.calls.models import Priority
from switchboard.db import db
from switchboard.errors import InvalidInput, NotFound
from switchboard.graph import GRAPH_HOST, GRAPH_PORT
from switchboard.inbound.models import (
    AfterProcessing,
    IncomingAccount,
    IncomingAddress,
    Protocol,
    Security,
    UnknownSenders,
)
from switchboard.outbox.smtp import password_in_clear
from switchboard.people.models import Group
from switchboard.people.services import normalize_email
from switchboard.permissions import require
from switchboard import secrets

DEFAULT_PORTS = {
    (Protocol.IMAP, Security.TLS): 993,
    (Protocol.IMAP, Security.STARTTLS): 143,
    (Protocol.IMAP, Security.NONE): 143,
    (Protocol.POP3, Security.TLS): 995,
    (Protocol.POP3, Security.STARTTLS): 110,
    (Protocol.POP3, Security.NONE): 110,
    (Protocol.GRAPH, Security.TLS): GRAPH_PORT,
}

# Fields update_account accepts, beyond those with their own checks below.
_LIMITS = {
    "poll_interval_seconds": (10, 86400),
    "max_messages_per_session": (1, 100000),
    "batch_size": (1, 5000),
    "timeout_seconds": (1, 600),
}


def _choice(enum_cls, value, field: str):
    if value is None or isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise InvalidInput(f"{field.replace('_', ' ').capitalize()} must be one of: {allowed}.", field=field) from None


def normalize_incoming_address(address: str) -> str:
    """A full address (help@desk.example) or a catch-all for a domain (@desk.example)."""
    text = (address or "").strip().lower()
    if text.startswith("@"):
        try:
            normalize_email("postmaster" + text)  # the same syntax rules as any address
        except InvalidInput:
            raise InvalidInput(f"Not a valid catch-all domain: {address[:80]!r} (write it as @desk.example).",
                               field="addresses") from None
        return text
    return normalize_email(text)


def check_ca_pem(pem: str | None) -> str | None:
    """The PEM must load as trusted certificates, or TLS would fail later with a vaguer error."""
    if pem is None or not pem.strip():
        return None
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        raise InvalidInput(f"The trusted CA is not a PEM certificate ({exc}).", field="trusted_ca_pem") from None
    return pem.strip() + "\n"


def find_account(name: str) -> IncomingAccount | None:
    return db.session.scalar(sa.select(IncomingAccount).where(IncomingAccount.name == (name or "").strip()))


def get_account(name: str) -> IncomingAccount:
    account = find_account(name)
    if account is None:
        raise NotFound(f"No incoming account named {name!r}.")
    return account


def list_accounts() -> list[IncomingAccount]:
    return list(db.session.scalars(sa.select(IncomingAccount).order_by(IncomingAccount.name)))


def create_account(
    name: str,
    protocol,
    *,
    actor=None,
    addresses=(),
    password: str | None = None,
    **settings,
) -> IncomingAccount:
    """Adds an account. `actor`, when given (the admin pages), must be an
    admin; the command line is trusted. Settings are IncomingAccount fields;
    `default_group` and `default_priority` may be given by name / number,
    `default_analyst` as a Person (an active analyst)."""
    if actor is not None:
        require(actor, "admin")
    protocol = _choice(Protocol, protocol, "protocol")
    if protocol is None:
        raise InvalidInput("Choose a protocol: lmtp, imap, pop3 or graph.", field="protocol")
    account = IncomingAccount(name="", protocol=protocol, active=True, folder="INBOX", processed_folder="Processed")
    if protocol is Protocol.POP3:
        # POP3 has no folders or flags: delete, or keep on the server ("seen"). None is
        # "not given" too (the command line passes it when --after is left out).
        if settings.get("after_processing") is None:
            settings["after_processing"] = AfterProcessing.DELETE
    # Validated before it joins the session, so a refused account is never half-added.
    _apply(account, name=name, addresses=addresses, password=password, **settings)
    db.session.add(account)
    db.session.flush()
    return account


def update_account(account: IncomingAccount, *, actor=None, **changes) -> IncomingAccount:
    """Changes the given settings only; `password=None` keeps the stored one,
    `password=""` clears it. `addresses`, when given, replaces the list."""
    if actor is not None:
        require(actor, "admin")
    _apply(account, **changes)
    db.session.flush()
    return account


def deactivate_account(account: IncomingAccount, *, actor=None) -> None:
    """Stops polling it and refuses its LMTP addresses; its mail stays."""
    if actor is not None:
        require(actor, "admin")
    account.active = False
    db.session.flush()


def reactivate_account(account: IncomingAccount, *, actor=None) -> None:
    if actor is not None:
        require(actor, "admin")
    account.active = True
    db.session.flush()


def delete_account(account: IncomingAccount, *, actor=None) -> None:
    """Deletes the account and its addresses and receipts; messages that came
    through it stay, without their account."""
    if actor is not None:
        require(actor, "admin")
    db.session.delete(account)
    db.session.flush()


def account_state(account: IncomingAccount) -> str:
    """One word for lists and monitoring: inactive, needs-reconnecting, failing, ok, waiting."""
    from switchboard.oauth.models import GrantState

    if not account.active:
        return "inactive"
    if account.protocol is Protocol.LMTP:
        return "ok"
    if account.oauth_grant is not None and account.oauth_grant.state is GrantState.NEEDS_RECONNECTING:
        return "needs-reconnecting"  # no login is tried until an admin reconnects it
    if account.last_error_at and (not account.last_success_at or account.last_error_at >= account.last_success_at):
        return "failing"
    if account.last_success_at:
        return "ok"
    return "waiting"  # never polled yet


def _apply(account: IncomingAccount, **values) -> None:
    if "name" in values:
        name = " ".join((values.pop("name") or "").split())
        if not name:
            raise InvalidInput("Give the account a name.", field="name")
        if len(name) > 80:
            raise InvalidInput("The name is longer than 80 characters.", field="name")
        other = find_account(name)
        if other is not None and other is not account:
            raise InvalidInput(f"An account named {name!r} exists already.", field="name")
        account.name = name
    if "protocol" in values:
        account.protocol = _choice(Protocol, values.pop("protocol"), "protocol")
    for field, cls in (("security", Security), ("after_processing", AfterProcessing),
                       ("unknown_senders", UnknownSenders)):
        if field in values and values[field] is not None:
            setattr(account, field, _choice(cls, values.pop(field), field))
        else:
            values.pop(field, None)
    for field in ("host", "username", "folder", "processed_folder"):
        if field in values:
            value = values.pop(field)
            value = value.strip() if isinstance(value, str) else value
            if field in ("folder", "processed_folder") and not value:
                continue  # keep the default
            if field == "folder" and value != account.folder:
                account.graph_delta_link = None  # the link is the old folder's
            setattr(account, field, value or None)
    if "port" in values:
        port = values.pop("port")
        if port is not None and not (0 < int(port) < 65536):
            raise InvalidInput("The port must be between 1 and 65535.", field="port")
        account.port = int(port) if port else None
    if "password" in values:
        password = values.pop("password")
        if password is not None:
            account.password_encrypted = secrets.encrypt(password)
    if "oauth_grant" in values:  # switchboard.oauth: sign in with tokens instead of the password
        account.oauth_grant = values.pop("oauth_grant")
    if "trusted_ca_pem" in values:
        account.trusted_ca_pem = check_ca_pem(values.pop("trusted_ca_pem"))
    if "default_group" in values:
        group = values.pop("default_group")
        if isinstance(group, str):
            found = db.session.scalar(sa.select(Group).where(Group.name == group.strip()))
            if found is None:
                raise InvalidInput(f"No group named {group!r}.", field="default_group")
            group = found
        account.default_group_id = group.id if group is not None else None
    if "default_analyst" in values:
        analyst = values.pop("default_analyst")
        if analyst is not None and not (analyst.is_analyst and analyst.active):
            raise InvalidInput(f"{analyst.display_name} is not an active analyst.", field="default_analyst")
        account.default_analyst_id = analyst.id if analyst is not None else None
    if "default_priority" in values:
        priority = values.pop("default_priority")
        if priority is not None and db.session.get(Priority, int(priority)) is None:
            raise InvalidInput(f"No priority {priority}.", field="default_priority")
        account.default_priority_id = int(priority) if priority is not None else None
    for field, (low, high) in _LIMITS.items():
        if field in values:
            value = values.pop(field)
            if value is None:
                continue
            if not low <= int(value) <= high:
                raise InvalidInput(f"{field.replace('_', ' ').capitalize()} must be between {low} and {high}.",
                                   field=field)
            setattr(account, field, int(value))
    for field in ("allow_new_calls", "use_linked_analyst", "trusted_submission", "active"):
        if field in values:
            setattr(account, field, bool(values.pop(field)))
    if "addresses" in values:
        _set_addresses(account, values.pop("addresses") or ())
    if values:
        raise InvalidInput(f"Unknown account setting: {', '.join(sorted(values))}.")
    _check_complete(account)


def _set_addresses(account: IncomingAccount, addresses) -> None:
    wanted = []
    for address in addresses:
        address = normalize_incoming_address(address)
        if address not in wanted:
            wanted.append(address)
    if wanted:
        taken = db.session.execute(
            sa.select(IncomingAddress.address, IncomingAccount.name)
            .join(IncomingAccount)
            .where(IncomingAddress.address.in_(wanted), IncomingAddress.account_id != (account.id or -1))
        ).first()
        if taken:
            raise InvalidInput(f"{taken[0]} already belongs to the account {taken[1]!r}.", field="addresses")
    keep = [row for row in account.addresses if row.address in wanted]
    have = {row.address for row in keep}
    account.addresses = keep + [IncomingAddress(address=a) for a in wanted if a not in have]


def _check_complete(account: IncomingAccount) -> None:
    if account.protocol is Protocol.LMTP:
        if not account.addresses:
            raise InvalidInput("An LMTP account needs at least one address (or @domain) it receives for.",
                               field="addresses")
        return
    if account.protocol is Protocol.GRAPH:
        _check_graph(account)
        return
    if not account.host:
        raise InvalidInput(f"A {account.protocol.value.upper()} account needs a host.", field="host")
    if not account.username:
        raise InvalidInput("Give the mailbox user name.", field="username")
    if not account.password_encrypted and account.oauth_grant is None:
        raise InvalidInput("Give the mailbox password.", field="password")
    if account.security is None:
        account.security = Security.TLS
    if not account.port:
        account.port = DEFAULT_PORTS[(account.protocol, account.security)]
    if password_in_clear(account.host, account.security.value):
        raise InvalidInput("Security none would send the mailbox password over the network in clear "
                           "text: use tls or starttls (none is only for a server on this machine).",
                           field="security")
    if account.protocol is Protocol.POP3 and account.after_processing is AfterProcessing.MOVE:
        raise InvalidInput("POP3 has no folders: after processing, delete the message or keep it (seen).",
                           field="after_processing")
    if account.after_processing is None:
        account.after_processing = AfterProcessing.MOVE
    if account.after_processing is AfterProcessing.MOVE and account.processed_folder == account.folder:
        raise InvalidInput("The processed folder must differ from the folder that is read.", field="processed_folder")


def _check_graph(account: IncomingAccount) -> None:
    """A Microsoft 365 mailbox read through Microsoft Graph: HTTPS to Graph (graph.microsoft.com
    unless a national cloud's host is given), the mailbox as `username`, OAuth2 only."""
    account.host = account.host or GRAPH_HOST
    if account.security not in (None, Security.TLS):
        raise InvalidInput("Microsoft Graph is reached over HTTPS only: security tls.", field="security")
    account.security = Security.TLS
    account.port = account.port or GRAPH_PORT
    if not account.username:
        raise InvalidInput("Give the mailbox: its user principal name (help@contoso.com) or user id.",
                           field="username")
    if account.oauth_grant is None and account.oauth_grant_id is None:
        raise InvalidInput("A Microsoft Graph account signs in with OAuth2 only: give its grant "
                           "(--oauth2-provider microsoft --oauth2-tenant ... --oauth2-client-id ...).",
                           field="oauth_grant")
    if account.after_processing is None:
        account.after_processing = AfterProcessing.MOVE
    if account.after_processing is AfterProcessing.MOVE and \
            account.processed_folder.strip("/").lower() == account.folder.strip("/").lower():
        raise InvalidInput("The processed folder must differ from the folder that is read.", field="processed_folder")
