"""Creating and changing OAuth2 grants, for the admin pages and the `mail accounts` and
`mail servers` commands. Operations flush; the caller commits."""

from __future__ import annotations

from switchboard import secrets
from switchboard.db import db
from switchboard.errors import InvalidInput
from switchboard.oauth.models import Flow, GrantState, OAuthGrant, Provider
from switchboard.oauth.tokens import reconnected

# What defines a grant; a change to any of them drops the tokens of the old settings.
SETTINGS = ("provider", "flow", "client_id", "tenant_id", "token_endpoint", "authorization_endpoint", "scopes")


def _checked(*, provider: str, flow: str, client_id: str, tenant_id: str | None, token_endpoint: str | None,
             authorization_endpoint: str | None, scopes: str | None) -> dict:
    try:
        provider_, flow_ = Provider(provider), Flow(flow)
    except ValueError:
        raise InvalidInput("The provider is microsoft, google or generic; the flow app or delegated.",
                           field="provider") from None
    client_id = (client_id or "").strip()
    if not client_id:
        raise InvalidInput("An OAuth2 grant needs its client id.", field="client_id")
    token_endpoint = (token_endpoint or "").strip() or None
    authorization_endpoint = (authorization_endpoint or "").strip() or None
    if provider_ is Provider.GENERIC and not token_endpoint:
        raise InvalidInput("A generic OAuth2 provider needs its token endpoint.", field="token_endpoint")
    if provider_ is Provider.MICROSOFT and not (tenant_id or token_endpoint):
        raise InvalidInput("Microsoft 365 needs the directory (tenant) id.", field="tenant_id")
    for field, url in (("token_endpoint", token_endpoint), ("authorization_endpoint", authorization_endpoint)):
        if url and (not url.startswith("https://") or any(c.isspace() for c in url) or len(url) > 500):
            raise InvalidInput("OAuth2 endpoints must be https:// addresses.", field=field)
    return dict(provider=provider_, flow=flow_, client_id=client_id[:255], tenant_id=(tenant_id or "").strip() or None,
                token_endpoint=token_endpoint, authorization_endpoint=authorization_endpoint,
                scopes=" ".join((scopes or "").split()) or None)


def new_grant(*, provider: str, flow: str, client_id: str, client_secret: str | None = None,
              tenant_id: str | None = None, token_endpoint: str | None = None,
              authorization_endpoint: str | None = None, scopes: str | None = None,
              refresh_token: str | None = None) -> OAuthGrant:
    fields = _checked(provider=provider, flow=flow, client_id=client_id, tenant_id=tenant_id,
                      token_endpoint=token_endpoint, authorization_endpoint=authorization_endpoint, scopes=scopes)
    grant = OAuthGrant(client_secret_encrypted=secrets.encrypt(client_secret), state=GrantState.NOT_CONNECTED,
                       failures=0, **fields)
    reconnected(grant, refresh_token=refresh_token)
    db.session.add(grant)
    db.session.flush()
    return grant


def save_grant(owner, *, actor, provider: str, flow: str, client_id: str, client_secret: str | None,
               tenant_id: str | None = None, token_endpoint: str | None = None,
               authorization_endpoint: str | None = None, scopes: str | None = None) -> OAuthGrant:
    """Sets an incoming account's or outgoing server's OAuth2 settings (the admin page).
    `client_secret` None keeps the stored one. A change of any other setting drops the
    tokens: they belonged to the old settings (a delegated grant then needs connecting again)."""
    from switchboard.permissions import require

    require(actor, "admin")
    grant = owner.oauth_grant
    if grant is None:
        if not client_secret:  # Google's app sign-in: the service account's JSON key
            raise InvalidInput("Give the client secret.", field="client_secret")
        grant = new_grant(provider=provider, flow=flow, client_id=client_id, client_secret=client_secret,
                          tenant_id=tenant_id, token_endpoint=token_endpoint,
                          authorization_endpoint=authorization_endpoint, scopes=scopes)
        owner.oauth_grant = grant
        db.session.flush()
        return grant
    fields = _checked(provider=provider, flow=flow, client_id=client_id, tenant_id=tenant_id,
                      token_endpoint=token_endpoint, authorization_endpoint=authorization_endpoint, scopes=scopes)
    moved = any(getattr(grant, name) != value for name, value in fields.items())
    for name, value in fields.items():
        setattr(grant, name, value)
    if client_secret:  # a new secret for the same app: a delegated sign-in stays valid
        grant.client_secret_encrypted = secrets.encrypt(client_secret)
    if moved:
        grant.refresh_token_encrypted = None
    if moved or client_secret:
        reconnected(grant)
    db.session.flush()
    return grant


def state_words(grant: OAuthGrant | None) -> str:
    """The grant's state for pages and lists: never a token."""
    if grant is None:
        return "not set up"
    return {GrantState.CONNECTED: "connected", GrantState.NOT_CONNECTED: "not connected yet",
            GrantState.NEEDS_RECONNECTING: "needs reconnecting"}[grant.state]
