"""`mail accounts add` and `mail servers add` with OAuth2, as a script runs them: the client
secret from stdin only, the account then polled for real, and `list` saying when a grant
needs reconnecting (issue 13)."""

from __future__ import annotations

import itertools
import os

from switchboard.db import db
from switchboard.inbound.models import IncomingAccount
from switchboard.oauth.models import OAuthGrant
from switchboard.outbox.models import OutgoingServer


_scripts = itertools.count(1)


def _run(app, args, stdin=""):
    return app.test_cli_runner().invoke(args=args, input=stdin)


def _add_oauth2_account(app, name, email, provider, oauth_dovecot):
    """`mail accounts add` of an IMAP mailbox signing in with a generic provider's app grant,
    the secret on stdin as a script gives it. Returns the result and the secret."""
    client_id, secret = provider.add_client(mailbox=email)
    return _run(app, ["mail", "accounts", "add", "--name", name, "--protocol", "imap",
                      "--host", oauth_dovecot.host, "--port", str(oauth_dovecot.ports.imaps),
                      "--trusted-ca", str(oauth_dovecot.ca_path), "--username", email, "--after", "seen",
                      "--oauth2-provider", "generic", "--oauth2-client-id", client_id,
                      "--oauth2-client-secret-stdin", "--oauth2-token-endpoint", provider.token_endpoint],
                stdin=secret + "\n"), secret


def test_an_oauth2_mailbox_added_from_a_script_is_polled_and_listed_with_its_state(desk, provider, oauth_dovecot):
    email = f"script{next(_scripts)}-{os.getpid()}@example.test"
    oauth_dovecot.append(email, b"From: carol@example.org\r\nSubject: printer\r\nMessage-ID: <s1@example.org>\r\n\r\nhi\r\n")
    added, secret = _add_oauth2_account(desk, "m365", email, provider, oauth_dovecot)
    assert added.exit_code == 0, added.output
    assert secret not in added.output
    grant = db.session.get(OAuthGrant, db.session.query(IncomingAccount).filter_by(name="m365").one().oauth_grant_id)
    assert grant.client_secret_encrypted and secret not in grant.client_secret_encrypted
    polled = _run(desk, ["mail", "poll", "--account", "m365"])
    assert polled.exit_code == 0, polled.output
    listed = _run(desk, ["mail", "accounts", "list"]).output
    line = next(l for l in listed.splitlines() if l.startswith("m365\t"))
    assert "\tok\t" in line and "OAuth2 generic app" in line
    provider.revoke(email)
    grant.access_token_expires_at = None  # the cached token is gone: the next poll asks the provider
    db.session.commit()
    _run(desk, ["mail", "poll", "--account", "m365"])
    line = next(l for l in _run(desk, ["mail", "accounts", "list"]).output.splitlines() if l.startswith("m365\t"))
    assert "\tneeds-reconnecting\t" in line and "unauthorized_client" in line


def test_bad_oauth2_options_are_refused_and_add_nothing(desk, provider):
    cases = [
        (["--oauth2-client-id", "x"], "", "need --oauth2-provider"),
        (["--oauth2-provider", "generic", "--oauth2-client-id", "x", "--oauth2-client-secret-stdin"], "s\n",
         "token endpoint"),
        (["--oauth2-provider", "generic", "--oauth2-client-id", "x", "--oauth2-token-endpoint",
          "http://plain.example/token", "--oauth2-client-secret-stdin"], "s\n", "https://"),
        (["--oauth2-provider", "microsoft", "--oauth2-client-id", "x", "--oauth2-client-secret-stdin"], "s\n",
         "tenant"),
        (["--password-stdin", "--oauth2-provider", "generic", "--oauth2-client-id", "x",
          "--oauth2-token-endpoint", provider.token_endpoint], "pw\n", "not both"),
        (["--oauth2-provider", "generic", "--oauth2-client-id", "x", "--oauth2-token-endpoint",
          provider.token_endpoint, "--oauth2-client-secret-stdin"], "", "stdin gave nothing"),
    ]
    for options, stdin, says in cases:
        result = _run(desk, ["mail", "accounts", "add", "--name", "bad", "--protocol", "imap",
                             "--host", "imap.example.org", "--username", "desk@example.org", *options], stdin=stdin)
        assert result.exit_code != 0 and says in result.output, (options, result.output)
    db.session.rollback()
    assert db.session.query(IncomingAccount).count() == 0
    assert db.session.query(OAuthGrant).count() == 0


def test_an_oauth2_smtp_server_added_from_a_script(desk, provider):
    client_id, secret = provider.add_client(mailbox="desk@example.org")
    added = _run(desk, ["mail", "servers", "add", "--name", "m365-out", "--host", "smtp.example.org",
                        "--username", "desk@example.org", "--from-address", "desk@example.org",
                        "--oauth2-provider", "microsoft", "--oauth2-tenant", "contoso.onmicrosoft.com",
                        "--oauth2-client-id", client_id, "--oauth2-client-secret-stdin"], stdin=secret + "\n")
    assert added.exit_code == 0, added.output
    server = db.session.query(OutgoingServer).filter_by(name="m365-out").one()
    assert server.oauth_grant.tenant_id == "contoso.onmicrosoft.com" and not server.password_encrypted
    line = _run(desk, ["mail", "servers", "list"]).output.splitlines()[0]
    assert line.endswith("\tactive") and "OAuth2 microsoft app" in line


def test_desk_health_alarms_at_once_for_a_mailbox_that_needs_reconnecting(desk, provider, oauth_dovecot):
    import json

    email = f"health{next(_scripts)}-{os.getpid()}@example.test"
    added, _ = _add_oauth2_account(desk, "watched", email, provider, oauth_dovecot)
    assert added.exit_code == 0, added.output
    provider.revoke(email)
    _run(desk, ["mail", "poll", "--account", "watched"])
    health = _run(desk, ["desk", "health", "--json"])
    assert health.exit_code & 2, health.output
    accounts = json.loads(health.output)["accounts"]
    assert next(a for a in accounts if a["account"] == "watched")["state"] == "needs-reconnecting"
