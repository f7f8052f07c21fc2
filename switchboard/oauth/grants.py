"""Creating and changing OAuth2 grants, for the admin pages and the `mail accounts` and
`mail servers` commands. Operations flush; the caller commits."""

from __future__ import annotations

from switchboard import secrets
from switchboard.db import db
from switchboard.errors import InvalidInput
from switchboard.oauth.models import Flow, GrantState, OAuthGrant, Provider
from switchboard.oauth.tokens import reconnected


def new_grant(*, provider: str, flow: str, client_id: str, client_secret: str | None = None,
              tenant_id: str | None = None, token_endpoint: str | None = None,
              authorization_endpoint: str | None = None, scopes: str | None = None,
              refresh_token: str | None = None) -> OAuthGrant:
    try:
        provider_, flow_ = Provider(provider), Flow(flow)
    except ValueError:
        raise InvalidInput("The provider is microsoft, google or generic; the flow app or delegated.") from None
    if not (client_id or "").strip():
        raise InvalidInput("An OAuth2 grant needs its client id.", field="client_id")
    if provider_ is Provider.GENERIC and not token_endpoint:
        raise InvalidInput("A generic OAuth2 provider needs its token endpoint.", field="token_endpoint")
    if provider_ is Provider.MICROSOFT and not (tenant_id or token_endpoint):
        raise InvalidInput("Microsoft 365 needs the directory (tenant) id.", field="tenant_id")
    for url in (token_endpoint, authorization_endpoint):
        if url and not url.startswith("https://"):
            raise InvalidInput("OAuth2 endpoints must be https:// addresses.", field="token_endpoint")
    grant = OAuthGrant(provider=provider_, flow=flow_, client_id=client_id.strip(),
                       client_secret_encrypted=secrets.encrypt(client_secret), tenant_id=tenant_id,
                       token_endpoint=token_endpoint, authorization_endpoint=authorization_endpoint,
                       scopes=scopes, state=GrantState.NOT_CONNECTED, failures=0)
    reconnected(grant, refresh_token=refresh_token)
    db.session.add(grant)
    db.session.flush()
    return grant
