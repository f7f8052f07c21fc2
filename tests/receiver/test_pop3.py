"""The POP3 poller against a real Dovecot: mail is deleted only once it is
committed, deletions take effect at QUIT, and an interrupted run resumes
without fetching or storing anything twice."""

import pytest
import sqlalchemy as sa

from receiver.poll import poll_account
from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.inbound.models import IncomingAccount, InboundMessage

from .conftest import make_mail, storage_fails


def fill(dovecot, mail_account, count: int) -> None:
    for i in range(count):
        dovecot.append(mail_account.email, make_mail(subject=f"Log call: problem number {i}"))


def rows() -> list[InboundMessage]:
    db.session.rollback()
    return list(db.session.scalars(sa.select(InboundMessage).order_by(InboundMessage.id)))


@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
def test_poll_stores_then_deletes_and_logs_calls(app, dovecot, mail_account, mailbox_account, security):
    mailbox_account(mail_account, "pop3", security, name="pop")
    fill(dovecot, mail_account, 3)
    result = app.test_cli_runner().invoke(args=["mail", "poll"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["pop: ok: stored 3 new, settled 3 in the mailbox", "acted on 3: 3 processed"]
    assert dovecot.messages(mail_account.email) == []
    assert sorted(db.session.scalars(sa.select(Call.summary))) == [f"problem number {i}" for i in range(3)]
    assert {r.source for r in rows()} == {"pop3"}


def test_keep_on_server_fetches_each_message_once(app, dovecot, mail_account, mailbox_account):
    account_id = mailbox_account(mail_account, "pop3", after_processing="seen")
    fill(dovecot, mail_account, 2)
    assert poll_account(account_id).stored == 2
    dovecot.append(mail_account.email, make_mail(subject="Log call: one more"))
    again = poll_account(account_id)
    assert (again.stored, again.duplicates) == (1, 0)
    assert len(dovecot.messages(mail_account.email)) == 3  # all still on the server
    assert [r.deliveries for r in rows()] == [1, 1, 1]


def test_a_run_interrupted_before_quit_deletes_nothing_and_the_next_resumes(app, dovecot, mail_account,
                                                                           mailbox_account, monkeypatch):
    from receiver import pop3

    account_id = mailbox_account(mail_account, "pop3")
    fill(dovecot, mail_account, 3)

    def crash(*args):
        raise RuntimeError("the process died here")

    monkeypatch.setattr(pop3, "settle", crash)  # stored and committed, DELE never sent
    crashed = poll_account(account_id)
    assert not crashed.ok and "the process died here" in crashed.error
    assert len(rows()) == 3 and len(dovecot.messages(mail_account.email)) == 3
    monkeypatch.undo()
    resumed = poll_account(account_id)
    assert resumed.ok, resumed.error
    assert (resumed.stored, resumed.resumed, resumed.settled) == (0, 3, 3)
    assert dovecot.messages(mail_account.email) == []
    assert [r.deliveries for r in rows()] == [1, 1, 1]  # not RETRieved and stored again


def test_nothing_is_deleted_unless_it_was_committed(app, dovecot, mail_account, mailbox_account):
    account_id = mailbox_account(mail_account, "pop3")
    fill(dovecot, mail_account, 2)
    with storage_fails():
        failed = poll_account(account_id)
    assert not failed.ok and "2 message(s) left in the mailbox" in failed.error
    assert len(dovecot.messages(mail_account.email)) == 2 and rows() == []
    assert db.session.get(IncomingAccount, account_id).last_error == failed.error
    recovered = poll_account(account_id)
    assert recovered.ok and recovered.stored == 2
    assert dovecot.messages(mail_account.email) == []


def test_wrong_password_is_recorded_and_the_mail_stays(app, dovecot, mail_account, mailbox_account):
    account_id = mailbox_account(mail_account, "pop3", password="not-the-password")
    fill(dovecot, mail_account, 1)
    result = app.test_cli_runner().invoke(args=["mail", "poll", "--account", "pop3-none"])
    assert result.exit_code == 1
    assert result.output.startswith(f"pop3-none: FAILED: login refused by 127.0.0.1:{dovecot.ports.pop3} "
                                    f"for {mail_account.email}: -ERR [AUTH] Authentication failed.")
    assert db.session.get(IncomingAccount, account_id).last_error.startswith("login refused")
    assert len(dovecot.messages(mail_account.email)) == 1


def test_big_messages_are_fetched_a_few_at_a_time_and_all_arrive(app, dovecot, mail_account, mailbox_account,
                                                                monkeypatch):
    from receiver import poll

    monkeypatch.setattr(poll, "FETCH_BYTES", 5_000)  # as if each message were tens of megabytes
    account_id = mailbox_account(mail_account, "pop3")
    for i in range(4):
        dovecot.append(mail_account.email, make_mail(subject=f"Log call: big one {i}", size=3_000))
    result = poll_account(account_id)
    assert (result.ok, result.stored, result.settled) == (True, 4, 4)
    assert dovecot.messages(mail_account.email) == []
    assert len(rows()) == 4


@pytest.mark.parametrize("after", ["delete", "seen"])
@pytest.mark.parametrize("waiting", [1, 3])
def test_issue8_commit_failing_deletes_nothing_and_the_next_poll_stores_each_once(
        app, dovecot, mail_account, mailbox_account, after, waiting):
    """The database refuses the COMMIT (faults.commit_fails): nothing is
    DELEted, for the batch (3) and for a single message; the next poll stores
    each once (and, set to delete, deletes them then)."""
    from .faults import commit_fails

    account_id = mailbox_account(mail_account, "pop3", after_processing=after)
    fill(dovecot, mail_account, waiting)
    with commit_fails():
        failed = poll_account(account_id)
    assert not failed.ok and failed.stored == 0 and failed.settled == 0
    assert f"{waiting} message(s) left in the mailbox" in failed.error
    assert len(dovecot.messages(mail_account.email)) == waiting and rows() == []
    again = poll_account(account_id)
    assert again.ok, again.error
    assert again.stored == waiting and [r.deliveries for r in rows()] == [1] * waiting
    assert len(dovecot.messages(mail_account.email)) == (0 if after == "delete" else waiting)
    assert poll_account(account_id).stored == 0  # and never again
