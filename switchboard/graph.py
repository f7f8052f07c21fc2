"""Talking to Microsoft Graph for one mailbox (reading it: receiver.graph; sending from it:
outbox.graph): the bearer token from the mailbox's OAuth2 grant, throttling (HTTP 429 with
Retry-After) and server errors waited out a bounded number of times, a refused token renewed
once and then the grant marked "needs reconnecting" (the rules of switchboard.oauth.signin),
timeouts on every request, and bodies read with a bound.

Requests that are safe to repeat (reading, marking read, moving: repeating them changes
nothing more) are retried on 429, 5xx and lost connections. A request that is not (sendMail)
is retried only when Graph said it did not take it: a 429, or a 503 carrying Retry-After
(Graph's throttling answers, "Microsoft Graph throttling guidance"); any other failure after
the request went out may have been accepted and is the caller's to resolve (GraphError with
`unknown_outcome`)."""

from __future__ import annotations

import json as jsonlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from urllib.parse import quote

import requests

from switchboard.errors import DeskError
from switchboard.oauth import tokens

log = logging.getLogger(__name__)

GRAPH_HOST = "graph.microsoft.com"
GRAPH_PORT = 443
# What a desk asks Entra ID for, per flow, when the admin names no scopes: the app's Graph
# permissions as consented (Mail.ReadWrite, Mail.Send), or the signed-in mailbox's own
# (MSAL adds offline_access for the refresh token itself).
SCOPES = {"app": ["https://graph.microsoft.com/.default"],
          "delegated": ["https://graph.microsoft.com/Mail.ReadWrite", "https://graph.microsoft.com/Mail.Send"]}
# At most this many waits per request, none longer than MAX_WAIT_SECONDS: a poll or a send
# must end in bounded time (the scheduler's next run, the sender's lease), so a longer
# Retry-After gives up now and the next poll or outbox attempt comes back later.
RETRIES = 4
MAX_WAIT_SECONDS = 30.0
BACKOFF_SECONDS = (1, 2, 4, 8)  # when Graph names no Retry-After
CHUNK = 64 * 1024
# Graph's answers other than a message's MIME are small JSON pages; a larger one is not Graph's.
MAX_JSON_BYTES = 16 * 1024 * 1024


class GraphError(DeskError):
    """Graph (or the way to it) failed; the message is the admin's, never a token."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 temporary: bool = True, unknown_outcome: bool = False):
        super().__init__(message)
        self.status, self.code = status, code
        self.temporary = temporary  # worth trying again later
        self.unknown_outcome = unknown_outcome  # a request that changes things may have been done


class TooLarge(GraphError):
    """A body over the caller's bound: not read whole."""


def base_url(host: str | None, port: int | None) -> str:
    host = host or GRAPH_HOST
    port = port or GRAPH_PORT
    return f"https://{host}{'' if port == 443 else f':{port}'}/v1.0"


def user_path(mailbox: str) -> str:
    """/users/{id | userPrincipalName}, quoted (a UPN holds '@', fine; '/' or '#' never)."""
    return f"/users/{quote(mailbox, safe='@')}"


def graph_grant_options(oauth2: dict) -> dict:
    """The --oauth2-* options of `mail accounts add` / `mail servers add --protocol graph`:
    Microsoft's provider, and Graph's scopes unless some were given."""
    if not oauth2.get("oauth2_provider"):
        raise GraphError("A Microsoft Graph mailbox signs in with OAuth2 only: give --oauth2-provider microsoft, "
                         "--oauth2-tenant, --oauth2-client-id and --oauth2-client-secret-stdin.", temporary=False)
    if oauth2["oauth2_provider"] != "microsoft":
        raise GraphError("Microsoft Graph takes Microsoft 365 tokens: --oauth2-provider microsoft.", temporary=False)
    if oauth2.get("oauth2_scopes"):
        return oauth2
    return dict(oauth2, oauth2_scopes=tuple(SCOPES[oauth2.get("oauth2_flow") or "app"]))


