"""Asking a provider for an access token, with the library each provider is best served by:
MSAL for Microsoft (it knows Entra ID's authorities and error shapes), google-auth for Google
(service accounts sign their own JWT assertions), Authlib for any other OAuth2 server. Each
returns the same Tokens, and every failure is one of two kinds: the provider refused the
grant (an admin must act: never retried) or the provider could not be reached (retried later)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone

import requests

from switchboard.oauth.models import Flow, OAuthGrant, Provider

# Errors (RFC 6749 section 5.2, and Entra ID's) that no retry can cure.
REFUSALS = {"invalid_grant", "invalid_client", "unauthorized_client", "access_denied", "invalid_scope",
            "unsupported_grant_type", "invalid_request", "interaction_required", "consent_required",
            "login_required"}

MICROSOFT_AUTHORITY = "https://login.microsoftonline.com/{tenant}"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
# What a desk needs of each: its mailbox over IMAP/POP3, and SMTP sending.
DEFAULT_SCOPES = {
    (Provider.MICROSOFT, Flow.APP): ["https://outlook.office365.com/.default"],
    (Provider.MICROSOFT, Flow.DELEGATED): ["https://outlook.office365.com/IMAP.AccessAsUser.All",
                                          "https://outlook.office365.com/POP.AccessAsUser.All",
                                          "https://outlook.office365.com/SMTP.Send"],
    (Provider.GOOGLE, Flow.APP): ["https://mail.google.com/"],
    (Provider.GOOGLE, Flow.DELEGATED): ["https://mail.google.com/"],
}
TIMEOUT = 30


@dataclass(frozen=True)
class Tokens:
    access_token: str
    expires_in: float
    refresh_token: str | None = None  # set when the provider issued (or rotated) one


class GrantRefused(Exception):
    """The provider said no for good: a revoked or expired grant, a wrong secret."""

    def __init__(self, error: str, description: str = ""):
        super().__init__(f"{error}: {description}" if description else error)
        self.error, self.description = error, description


class ProviderUnavailable(Exception):
    """The provider could not answer now (network, 5xx, throttling): try again later."""


@dataclass(frozen=True)
class Secrets:
    client_secret: str | None
    refresh_token: str | None
    mailbox: str | None  # Google's service accounts act for this user (domain-wide delegation)
    ca_file: str | None = None  # a provider with its own CA (tests; a private OAuth2 server)


def scopes(grant: OAuthGrant) -> list[str]:
    if grant.scopes:
        return grant.scopes.split()
    return DEFAULT_SCOPES.get((grant.provider, grant.flow), [])


def request_tokens(grant: OAuthGrant, secrets: Secrets) -> Tokens:
    """One token request to the grant's provider. Raises GrantRefused or ProviderUnavailable."""
    if grant.flow is Flow.DELEGATED and not secrets.refresh_token:
        raise GrantRefused("not_connected", "nobody has signed in for this grant yet")
    try:
        if grant.provider is Provider.MICROSOFT:
            return _microsoft(grant, secrets)
        if grant.provider is Provider.GOOGLE:
            return _google(grant, secrets)
        return _generic(grant, secrets)
    except (GrantRefused, ProviderUnavailable):
        raise
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status >= 500 or status == 429:
            raise ProviderUnavailable(f"the token endpoint answered HTTP {status}") from None
        raise GrantRefused(f"http_{status}", f"the token endpoint answered HTTP {status}") from None
    except requests.exceptions.SSLError as exc:
        raise ProviderUnavailable(f"TLS with the token endpoint failed: {_reason(exc)}") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ProviderUnavailable(f"the token endpoint could not be reached: {type(exc).__name__}") from None


def _reason(exc: Exception) -> str:
    """The innermost cause's words (a certificate that is not trusted, say), never a URL's query."""
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    return str(exc)[:300]


