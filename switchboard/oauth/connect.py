"""The delegated flow's "Connect": an admin is sent to the provider's sign-in page
(authorization code with PKCE, RFC 6749 section 4.1 and RFC 7636), comes back with a code,
and the desk exchanges it for tokens and keeps the refresh token, encrypted.

The code exchange is the same standard for every provider, so Authlib does it for all three
(MSAL and google-auth then keep the tokens fresh, switchboard.oauth.providers). The state
and the PKCE verifier live in the admin's session only for the round trip: a callback
without them, or with another state, changes nothing."""

from __future__ import annotations

import secrets as random
from dataclasses import dataclass

from flask import current_app

from switchboard import secrets
from switchboard.db import utcnow
from switchboard.errors import InvalidInput
from switchboard.oauth import providers
from switchboard.oauth.models import Flow, OAuthGrant, Provider
from switchboard.oauth.tokens import reconnected

GOOGLE_AUTHORIZE = "https://accounts.google.com/o/oauth2/v2/auth"


@dataclass(frozen=True)
class Endpoints:
    authorize: str
    token: str


def endpoints(grant: OAuthGrant) -> Endpoints:
    if grant.provider is Provider.MICROSOFT:
        # The grant's token_endpoint, when set, is the authority (a national cloud, or the tests').
        authority = grant.token_endpoint or providers.MICROSOFT_AUTHORITY.format(tenant=grant.tenant_id)
        return Endpoints(f"{authority}/oauth2/v2.0/authorize", f"{authority}/oauth2/v2.0/token")
    if grant.provider is Provider.GOOGLE:
        return Endpoints(grant.authorization_endpoint or GOOGLE_AUTHORIZE,
                         grant.token_endpoint or providers.GOOGLE_TOKEN_URI)
    if not grant.authorization_endpoint:
        raise InvalidInput("Give the provider's authorization endpoint to connect.", field="authorization_endpoint")
    return Endpoints(grant.authorization_endpoint, grant.token_endpoint)


def _scopes(grant: OAuthGrant) -> str:
    wanted = providers.scopes(grant)
    if grant.provider is Provider.MICROSOFT and "offline_access" not in wanted:
        wanted = [*wanted, "offline_access"]  # Entra ID issues a refresh token only then
    return " ".join(wanted)


def _client(grant: OAuthGrant, redirect_uri: str):
    from authlib.integrations.requests_client import OAuth2Session

    return OAuth2Session(grant.client_id, secrets.decrypt(grant.client_secret_encrypted), scope=_scopes(grant),
                         redirect_uri=redirect_uri, code_challenge_method="S256")


def start(grant: OAuthGrant, redirect_uri: str) -> tuple[str, dict]:
    """The URL to send the admin to, and what to keep in their session until they return."""
    if grant.flow is not Flow.DELEGATED:
        raise InvalidInput("Only a delegated grant is connected by signing in; an app grant needs no sign-in.")
    verifier = random.token_urlsafe(64)
    extra = {"access_type": "offline", "prompt": "consent"} if grant.provider is Provider.GOOGLE else {}
    url, state = _client(grant, redirect_uri).create_authorization_url(
        endpoints(grant).authorize, code_verifier=verifier, **extra)
    return url, {"grant": grant.id, "state": state, "verifier": verifier, "redirect_uri": redirect_uri}


def finish(grant: OAuthGrant, pending: dict, *, state: str | None, code: str | None, error: str | None) -> None:
    """Exchanges the code; raises InvalidInput with the provider's words when anything is off."""
    if not pending or pending.get("grant") != grant.id or not state or \
            not random.compare_digest(str(pending.get("state")), str(state)):
        raise InvalidInput("This sign-in was not started here, or was started again since: connect once more.")
    if error:
        raise InvalidInput(f"The provider did not grant access: {error[:300]}")
    if not code:
        raise InvalidInput("The provider sent no authorization code back.")
    from authlib.integrations.base_client.errors import OAuthError
    import requests

    try:
        token = _client(grant, pending["redirect_uri"]).fetch_token(
            endpoints(grant).token, code=code, code_verifier=pending["verifier"], timeout=providers.TIMEOUT,
            verify=current_app.config.get("OAUTH2_CA_FILE") or True)
    except OAuthError as exc:
        raise InvalidInput(f"The provider refused the code: {exc.error}: {exc.description or ''}".strip()) from None
    except (requests.RequestException, ValueError) as exc:
        raise InvalidInput(f"The provider could not be reached: {type(exc).__name__}") from None
    refresh = token.get("refresh_token")
    if not refresh:
        raise InvalidInput("The provider gave no refresh token (Microsoft: ask for offline_access; Google: "
                           "consent again), so the desk could not keep the mailbox connected.")
    reconnected(grant, refresh_token=refresh)
    grant.access_token_encrypted = secrets.encrypt(token["access_token"])
    grant.access_token_expires_at = utcnow() + _seconds(token.get("expires_in"))
    grant.refreshed_at = utcnow()


def _seconds(value):
    from datetime import timedelta

    try:
        return timedelta(seconds=float(value))
    except (TypeError, ValueError):
        return timedelta(hours=1)
