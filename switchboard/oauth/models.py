"""An OAuth2 grant: how the desk gets access tokens for one mailbox or SMTP server, and
what state that is in. Secrets (client secret, refresh token, the cached access token) are
stored encrypted like mail passwords (switchboard.secrets) and never shown."""

import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from switchboard.db import UTCDateTime, db, utcnow


def _enum(cls, length=20):
    return sa.Enum(cls, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e])


class Provider(enum.Enum):
    MICROSOFT = "microsoft"  # Microsoft 365 / Exchange Online, through MSAL
    GOOGLE = "google"  # Google Workspace, through google-auth
    GENERIC = "generic"  # any OAuth2 server with a token endpoint, through Authlib


class Flow(enum.Enum):
    APP = "app"  # client credentials: no person signs in (IMAP.AccessAsApp, a service account)
    DELEGATED = "delegated"  # an admin signed in once; the desk keeps the refresh token


class GrantState(enum.Enum):
    NOT_CONNECTED = "not_connected"  # delegated, nobody has signed in yet
    CONNECTED = "connected"
    NEEDS_RECONNECTING = "needs_reconnecting"  # the provider refused the grant: an admin must act


class OAuthGrant(db.Model):
    __tablename__ = "oauth_grant"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[Provider] = mapped_column(_enum(Provider))
    flow: Mapped[Flow] = mapped_column(_enum(Flow))
    tenant_id: Mapped[str | None] = mapped_column(sa.String(100))  # Microsoft: the directory (tenant) id
    client_id: Mapped[str] = mapped_column(sa.String(255))
    client_secret_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    # Generic providers name their endpoints; Microsoft's and Google's are known (tests may
    # point these at their own server).
    token_endpoint: Mapped[str | None] = mapped_column(sa.String(500))
    authorization_endpoint: Mapped[str | None] = mapped_column(sa.String(500))
    scopes: Mapped[str | None] = mapped_column(sa.String(1000))  # space-separated; None: the provider's
    refresh_token_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    access_token_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    access_token_expires_at = mapped_column(UTCDateTime)
    state: Mapped[GrantState] = mapped_column(_enum(GrantState, 30), default=GrantState.NOT_CONNECTED)
    # What the provider said when it last refused (its error and description), for the admin.
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    last_error_at = mapped_column(UTCDateTime)
    # After a temporary failure (the provider unreachable, a 5xx), no token request before this.
    retry_after = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(default=0)
    # The admins were told it needs reconnecting (once per episode, not per poll).
    reconnect_notice_at = mapped_column(UTCDateTime)
    refreshed_at = mapped_column(UTCDateTime)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