@dataclass
class _Attempt:
    waits: int = 0
    renewed: bool = False


class GraphClient:
    """Requests to Graph as one mailbox, with its grant's token. Close when done."""

    def __init__(self, *, host: str | None, port: int | None, grant_id: int | None, mailbox: str,
                 ca_pem: str | None = None, timeout: float = 30, sleep=time.sleep):
        if grant_id is None:
            raise GraphError("Microsoft Graph needs an OAuth2 grant (the app registration's client id, "
                             "secret and tenant)", temporary=False)
        self.base = base_url(host, port)
        self.where = self.base.split("/v1.0")[0].removeprefix("https://")
        self.grant_id, self.mailbox = grant_id, mailbox
        self.timeout = (min(10.0, float(timeout)), float(timeout))  # (connect, read)
        self.sleep = sleep
        self.session = requests.Session()
        self._token: tokens.Token | None = None
        self._ca_file = None
        if ca_pem:
            # requests verifies against a file; this one replaces the system's trust store for
            # this server only, as a mailbox's trusted CA does for IMAP.
            handle = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
            with handle:
                handle.write(ca_pem)
            self._ca_file = handle.name

    def close(self) -> None:
        self.session.close()
        if self._ca_file:
            try:
                os.unlink(self._ca_file)
            except OSError:
                pass
            self._ca_file = None

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def url(self, path: str) -> str:
        """A path under the mailbox (`/messages/x`), or one of Graph's own links (paging, delta):
        those carry the token, so only ever to the same server."""
        if "://" in path:
            if not path.startswith(self.base + "/"):
                raise GraphError(f"Graph answered with a link to another server ({path.split('?')[0][:200]}); "
                                 "not followed", temporary=False)
            return path
        return f"{self.base}{user_path(self.mailbox)}{path}"

    # -- requests ---------------------------------------------------------------------------

    def json(self, method: str, path: str, *, body: dict | None = None, headers: dict | None = None,
             params: dict | None = None, safe: bool = True) -> dict:
        """A request whose answer is JSON (or empty); the answer as a dict."""
        response = self.request(method, path, json=body, headers=headers, params=params, safe=safe, stream=True)
        try:
            data = _read(response, MAX_JSON_BYTES, "an answer")
        finally:
            response.close()
        if not data.strip():
            return {}
        try:
            answer = jsonlib.loads(data)
        except ValueError:
            raise GraphError(f"{self.where} answered HTTP {response.status_code} with something "
                             "that is not JSON") from None
        return answer if isinstance(answer, dict) else {}

    def download(self, path: str, limit: int) -> bytes:
        """A body (a message's MIME) of at most `limit` bytes; TooLarge without reading more."""
        response = self.request("GET", path, stream=True)
        try:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > limit:
                raise TooLarge(f"larger than {limit} bytes ({length})", temporary=False)
            return _read(response, limit, "the message")
        finally:
            response.close()

    def request(self, method: str, path: str, *, json: dict | None = None, data: bytes | None = None,
                headers: dict | None = None, params: dict | None = None, safe: bool = True,
                stream: bool = False) -> requests.Response:
        """One request, retried as the module says; a 2xx response, or GraphError."""
        url = self.url(path)
        attempt = _Attempt()
        while True:
            if self._token is None:
                self._token = tokens.access_token(self.grant_id, mailbox=self.mailbox)
            sent_headers = {"Authorization": f"Bearer {self._token.value}", **(headers or {})}
            try:
                response = self.session.request(
                    method, url, json=json, data=data, headers=sent_headers, params=params, stream=stream,
                    timeout=self.timeout, verify=self._ca_file or True, allow_redirects=False)
            except requests.exceptions.SSLError as exc:
                raise GraphError(f"TLS with {self.where} failed: {_innermost(exc)}") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                before_sending = isinstance(exc, requests.ConnectTimeout) or _refused(exc)
                what = "did not answer in time" if isinstance(exc, requests.Timeout) else "could not be reached"
                if (safe or before_sending) and self._wait(attempt, None):
                    continue
                raise GraphError(f"{self.where} {what} ({type(exc).__name__})",
                                 unknown_outcome=not (safe or before_sending)) from None
            status = response.status_code
            if 200 <= status < 300:
                return response
            said = _error(response)
            response.close()
            if status == 401:
                self._renew(attempt, said)
                continue
            throttled = status == 429 or (status == 503 and response.headers.get("Retry-After"))
            if status == 429 or status >= 500:
                if (safe or throttled) and self._wait(attempt, response.headers.get("Retry-After")):
                    continue
                raise GraphError(f"{self.where} answered HTTP {status}{said.text}",
                                 status=status, code=said.code, unknown_outcome=not (safe or throttled))
            raise GraphError(f"{self.where} answered HTTP {status}{said.text}", status=status,
                             code=said.code, temporary=status in (408, 409, 423))

    def _renew(self, attempt: _Attempt, said: _Said) -> None:
        """Graph refused the token: a cached one may have been revoked early, so one new token;
        a new token refused too means the grant lost its permission: needs reconnecting."""
        if attempt.renewed or self._token.fresh:
            tokens.mark_refused(self.grant_id, f"Microsoft Graph answered HTTP 401{said.text}")
            raise GraphError(f"{self.where} refused a new OAuth2 token for {self.mailbox}{said.text}; "
                             "the grant needs reconnecting", status=401, code=said.code, temporary=False)
        attempt.renewed = True
        self._token = tokens.access_token(self.grant_id, mailbox=self.mailbox,
                                          refused=f"HTTP 401{said.text}")

    def _wait(self, attempt: _Attempt, retry_after: str | None) -> bool:
        """Waits before trying again; False when the retries (or Graph's wait) exceed the bound."""
        if attempt.waits >= RETRIES:
            return False
        seconds = _seconds(retry_after)
        if seconds is None:
            seconds = BACKOFF_SECONDS[min(attempt.waits, len(BACKOFF_SECONDS) - 1)]
        if seconds > MAX_WAIT_SECONDS:
            return False
        attempt.waits += 1
        log.info("Microsoft Graph (%s): waiting %.0f s before trying again", self.mailbox, seconds)
        self.sleep(seconds)
        return True


