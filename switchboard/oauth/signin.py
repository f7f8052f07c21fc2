"""Signing in with a token, the same way for IMAP, POP3 and SMTP: a token the server refuses
is retried once with a new one (it may have been revoked before it expired); a new token
refused too means the grant lacks a permission or was revoked, and marks it "needs
reconnecting", after which no login is tried until an admin reconnects it (providers lock
mailboxes that fail to log in over and over). A server that says "not now" (it could not
reach its own OAuth2 provider) marks nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from switchboard.errors import DeskError
from switchboard.oauth import tokens


class SignInRefused(DeskError):
    """The server refused the login; the message is the admin's (never a secret)."""


@dataclass(frozen=True)
class Refusal:
    text: str  # the server's words
    temporary: bool = False  # IMAP [UNAVAILABLE], POP3 [SYS/TEMP], SMTP 454...


def sign_in(grant_id: int, user: str, where: str, attempt: Callable[[str], Refusal | None]) -> None:
    """`attempt(token)` tries one login: None when it worked, else the server's Refusal.
    Raises SignInRefused, tokens.NeedsReconnecting or tokens.TokenUnavailable."""
    token = tokens.access_token(grant_id, mailbox=user)
    refused = attempt(token.value)
    if refused is None:
        return
    _unless_temporary(where, refused)
    if not token.fresh:
        token = tokens.access_token(grant_id, mailbox=user, refused=refused.text)
        refused = attempt(token.value)
        if refused is None:
            return
        _unless_temporary(where, refused)
    tokens.mark_refused(grant_id, refused.text)
    raise SignInRefused(f"{where} refused a new OAuth2 token for {user}: {refused.text}; "
                        "the grant needs reconnecting")


def _unless_temporary(where: str, refused: Refusal) -> None:
    if refused.temporary:
        raise SignInRefused(f"{where} could not check the OAuth2 token now: {refused.text}")