class _Session(requests.Session):
    """A session whose own CA file holds: requests lets REQUESTS_CA_BUNDLE in the
    environment override a session's `verify`, and many hosts set that variable."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify in (None, True) and isinstance(self.verify, str):
            settings["verify"] = self.verify
        return settings

    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", TIMEOUT)
        return super().request(*args, **kwargs)


def _session(secrets: Secrets) -> requests.Session:
    session = _Session()
    if secrets.ca_file:
        session.verify = secrets.ca_file
    return session


def _refused_or_unavailable(error: str, description: str):
    if error in REFUSALS:
        return GrantRefused(error, description)
    return ProviderUnavailable(f"{error}: {description}" if description else error)


def _generic(grant: OAuthGrant, secrets: Secrets) -> Tokens:
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.requests_client import OAuth2Session

    client = OAuth2Session(grant.client_id, secrets.client_secret, scope=" ".join(scopes(grant)) or None)
    # Per request: Authlib's session does not apply its own `verify` to token requests.
    options = {"timeout": TIMEOUT, "verify": secrets.ca_file or True}
    try:
        if grant.flow is Flow.APP:
            token = client.fetch_token(grant.token_endpoint, grant_type="client_credentials", **options)
        else:
            token = client.refresh_token(grant.token_endpoint, refresh_token=secrets.refresh_token, **options)
    except OAuthError as exc:
        raise _refused_or_unavailable(exc.error or "error", exc.description or "") from None
    except ValueError as exc:  # not a JSON object
        raise ProviderUnavailable(str(exc)) from None
    return _tokens(token)


def _microsoft(grant: OAuthGrant, secrets: Secrets) -> Tokens:
    import msal

    # A test (or a sovereign cloud) names its own authority; otherwise Entra ID's, per tenant.
    authority = grant.token_endpoint or MICROSOFT_AUTHORITY.format(tenant=grant.tenant_id or "organizations")
    app = msal.ConfidentialClientApplication(
        grant.client_id, client_credential=_microsoft_credential(secrets.client_secret), authority=authority,
        http_client=_session(secrets),
        instance_discovery=bool(grant.token_endpoint is None), token_cache=msal.TokenCache())
    if grant.flow is Flow.APP:
        result = app.acquire_token_for_client(scopes=scopes(grant))
    else:
        result = app.acquire_token_by_refresh_token(secrets.refresh_token, scopes=scopes(grant))
    if "access_token" not in result:
        raise _refused_or_unavailable(result.get("error", "error"), result.get("error_description", "")[:500])
    return _tokens(result)


_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def _microsoft_credential(secret: str | None):
    """A client secret, or a certificate: one PEM holding the private key and the
    certificate registered with the app (MSAL signs a client assertion with it)."""
    if secret and "PRIVATE KEY-----" in secret:
        certificate = _PEM_CERTIFICATE.search(secret)
        if certificate is None:
            raise GrantRefused("invalid_client", "the key file has a private key but no certificate")
        return {"private_key": secret, "public_certificate": certificate.group(0)}
    return secret


def _google(grant: OAuthGrant, secrets: Secrets) -> Tokens:
    import google.auth.exceptions
    from google.auth.transport.requests import Request
    from google.oauth2 import credentials as user_credentials
    from google.oauth2 import service_account

    if grant.flow is Flow.APP:
        # The "client secret" of a service account is its JSON key; it acts as the mailbox's user.
        try:
            info = json.loads(secrets.client_secret or "")
        except ValueError:
            raise GrantRefused("invalid_client", "the service account key is not JSON") from None
        if grant.token_endpoint:
            info["token_uri"] = grant.token_endpoint
        credentials = service_account.Credentials.from_service_account_info(
            info, scopes=scopes(grant), subject=secrets.mailbox)
    else:
        credentials = user_credentials.Credentials(
            None, refresh_token=secrets.refresh_token, token_uri=grant.token_endpoint or GOOGLE_TOKEN_URI,
            client_id=grant.client_id, client_secret=secrets.client_secret, scopes=scopes(grant))
    try:
        credentials.refresh(Request(_session(secrets)))
    except google.auth.exceptions.RefreshError as exc:
        detail = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
        error = detail.get("error") or ("invalid_grant" if "invalid_grant" in str(exc) else "error")
        if getattr(exc, "retryable", False):
            raise ProviderUnavailable(str(exc)[:500]) from None
        raise _refused_or_unavailable(error, str(detail.get("error_description") or exc)[:500]) from None
    except google.auth.exceptions.TransportError as exc:
        raise ProviderUnavailable(f"the token endpoint could not be reached: {str(exc)[:300]}") from None
    expiry = credentials.expiry  # google-auth's: naive UTC
    expires_in = (expiry - datetime.now(timezone.utc).replace(tzinfo=None)).total_seconds() if expiry else 3600
    rotated = getattr(credentials, "refresh_token", None)
    return Tokens(credentials.token, expires_in,
                  rotated if grant.flow is Flow.DELEGATED and rotated != secrets.refresh_token else None)


def _tokens(token: dict) -> Tokens:
    try:
        expires_in = float(token.get("expires_in") or 3600)
    except (TypeError, ValueError):
        expires_in = 3600
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise ProviderUnavailable("the token endpoint answered without an access token")
    refresh = token.get("refresh_token")
    return Tokens(access, expires_in, refresh if isinstance(refresh, str) and refresh else None)
