"""Signing in to a mailbox the account's way: its password, or an OAuth2 access token over
SASL (XOAUTH2 or OAUTHBEARER, whichever the server advertises), for IMAP and POP3 alike
(the retry and "needs reconnecting" rules: switchboard.oauth.signin)."""

from __future__ import annotations

import base64
import poplib
from dataclasses import dataclass, field

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from switchboard import secrets
from switchboard.inbound.models import IncomingAccount
from switchboard.oauth import sasl
from switchboard.oauth.signin import Refusal, SignInRefused, sign_in


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str | None = field(default=None, repr=False)
    grant_id: int | None = None


def credentials_for(account: IncomingAccount) -> Credentials:
    if account.oauth_grant_id is not None:
        return Credentials(account.username or "", grant_id=account.oauth_grant_id)
    return Credentials(account.username or "", password=secrets.decrypt(account.password_encrypted) or "")


def imap_sign_in(client: IMAPClient, account: IncomingAccount, credentials: Credentials) -> None:
    if credentials.grant_id is None:
        client.login(credentials.user, credentials.password)
        return
    advertised = [c[5:].decode("ascii", "replace") for c in client.capabilities() if c.upper().startswith(b"AUTH=")]
    mechanism = _mechanism(account, advertised)

    def attempt(token: str) -> str | None:
        try:
            if mechanism == sasl.XOAUTH2:
                client.oauth2_login(credentials.user, token, mech=sasl.XOAUTH2)
            else:
                client.oauthbearer_login(credentials.user, token)
        except LoginError as exc:
            return _text(exc)
        return None

    _with_token(account, credentials, attempt)


def pop3_sign_in(pop: poplib.POP3, account: IncomingAccount, credentials: Credentials) -> None:
    if credentials.grant_id is None:
        pop.user(credentials.user)
        pop.pass_(credentials.password)
        return
    try:
        advertised = pop.capa().get("SASL", [])
    except poplib.error_proto:
        advertised = [sasl.XOAUTH2]  # no CAPA: try the common one
    mechanism = _mechanism(account, advertised)

    def attempt(token: str) -> str | None:
        payload = sasl.initial_response(mechanism, credentials.user, token, account.host, account.port)
        try:
            # RFC 5034: AUTH with an initial response. A server that answers with a
            # challenge instead (Google sends its error as one) gets an empty line back.
            answer = pop._shortcmd(f"AUTH {mechanism} {base64.b64encode(payload).decode()}")
            if not answer.startswith(b"+OK"):
                pop._putcmd("")
                pop._getresp()
        except poplib.error_proto as exc:
            return _text(exc)
        return None

    _with_token(account, credentials, attempt)


def _mechanism(account: IncomingAccount, advertised) -> str:
    mechanism = sasl.choose(advertised)
    if mechanism is None:
        raise SignInRefused(f"{account.host}:{account.port} offers no OAuth2 login (XOAUTH2 or OAUTHBEARER); "
                            f"it offers {', '.join(advertised) or 'no SASL mechanism'}")
    return mechanism


# Response codes that say "not now", not "no": IMAP (RFC 5530) and POP3 (RFC 3206). The
# server could not check the token (its own link to the provider is down): nothing to mark.
TEMPORARY = ("[UNAVAILABLE]", "[SYS/TEMP]", "[IN-USE]", "[SERVERBUG]")


def _with_token(account: IncomingAccount, credentials: Credentials, attempt) -> None:
    def refusal(token: str) -> Refusal | None:
        text = attempt(token)
        return None if text is None else Refusal(text, any(code in text.upper() for code in TEMPORARY))

    sign_in(credentials.grant_id, credentials.user, f"{account.host}:{account.port}", refusal)


def _text(exc: Exception) -> str:
    text = exc.args[0] if exc.args else str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text)[:500]
