"""Configuring incoming accounts, from the command line (`mail accounts`) and
through the domain functions the admin pages call."""

import json

import pytest

from switchboard import secrets
from switchboard.db import db
from switchboard.errors import InvalidInput, PermissionDenied
from switchboard.inbound.accounts import create_account, get_account, list_accounts, update_account
from switchboard.inbound.models import AfterProcessing, Protocol, Security
from switchboard.inbound.store import account_for_recipient


def test_add_list_and_remove_an_lmtp_account(app):
    runner = app.test_cli_runner()
    added = runner.invoke(args=["mail", "accounts", "add", "--name", "help", "--protocol", "lmtp",
                                "--address", "Help@Desk.Test", "--address", "@support.desk.test"])
    assert added.exit_code == 0, added.output
    assert account_for_recipient("help@desk.test").name == "help"
    assert account_for_recipient("anyone@support.desk.test").name == "help"
    listed = runner.invoke(args=["mail", "accounts", "list"])
    assert listed.output == "help\tlmtp\tok\t@support.desk.test, help@desk.test\t-\n"
    removed = runner.invoke(args=["mail", "accounts", "remove", "help"])
    assert removed.exit_code == 0 and "Deactivated account help." in removed.output
    assert account_for_recipient("help@desk.test") is None  # the LMTP server now refuses it
    assert runner.invoke(args=["mail", "accounts", "list"]).output.startswith("help\tlmtp\tinactive\t")
    deleted = runner.invoke(args=["mail", "accounts", "remove", "help", "--delete"])
    assert deleted.exit_code == 0
    assert runner.invoke(args=["mail", "accounts", "list"]).output == ""


def test_add_an_imap_account_reads_the_password_from_stdin_and_keeps_it_encrypted(app, people, tmp_path):
    ca = tmp_path / "ca.pem"
    from tests.servers.tls import make_certificates

    ca.write_bytes(make_certificates(tmp_path / "pki").ca.read_bytes())
    result = app.test_cli_runner().invoke(
        args=["mail", "accounts", "add", "--name", "support", "--protocol", "imap", "--host", "imap.example.org",
              "--security", "starttls", "--username", "support@example.org", "--password-stdin",
              "--folder", "Desk", "--after", "seen", "--trusted-ca", str(ca), "--no-new-calls",
              "--reject-unknown-senders", "--default-group", "Service Desk", "--default-priority", "2"],
        input="s3cret mailbox password\n")
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    account = get_account("support")
    assert account.password_encrypted and "s3cret" not in account.password_encrypted
    assert secrets.decrypt(account.password_encrypted) == "s3cret mailbox password"
    assert (account.port, account.security, account.folder, account.after_processing) == (
        143, Security.STARTTLS, "Desk", AfterProcessing.SEEN)
    assert account.trusted_ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert not account.allow_new_calls and account.unknown_senders.value == "reject"
    assert account.default_group_id == people["service_desk"].id and account.default_priority_id == 2
    line = app.test_cli_runner().invoke(args=["mail", "accounts", "list"]).output
    assert line.startswith("support\timap\twaiting\tstarttls support@example.org at imap.example.org:143 folder Desk")


def test_add_refuses_what_cannot_work_and_says_why(app, desk_accounts, tmp_path):
    runner = app.test_cli_runner()
    no_password = runner.invoke(args=["mail", "accounts", "add", "--name", "x", "--protocol", "imap",
                                      "--host", "imap.example.org", "--username", "x"])
    assert no_password.exit_code != 0 and "--password-stdin" in no_password.output
    empty = runner.invoke(args=["mail", "accounts", "add", "--name", "x", "--protocol", "imap", "--host", "h",
                                "--username", "x", "--password-stdin"], input="\n")
    assert empty.exit_code != 0 and "stdin gave no password" in empty.output
    pop_move = runner.invoke(args=["mail", "accounts", "add", "--name", "x", "--protocol", "pop3", "--host", "h",
                                   "--username", "x", "--password-stdin", "--after", "move"], input="pw\n")
    assert pop_move.exit_code != 0 and "POP3 has no folders" in pop_move.output
    taken = runner.invoke(args=["mail", "accounts", "add", "--name", "x", "--protocol", "lmtp",
                                "--address", "sales@desk.test"])
    assert taken.exit_code != 0 and "sales@desk.test already belongs to the account 'sales'" in taken.output
    bad_ca = tmp_path / "not-a-ca.pem"
    bad_ca.write_text("hello")
    wrong = runner.invoke(args=["mail", "accounts", "add", "--name", "x", "--protocol", "imap", "--host", "h",
                                "--username", "x", "--password-stdin", "--trusted-ca", str(bad_ca)], input="pw\n")
    assert wrong.exit_code != 0 and "not a PEM certificate" in wrong.output
    no_group = runner.invoke(args=["mail", "accounts", "add", "--name", "x", "--protocol", "lmtp",
                                   "--address", "x@desk.test", "--default-group", "Nobody"])
    assert no_group.exit_code != 0 and "No group named 'Nobody'" in no_group.output
    assert [a.name for a in list_accounts()] == ["help", "sales"]  # nothing half-added


def test_pop3_defaults_to_deleting_and_ports_follow_security(app):
    pop = create_account("pop", "pop3", host="pop.example.org", username="u", password="pw")
    imaps = create_account("imaps", "imap", host="imap.example.org", username="u", password="pw")
    assert (pop.port, pop.after_processing) == (995, AfterProcessing.DELETE)
    assert (imaps.port, imaps.security, imaps.after_processing) == (993, Security.TLS, AfterProcessing.MOVE)


def test_update_keeps_the_password_unless_given_and_checks_the_actor(app, people):
    account = create_account("box", Protocol.IMAP, host="imap.example.org", username="u", password="first-one")
    update_account(account, actor=people["admin"], folder="Support", addresses=["box@desk.test"])
    assert secrets.decrypt(account.password_encrypted) == "first-one"
    assert account.folder == "Support" and [a.address for a in account.addresses] == ["box@desk.test"]
    update_account(account, password="second-one")
    assert secrets.decrypt(account.password_encrypted) == "second-one"
    with pytest.raises(PermissionDenied):
        update_account(account, actor=people["anna"], folder="Elsewhere")
    with pytest.raises(InvalidInput):
        update_account(account, batch_size=0)
    db.session.rollback()


def test_desk_stats_counts_inbound_mail_by_status(app, tmp_path):
    from tests.receiver.conftest import make_mail

    path = tmp_path / "m.eml"
    path.write_bytes(make_mail())
    runner = app.test_cli_runner()
    assert runner.invoke(args=["mail", "ingest", str(path)]).exit_code == 0
    data = json.loads(runner.invoke(args=["desk", "stats", "--json"]).output)
    assert data["inbound"] == {"new": 0, "processed": 1, "ignored": 0, "rejected": 0, "failed": 0, "warnings": 0}
