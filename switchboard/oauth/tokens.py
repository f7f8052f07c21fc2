"""Access tokens that keep working: cached until shortly before they expire, refreshed by
one process at a time (a provider that rotates refresh tokens accepts each only once), the
rotated refresh token stored at once, and a refused grant marked "needs reconnecting" and
never asked again until an admin reconnects it: providers lock accounts that fail to log
in over and over. A provider that cannot be reached is asked again after a growing pause.

Grant changes are committed in a session of their own, whatever the caller's transaction
does next: a rotated refresh token must survive the poll that caused the refresh failing."""

from __future__ import annotations

import fcntl
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from switchboard import secrets
from switchboard.db import db, lock_path, utcnow
from switchboard.errors import DeskError
from switchboard.oauth import providers
from switchboard.oauth.models import Flow, GrantState, OAuthGrant

log = logging.getLogger(__name__)

# A token this close to its expiry is not used: a poll or an SMTP session takes time.
EARLY = timedelta(minutes=5)
# Pauses after the provider could not be reached: 1 min, 5 min, 15 min, then hourly.
BACKOFF = (60, 300, 900, 3600)


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    fresh: bool  # just issued: a server refusing it is not cured by asking again


class NeedsReconnecting(DeskError):
    """The grant was refused; nothing is tried until an admin reconnects it."""


class TokenUnavailable(DeskError):
    """No token now (the provider unreachable, or waiting out a pause); the next poll retries."""


def access_token(grant_id: int, *, mailbox: str | None = None, refused: str | None = None) -> Token:
    """A usable access token for the grant. `refused`: the server just refused the cached
    token (revoked early): it is dropped and a new one asked for, once; if the provider
    hands out a token the server refuses again, the caller says so with `mark_refused`."""
    with _one_at_a_time(grant_id) as session:
        grant = _locked(session, grant_id)
        if grant.state is GrantState.NEEDS_RECONNECTING:
            raise NeedsReconnecting(_reconnect_message(grant))
        now = utcnow()
        if refused is None and grant.access_token_encrypted and grant.access_token_expires_at \
                and grant.access_token_expires_at - EARLY > now:
            return Token(secrets.decrypt(grant.access_token_encrypted), fresh=False)
        if grant.retry_after is not None and grant.retry_after > now:
            raise TokenUnavailable(f"the OAuth2 provider failed ({grant.last_error}); "
                                   f"next try after {grant.retry_after:%H:%M:%S} UTC")
        wanted = providers.Secrets(
            client_secret=secrets.decrypt(grant.client_secret_encrypted),
            refresh_token=secrets.decrypt(grant.refresh_token_encrypted),
            mailbox=mailbox, ca_file=current_app.config.get("OAUTH2_CA_FILE"))
        try:
            tokens = providers.request_tokens(grant, wanted)
        except providers.GrantRefused as exc:
            _refuse(grant, f"{exc.error}: {exc.description}" if exc.description else exc.error, now)
            session.commit()
            raise NeedsReconnecting(_reconnect_message(grant)) from None
        except providers.ProviderUnavailable as exc:
            grant.failures += 1
            grant.last_error, grant.last_error_at = str(exc)[:1000], now
            grant.retry_after = now + timedelta(seconds=BACKOFF[min(grant.failures, len(BACKOFF)) - 1])
            session.commit()
            raise TokenUnavailable(f"the OAuth2 provider failed: {exc}") from None
        grant.access_token_encrypted = secrets.encrypt(tokens.access_token)
        grant.access_token_expires_at = now + timedelta(seconds=max(0.0, tokens.expires_in))
        if tokens.refresh_token and grant.flow is Flow.DELEGATED:
            grant.refresh_token_encrypted = secrets.encrypt(tokens.refresh_token)  # rotated: keep the new one
        grant.state = GrantState.CONNECTED
        grant.failures, grant.retry_after, grant.refreshed_at = 0, None, now
        session.commit()
        log.info("OAuth2 grant %s: new access token, valid for %d s", grant_id, tokens.expires_in)
        return Token(tokens.access_token, fresh=True)


def mark_refused(grant_id: int, server_said: str) -> None:
    """A server refused a token the provider had just issued: the grant lacks a permission
    or was revoked. Marked so no login is tried again until an admin acts."""
    with _one_at_a_time(grant_id) as session:
        grant = _locked(session, grant_id)
        _refuse(grant, f"the mail server refused a new token: {server_said}"[:1000], utcnow())
        session.commit()


def reconnected(grant: OAuthGrant, *, refresh_token: str | None = None) -> None:
    """An admin connected (or reconnected) the grant; in the caller's transaction."""
    if refresh_token is not None:
        grant.refresh_token_encrypted = secrets.encrypt(refresh_token)
    grant.access_token_encrypted = grant.access_token_expires_at = None
    grant.state = GrantState.CONNECTED if (grant.flow is Flow.APP or grant.refresh_token_encrypted) \
        else GrantState.NOT_CONNECTED
    grant.failures, grant.retry_after, grant.reconnect_notice_at = 0, None, None
    grant.last_error = grant.last_error_at = None


def _refuse(grant: OAuthGrant, error: str, now) -> None:
    grant.state = GrantState.NEEDS_RECONNECTING
    grant.last_error, grant.last_error_at = error, now
    grant.access_token_encrypted = grant.access_token_expires_at = None
    log.warning("OAuth2 grant %s needs reconnecting: %s", grant.id, error)


def _reconnect_message(grant: OAuthGrant) -> str:
    return f"needs reconnecting: the OAuth2 provider refused the grant ({grant.last_error})"


def _locked(session: Session, grant_id: int) -> OAuthGrant:
    query = sa.select(OAuthGrant).where(OAuthGrant.id == grant_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    grant = session.scalars(query).one_or_none()
    if grant is None:
        raise DeskError(f"OAuth2 grant {grant_id} does not exist")
    return grant


@contextmanager
def _one_at_a_time(grant_id: int):
    """A session of its own, and this grant's refresh to ourselves: on PostgreSQL the row
    lock does it (any host); SQLite's desk is one host, so a lock file beside the database
    does, without holding SQLite's only write lock over a network call."""
    handle = None
    if db.engine.dialect.name == "sqlite":
        handle = open(lock_path(db.engine, f"oauth-{grant_id}.lock", current_app.instance_path), "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
    session = Session(db.engine, expire_on_commit=False)
    try:
        yield session
    finally:
        session.rollback()
        session.close()
        if handle is not None:
            handle.close()
