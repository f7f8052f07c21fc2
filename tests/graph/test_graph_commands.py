"""`mail accounts add --protocol graph` and `mail servers add --protocol graph` as a script runs
them (issue 13, item 4): the client secret from stdin only, Graph's scope by default, then
mail polled and sent through the Graph stand-in (tests/servers/graph.py: no Graph server can
run here); options that cannot work are refused and add nothing. Both databases."""

from __future__ import annotations

import sqlalchemy as sa

from switchboard.db import db
from switchboard.inbound.models import IncomingAccount, InboundMessage
from switchboard.oauth.models import OAuthGrant
from switchboard.outbox.models import OutgoingServer

from .test_graph_poll import mail


def run(app, args, stdin=""):
    return app.test_cli_runner().invoke(args=args, input=stdin)


def microsoft_options(provider, mailbox):
    client_id, secret = provider.add_client(mailbox=mailbox)
    return ["--oauth2-provider", "microsoft", "--oauth2-tenant", "tenant-1", "--oauth2-client-id", client_id,
            "--oauth2-client-secret-stdin", "--oauth2-token-endpoint", f"{provider.base_url}/tenant-1"], secret


def test_a_graph_mailbox_added_from_a_script_is_polled_and_listed(desk, graph, provider, mailbox, server_tls):
    graph.append(mailbox, mail("From a script"))
    options, secret = microsoft_options(provider, mailbox)
    added = run(desk, ["mail", "accounts", "add", "--name", "m365", "--protocol", "graph", "--host", "127.0.0.1",
                       "--port", str(graph.port), "--trusted-ca", str(server_tls.ca), "--username", mailbox,
                       *options], stdin=secret + "\n")
    assert added.exit_code == 0, added.output
    assert secret not in added.output
    assert f"tls {mailbox} at 127.0.0.1:{graph.port} folder INBOX, then move to Processed" in added.output
    account = db.session.scalars(sa.select(IncomingAccount).where(IncomingAccount.name == "m365")).one()
    grant = db.session.get(OAuthGrant, account.oauth_grant_id)
    assert grant.scopes == "https://graph.microsoft.com/.default"
    assert secret not in grant.client_secret_encrypted
    polled = run(desk, ["mail", "poll", "--account", "m365"])
    assert polled.exit_code == 0, polled.output
    assert "m365: ok: stored 1 new, settled 1 in the mailbox" in polled.output
    assert db.session.scalar(sa.select(InboundMessage.subject).where(InboundMessage.account_id == account.id)) \
        == "From a script"
    line = next(l for l in run(desk, ["mail", "accounts", "list"]).output.splitlines() if l.startswith("m365\t"))
    assert line.split("\t")[1:3] == ["graph", "ok"] and "OAuth2 microsoft app" in line


def test_a_graph_server_added_from_a_script_sends_the_outbox(desk, graph, provider, mailbox, server_tls):
    from switchboard.outbox import catalogue
    from switchboard.outbox.queue import queue_mail

    options, secret = microsoft_options(provider, mailbox)
    added = run(desk, ["mail", "servers", "add", "--name", "m365", "--protocol", "graph", "--host", "127.0.0.1",
                       "--port", str(graph.port), "--trusted-ca", str(server_tls.ca), "--username", mailbox,
                       "--from-address", mailbox, *options], stdin=secret + "\n")
    assert added.exit_code == 0, added.output
    assert f"graph tls 127.0.0.1:{graph.port} as {mailbox}" in added.output and secret not in added.output
    queue_mail(catalogue.MANUAL_MESSAGE, ["customer@example.org"], subject="Sent by Graph", text="Hi.\n",
               automatic=False)
    db.session.commit()
    sent = run(desk, ["outbox", "send"])
    assert sent.exit_code == 0, sent.output
    assert len(graph.sent(mailbox)) == 1


def test_graph_options_that_cannot_work_are_refused_and_add_nothing(desk, graph, provider, mailbox):
    options, secret = microsoft_options(provider, mailbox)
    generic = ["--oauth2-provider", "generic", "--oauth2-client-id", "x", "--oauth2-client-secret-stdin",
               "--oauth2-token-endpoint", provider.token_endpoint]
    cases = [
        (["mail", "accounts", "add", "--name", "a", "--protocol", "graph", "--username", mailbox,
          "--password-stdin"], "pw\n", "OAuth2 only"),
        (["mail", "accounts", "add", "--name", "a", "--protocol", "graph", "--username", mailbox, *generic],
         "s\n", "--oauth2-provider microsoft"),
        (["mail", "accounts", "add", "--name", "a", "--protocol", "graph", "--security", "starttls",
          "--username", mailbox, *options], secret + "\n", "HTTPS only"),
        (["mail", "accounts", "add", "--name", "a", "--protocol", "graph", *options], secret + "\n",
         "Give the mailbox"),
        (["mail", "servers", "add", "--name", "s", "--protocol", "graph", "--from-address", mailbox,
          "--username", mailbox, "--security", "starttls", *options], secret + "\n", "HTTPS only"),
        (["mail", "servers", "add", "--name", "s", "--protocol", "graph", "--from-address", mailbox,
          "--username", mailbox], "", "OAuth2 only"),
        (["mail", "servers", "add", "--name", "s", "--from-address", mailbox], "", "needs --host"),
    ]
    for args, stdin, said in cases:
        result = run(desk, args, stdin)
        assert result.exit_code != 0 and said in result.output, (args, result.output)
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(IncomingAccount)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutgoingServer)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OAuthGrant)) == 0


def test_a_graph_account_added_from_a_script_is_shown_and_saved_on_its_admin_page(
        desk, graph, provider, mailbox, server_tls, people):
    from tests.portal.conftest import Portal

    options, secret = microsoft_options(provider, mailbox)
    added = run(desk, ["mail", "accounts", "add", "--name", "m365-page", "--protocol", "graph", "--host",
                       "127.0.0.1", "--port", str(graph.port), "--trusted-ca", str(server_tls.ca),
                       "--username", mailbox, *options], stdin=secret + "\n")
    assert added.exit_code == 0, added.output
    account = db.session.scalars(sa.select(IncomingAccount).where(IncomingAccount.name == "m365-page")).one()
    admin = Portal(desk.test_client())
    assert admin.login(people["admin"].email, "admin-password-1").status_code == 302
    page = admin.get(f"/admin/mail/accounts/{account.id}")
    assert page.status_code == 200 and "OAuth2 (microsoft)" in page.get_data(as_text=True)
    saved = admin.post(f"/admin/mail/accounts/{account.id}", {
        "name": "m365-page", "protocol": "graph", "host": "127.0.0.1", "port": str(graph.port),
        "security": "tls", "username": mailbox, "folder": "INBOX", "processed_folder": "Processed",
        "after_processing": "move", "poll_interval_seconds": "120", "batch_size": "100",
        "max_messages_per_session": "1000", "timeout_seconds": "30", "unknown_senders": "create",
        "allow_new_calls": "y", "default_priority": "", "default_group": "", "default_analyst": ""})
    assert saved.status_code == 303, saved.get_data(as_text=True)[:2000]
    db.session.expire_all()
    assert db.session.get(IncomingAccount, account.id).poll_interval_seconds == 120
