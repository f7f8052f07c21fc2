"""The IMAP poller against a real Dovecot: what the mailbox owner sees
(moved, flagged, deleted mail) and what the desk holds afterwards."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from imapclient import IMAPClient

from receiver.poll import poll_account
from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.inbound.models import IncomingAccount, InboundMessage, MailboxReceipt

from .conftest import make_mail, storage_fails


def fill(dovecot, mail_account, count: int, folder="INBOX") -> list[bytes]:
    mails = [make_mail(subject=f"Log call: problem number {i}") for i in range(count)]
    for mail in mails:
        dovecot.append(mail_account.email, mail, folder)
    return mails


def calls() -> list[str]:
    db.session.rollback()
    return sorted(db.session.scalars(sa.select(Call.summary)))


def rows() -> list[InboundMessage]:
    db.session.rollback()
    return list(db.session.scalars(sa.select(InboundMessage).order_by(InboundMessage.id)))


def account(account_id) -> IncomingAccount:
    db.session.rollback()
    return db.session.get(IncomingAccount, account_id)


def flags(dovecot, mail_account, folder="INBOX") -> list[set]:
    with IMAPClient("127.0.0.1", port=dovecot.ports.imap, ssl=False) as client:
        client.login(mail_account.email, mail_account.password)
        client.select_folder(folder, readonly=True)
        found = client.get_flags(client.search("ALL"))
        return [set(f) for _, f in sorted(found.items())]


@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
def test_poll_stores_moves_and_logs_calls(app, dovecot, mail_account, mailbox_account, security):
    account_id = mailbox_account(mail_account, "imap", security, name="support")
    mails = fill(dovecot, mail_account, 3)
    result = app.test_cli_runner().invoke(args=["mail", "poll"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "support: ok: stored 3 new, settled 3 in the mailbox",
        "acted on 3: 3 processed",
    ]
    assert calls() == ["problem number 0", "problem number 1", "problem number 2"]
    assert dovecot.messages(mail_account.email) == []
    assert dovecot.folders(mail_account.email) == ["INBOX", "Processed"]  # created when missing
    assert sorted(dovecot.messages(mail_account.email, "Processed")) == sorted(mails)
    assert {r.source for r in rows()} == {"imap"}
    polled = account(account_id)
    assert polled.last_success_at is not None and polled.last_error is None


def test_a_server_certificate_from_another_ca_is_refused_and_recorded(app, dovecot, mail_account,
                                                                      mailbox_account, tmp_path):
    from tests.servers.tls import make_certificates

    stranger = make_certificates(tmp_path / "other").ca.read_text()
    account_id = mailbox_account(mail_account, "imap", "tls", trusted_ca_pem=stranger)
    fill(dovecot, mail_account, 1)
    result = poll_account(account_id)
    assert not result.ok
    assert "TLS certificate of 127.0.0.1" in result.error and "not trusted" in result.error
    failed = account(account_id)
    assert failed.last_error == result.error and failed.last_error_at is not None
    assert rows() == [] and len(dovecot.messages(mail_account.email)) == 1
    listed = app.test_cli_runner().invoke(args=["mail", "accounts", "list"]).output
    assert "\tfailing\t" in listed and "not trusted" in listed
    # Without a CA of its own the account trusts only the system's CAs, which do not know ours either.
    failed.trusted_ca_pem = None
    db.session.commit()
    assert "not trusted" in poll_account(account_id).error


def test_seen_policy_flags_the_mail_and_fetches_only_what_is_new(app, dovecot, mail_account, mailbox_account):
    account_id = mailbox_account(mail_account, "imap", after_processing="seen")
    fill(dovecot, mail_account, 2)
    assert poll_account(account_id).stored == 2
    assert flags(dovecot, mail_account) == [{b"\\Seen"}, {b"\\Seen"}]
    dovecot.append(mail_account.email, make_mail(subject="Log call: a third one"))
    again = poll_account(account_id)
    assert (again.stored, again.duplicates, again.settled) == (1, 0, 1)
    assert len(dovecot.messages(mail_account.email)) == 3
    assert all(r.deliveries == 1 for r in rows()) and len(rows()) == 3


def test_delete_policy_removes_the_stored_mail(app, dovecot, mail_account, mailbox_account):
    account_id = mailbox_account(mail_account, "imap", after_processing="delete")
    fill(dovecot, mail_account, 2)
    assert poll_account(account_id).settled == 2
    assert dovecot.messages(mail_account.email) == []
    assert dovecot.folders(mail_account.email) == ["INBOX"]
    assert len(rows()) == 2


def test_move_without_the_move_extension_copies_then_expunges(app, dovecot, mail_account, mailbox_account,
                                                              monkeypatch):
    account_id = mailbox_account(mail_account, "imap", processed_folder="Desk.Done")
    mails = fill(dovecot, mail_account, 2)
    # An older server without MOVE (RFC 6851): Dovecot has it, so hide it.
    original = IMAPClient.has_capability
    monkeypatch.setattr(IMAPClient, "has_capability", lambda self, cap: cap.upper() != "MOVE" and original(self, cap))
    assert poll_account(account_id).settled == 2
    assert dovecot.messages(mail_account.email) == []
    assert sorted(dovecot.messages(mail_account.email, "Desk.Done")) == sorted(mails)


def test_a_poll_interrupted_after_storing_resumes_without_duplicates_or_loss(app, dovecot, mail_account,
                                                                             mailbox_account, monkeypatch):
    from receiver import imap

    account_id = mailbox_account(mail_account, "imap")
    fill(dovecot, mail_account, 3)

    def crash(*args):
        raise RuntimeError("the process died here")

    monkeypatch.setattr(imap, "settle", crash)  # stored and committed, not yet moved
    crashed = poll_account(account_id)
    assert not crashed.ok and "the process died here" in crashed.error
    assert len(rows()) == 3 and len(dovecot.messages(mail_account.email)) == 3
    monkeypatch.undo()
    resumed = poll_account(account_id)
    assert resumed.ok, resumed.error
    assert (resumed.stored, resumed.resumed, resumed.settled) == (0, 3, 3)
    assert dovecot.messages(mail_account.email) == []
    assert len(dovecot.messages(mail_account.email, "Processed")) == 3
    assert [r.deliveries for r in rows()] == [1, 1, 1]  # not fetched and stored again
    assert db.session.scalar(sa.select(sa.func.count()).where(MailboxReceipt.settled.is_(False))) == 0


def test_nothing_is_moved_when_storing_fails(app, dovecot, mail_account, mailbox_account):
    account_id = mailbox_account(mail_account, "imap")
    fill(dovecot, mail_account, 2)
    with storage_fails():
        failed = poll_account(account_id)
    assert not failed.ok and "2 message(s) left in the mailbox" in failed.error
    assert len(dovecot.messages(mail_account.email)) == 2 and rows() == []
    assert account(account_id).last_error == failed.error
    assert poll_account(account_id).stored == 2
    assert dovecot.messages(mail_account.email) == []


def test_a_recreated_folder_is_read_again_but_nothing_is_acted_on_twice(app, dovecot, mail_account,
                                                                        mailbox_account):
    account_id = mailbox_account(mail_account, "imap", after_processing="seen")
    mails = fill(dovecot, mail_account, 2)
    poll_account(account_id)
    first_validity = account(account_id).uidvalidity
    time.sleep(1.01 - time.time() % 1)  # Dovecot's UIDVALIDITY is the creation second
    dovecot.clear(mail_account.email)  # the folder is deleted and made anew: a new UIDVALIDITY
    for mail in mails:
        dovecot.append(mail_account.email, mail)
    again = poll_account(account_id)
    assert again.ok, again.error
    assert account(account_id).uidvalidity != first_validity
    assert (again.stored, again.duplicates) == (0, 2)
    assert [r.deliveries for r in rows()] == [2, 2]
    processed = app.test_cli_runner().invoke(args=["mail", "process"])
    assert processed.output == "acted on 2: 2 processed\n"
    assert len(calls()) == 2


def test_batches_and_the_per_session_limit(app, dovecot, mail_account, mailbox_account):
    account_id = mailbox_account(mail_account, "imap", batch_size=2, max_messages_per_session=3)
    fill(dovecot, mail_account, 5)
    first = poll_account(account_id)
    assert (first.stored, first.settled) == (3, 3)
    assert len(dovecot.messages(mail_account.email)) == 2
    second = poll_account(account_id)
    assert (second.stored, second.settled) == (2, 2)
    assert dovecot.messages(mail_account.email) == []


def test_one_failing_account_does_not_stop_the_others_and_poll_exits_non_zero(app, dovecot, mail_account,
                                                                             mailbox_account):
    mailbox_account(mail_account, "imap", name="a-broken", password="not-the-password")
    mailbox_account(mail_account, "imap", name="b-working")
    closed = account(mailbox_account(mail_account, "pop3", name="c-refused"))
    closed.port = 1  # nothing listens there
    db.session.commit()
    fill(dovecot, mail_account, 1)
    result = app.test_cli_runner().invoke(args=["mail", "poll"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("a-broken: FAILED: login refused by 127.0.0.1:")
    assert lines[0].endswith(f"for {mail_account.email}: [AUTHENTICATIONFAILED] Authentication failed.")
    assert lines[1] == "b-working: ok: stored 1 new, settled 1 in the mailbox"
    assert lines[2] == "c-refused: FAILED: cannot connect to 127.0.0.1:1: connection refused"
    assert "mail poll: 2 account(s) failed: a-broken, c-refused" in result.output
    assert calls() == ["problem number 0"]
    assert "not-the-password" not in result.output
    broken = db.session.scalar(sa.select(IncomingAccount).where(IncomingAccount.name == "a-broken"))
    assert broken.last_error.startswith("login refused") and broken.last_success_at is None
    one = app.test_cli_runner().invoke(args=["mail", "poll", "--account", "b-working"])
    assert one.exit_code == 0 and one.output.startswith("b-working: ok: stored 0 new")


def test_big_messages_are_fetched_a_few_at_a_time_and_all_arrive(app, dovecot, mail_account, mailbox_account,
                                                                monkeypatch):
    from receiver import poll

    monkeypatch.setattr(poll, "FETCH_BYTES", 5_000)  # as if each message were tens of megabytes
    account_id = mailbox_account(mail_account, "imap")
    for i in range(4):
        dovecot.append(mail_account.email, make_mail(subject=f"Log call: big one {i}", size=3_000))
    result = poll_account(account_id)
    assert (result.ok, result.stored, result.settled) == (True, 4, 4)
    assert dovecot.messages(mail_account.email) == []
    assert len(rows()) == 4


def test_mail_poll_command_acts_in_processes_while_it_polls(app, dovecot, mail_account, mailbox_account):
    """`mail poll` as an operator or cron runs it (its own process): acting processes act
    on each fetched batch while the next is fetched; every message is acted on once."""
    mailbox_account(mail_account, "imap", name="box", batch_size=10)
    fill(dovecot, mail_account, 45)
    env = dict(os.environ, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], SECRET_KEY="test-secret",
               RECEIVER_PROCESSES="2")
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "mail", "poll"],
                          cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == ["box: ok: stored 45 new, settled 45 in the mailbox",
                                        "acted on 45: 45 processed"]
    assert calls() == sorted(f"problem number {i}" for i in range(45))
    assert {(r.status.value, r.attempts) for r in rows()} == {("processed", 1)}
    assert dovecot.messages(mail_account.email) == []


@pytest.mark.parametrize("after", ["move", "seen", "delete"])
@pytest.mark.parametrize("waiting", [1, 3])
def test_issue8_commit_failing_leaves_every_message_untouched_and_the_next_poll_stores_each_once(
        app, dovecot, mail_account, mailbox_account, after, waiting):
    """The database refuses the COMMIT (faults.commit_fails: the statements all
    succeed): nothing is moved, flagged or deleted, for the batch (3) and for a
    single message; the next poll stores and settles each once."""
    from .faults import commit_fails

    account_id = mailbox_account(mail_account, "imap", after_processing=after)
    mails = fill(dovecot, mail_account, waiting)
    with commit_fails():
        failed = poll_account(account_id)
    assert not failed.ok and failed.stored == 0 and failed.settled == 0
    assert f"{waiting} message(s) left in the mailbox" in failed.error
    assert sorted(dovecot.messages(mail_account.email)) == sorted(mails)
    assert flags(dovecot, mail_account) == [set()] * waiting  # not \Seen, not \Deleted
    assert "Processed" not in dovecot.folders(mail_account.email) or \
        dovecot.messages(mail_account.email, "Processed") == []
    assert rows() == [] and db.session.scalar(sa.select(sa.func.count()).select_from(MailboxReceipt)) == 0
    again = poll_account(account_id)
    assert again.ok, again.error
    assert (again.stored, again.settled) == (waiting, waiting)
    assert [r.deliveries for r in rows()] == [1] * waiting
