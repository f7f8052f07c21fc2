"""The OAuth2 options `mail accounts add` and `mail servers add` share: which provider and
flow, the app's client id, and its secret from stdin (never the command line) or a key file."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from switchboard.oauth.grants import new_grant


def oauth2_options(command):
    """Adds the --oauth2-* options; the command receives them as one `oauth2` dict."""
    options = [
        click.option("--oauth2-provider", type=click.Choice(["microsoft", "google", "generic"]),
                     help="Sign in with OAuth2 (XOAUTH2/OAUTHBEARER) instead of a password."),
        click.option("--oauth2-flow", type=click.Choice(["app", "delegated"]), default="app", show_default=True,
                     help="app: client credentials (no person signs in); delegated: an admin connects it "
                          "on the account's page, or give --oauth2-refresh-token-stdin."),
        click.option("--oauth2-tenant", help="Microsoft: the directory (tenant) id."),
        click.option("--oauth2-client-id", help="The app's client id."),
        click.option("--oauth2-client-secret-stdin", is_flag=True,
                     help="Read the client secret from the first line of stdin."),
        click.option("--oauth2-key-file", type=click.Path(exists=True, dir_okay=False),
                     help="Google: the service account's JSON key file (instead of a client secret)."),
        click.option("--oauth2-refresh-token-stdin", is_flag=True,
                     help="Delegated: read a refresh token from the next line of stdin."),
        click.option("--oauth2-token-endpoint", help="Generic providers: the token endpoint (https://...)."),
        click.option("--oauth2-scope", "oauth2_scopes", multiple=True,
                     help="A scope to ask for (repeatable); default: the provider's mail scopes."),
    ]
    names = ["oauth2_provider", "oauth2_flow", "oauth2_tenant", "oauth2_client_id", "oauth2_client_secret_stdin",
             "oauth2_key_file", "oauth2_refresh_token_stdin", "oauth2_token_endpoint", "oauth2_scopes"]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        kwargs["oauth2"] = {name: kwargs.pop(name) for name in names}
        return command(*args, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def grant_from_options(oauth2: dict, *, password_given: bool):
    """The grant the options describe (added to the session), or None without --oauth2-provider."""
    if not oauth2["oauth2_provider"]:
        if any(oauth2[k] for k in ("oauth2_client_id", "oauth2_client_secret_stdin", "oauth2_key_file",
                                   "oauth2_refresh_token_stdin", "oauth2_token_endpoint", "oauth2_tenant")):
            raise click.ClickException("The --oauth2-* options need --oauth2-provider.")
        return None
    if password_given:
        raise click.ClickException("Give a password or OAuth2, not both.")
    secret = None
    if oauth2["oauth2_client_secret_stdin"]:
        secret = _line("--oauth2-client-secret-stdin")
    if oauth2["oauth2_key_file"]:
        if secret is not None:
            raise click.ClickException("Give the client secret on stdin or a key file, not both.")
        secret = Path(oauth2["oauth2_key_file"]).read_text()
    refresh_token = _line("--oauth2-refresh-token-stdin") if oauth2["oauth2_refresh_token_stdin"] else None
    return new_grant(provider=oauth2["oauth2_provider"], flow=oauth2["oauth2_flow"],
                     client_id=oauth2["oauth2_client_id"] or "", client_secret=secret,
                     tenant_id=oauth2["oauth2_tenant"], token_endpoint=oauth2["oauth2_token_endpoint"],
                     scopes=" ".join(oauth2["oauth2_scopes"]) or None, refresh_token=refresh_token)


def _line(option: str) -> str:
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise click.ClickException(f"{option}: stdin gave nothing.")
    return value