@dataclass(frozen=True)
class _Said:
    code: str | None
    text: str  # ": <code>: <message>" or ""


def _error(response: requests.Response) -> _Said:
    """Graph's error object ({"error": {"code", "message"}}), read with a bound."""
    try:
        data = _read(response, 64 * 1024, "an error")
        error = jsonlib.loads(data or b"{}").get("error") or {}
    except (GraphError, ValueError, AttributeError):
        return _Said(None, "")
    code = str(error.get("code") or "")[:100] or None
    message = " ".join(str(error.get("message") or "").split())[:300]
    text = ": ".join(part for part in (code, message) if part)
    return _Said(code, f": {text}" if text else "")


def _read(response: requests.Response, limit: int, what: str) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_content(CHUNK):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{what} larger than {limit} bytes", temporary=False)
        chunks.append(chunk)
    return b"".join(chunks)


def _seconds(retry_after: str | None) -> float | None:
    if retry_after is None:
        return None
    try:
        return max(0.0, float(retry_after.strip()))
    except ValueError:
        return None  # an HTTP date: Graph sends seconds; fall back to our own back-off


def _refused(exc: BaseException | None) -> bool:
    """Whether the connection was refused: nothing was sent (urllib3 keeps the cause in
    `reason` and in the exception chain)."""
    for _ in range(10):
        if exc is None:
            return False
        if isinstance(exc, ConnectionRefusedError):
            return True
        exc = getattr(exc, "reason", None) or exc.__cause__ or exc.__context__ or \
            next((a for a in getattr(exc, "args", ()) if isinstance(a, BaseException)), None)
    return False


def _innermost(exc: Exception) -> str:
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    return str(exc)[:300]
