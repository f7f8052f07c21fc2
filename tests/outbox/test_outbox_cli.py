"""`flask mail servers add|list|remove`, `flask outbox send` and the outbox counts in `desk stats`."""

import json

import sqlalchemy as sa

from switchboard.calls.services import log_call
from switchboard.db import db
from switchboard.outbox.models import OutgoingServer
from switchboard.outbox.servers import usable_servers

from .conftest import SINK_PASSWORD, SINK_USER
from .smtp_sink import free_port


def run(app, *args, input=None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def test_servers_add_list_remove(app, test_pki):
    added = run(app, "mail", "servers", "add", "--name", "relay", "--host", "smtp.example.org",
                "--username", SINK_USER, "--password-stdin", "--from-address", "Desk@Example.org",
                "--from-name", "Acme Service Desk", "--trusted-ca", str(test_pki.ca_file),
                input=SINK_PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert added.output == f"Added outgoing server relay: starttls smtp.example.org:587 as {SINK_USER}, own CA\n"
    assert SINK_PASSWORD not in db.session.scalar(sa.select(OutgoingServer.password_encrypted))
    [settings] = usable_servers().settings
    assert settings.password == SINK_PASSWORD and settings.from_address == "desk@example.org"

    backup = run(app, "mail", "servers", "add", "--name", "backup", "--host", "127.0.0.1", "--port", "2525",
                 "--security", "none", "--from-address", "desk@example.org", "--priority", "1")
    assert backup.exit_code == 0, backup.output
    listed = run(app, "mail", "servers", "list")
    assert listed.output.splitlines() == [
        "backup\tnone 127.0.0.1:2525\tdesk@example.org\t1\tactive",
        f"relay\tstarttls smtp.example.org:587 as {SINK_USER}, own CA\tAcme Service Desk <desk@example.org>\t10\tactive",
    ]
    removed = run(app, "mail", "servers", "remove", "backup")
    assert removed.exit_code == 0 and removed.output == "Removed outgoing server backup.\n"
    assert run(app, "mail", "servers", "remove", "backup").exit_code == 1


def test_servers_add_refuses_a_password_on_the_command_line_and_bad_settings(app):
    common = ["mail", "servers", "add", "--name", "x", "--host", "smtp.example.org", "--from-address", "d@example.org"]
    assert run(app, *common, "--password", "secret").exit_code == 2  # no such option
    clear_text = run(app, *common, "--security", "none", "--username", "u", "--password-stdin", input="pw\n")
    assert clear_text.exit_code == 1 and "AUTH needs TLS or STARTTLS" in clear_text.output
    assert run(app, *common, "--username", "u", "--password-stdin", input="\n").exit_code == 1
    assert "--password-stdin" in run(app, *common, "--username", "u").output
    assert "Not a valid From address" in run(app, *common[:-1], "nobody").output
    assert db.session.scalar(sa.select(sa.func.count(OutgoingServer.id))) == 0


def test_the_mail_group_holds_the_receivers_commands_and_ours(app):
    mail = app.cli.commands["mail"]
    assert {"servers", "accounts", "ingest"} <= set(mail.commands)


def test_outbox_send_prints_counts(app, people, smtp_sink):
    run(app, "mail", "servers", "add", "--name", "sink", "--host", smtp_sink.host, "--port", str(smtp_sink.port),
        "--security", "none", "--from-address", "desk@example.org")
    log_call(people["carol"], "Printer jams")
    log_call(people["dave"], "Screen flickers")
    db.session.commit()
    result = run(app, "outbox", "send", "--limit", "1")
    assert (result.exit_code, result.output) == (0, "sent 1, deferred 0, failed 0\n")
    result = run(app, "outbox", "send")
    assert (result.exit_code, result.output) == (0, "sent 1, deferred 0, failed 0\n")
    assert len(smtp_sink.messages) == 2
    stats = json.loads(run(app, "desk", "stats", "--json").output)
    assert stats["outbox"] == {"queued": 0, "sending": 0, "sent": 2, "deferred": 0, "failed": 0, "cancelled": 0}


def test_outbox_send_exits_75_when_no_server_can_be_reached(app, people):
    assert run(app, "outbox", "send").output == "sent 0, deferred 0, failed 0\n"  # nothing due: fine
    log_call(people["carol"], "Printer jams")
    db.session.commit()
    result = run(app, "outbox", "send")
    assert result.exit_code == 75
    assert "no usable outgoing server" in result.output
    run(app, "mail", "servers", "add", "--name", "down", "--host", "127.0.0.1", "--port", str(free_port()),
        "--security", "none", "--from-address", "desk@example.org", "--timeout", "2")
    result = run(app, "outbox", "send")
    assert result.exit_code == 75
    assert result.output.splitlines()[0] == "sent 0, deferred 1, failed 0"
    assert "connection refused" in result.output
    stats = json.loads(run(app, "desk", "stats", "--json").output)
    assert stats["outbox"]["deferred"] == 1
