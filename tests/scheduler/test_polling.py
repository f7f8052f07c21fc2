"""The scheduler's pollers in this process: accounts polled at once, each
storing and acting through the write gate, every message acted on once
(on SQLite the gate lets one writing transaction through at a time)."""

import sqlalchemy as sa

from scheduler.polling import AccountPolls
from switchboard.calls.models import Call
from switchboard.db import db, utcnow
from switchboard.inbound.accounts import create_account
from switchboard.inbound.models import IncomingAccount, InboundMessage
from tests.receiver.conftest import make_mail, wait_for
from tests.servers.fixtures import MailAccount


def _imap_account(name: str, mailbox: MailAccount) -> int:
    account = create_account(name, "imap", host="127.0.0.1", port=mailbox.server.ports.imap, security="none",
                             username=mailbox.email, password=mailbox.password, timeout_seconds=10)
    db.session.commit()
    return account.id


def test_two_accounts_polled_at_once_store_and_act_on_every_message_once(app, dovecot, mail_account):
    second = MailAccount(dovecot, "second-" + mail_account.email, "second-password-1")
    dovecot.add_user(second.email, second.password)
    try:
        for n in range(15):
            mail_account.append(make_mail(subject=f"Log call: first {n}"))
            second.append(make_mail(subject=f"Log call: second {n}"))
        ids = [_imap_account("first", mail_account), _imap_account("second", second)]
        polls = AccountPolls(app, threads=2)
        try:
            assert polls.dispatch() == 2
            # Handed once: an account being polled is not handed again (nor one polled since: 60 s).
            assert polls.dispatch() == 0
            assert wait_for(lambda: not polls.polling(), timeout=60, interval=0.05)
        finally:
            polls.shutdown()
        db.session.rollback()
        summaries = sorted(db.session.scalars(sa.select(Call.summary)))
        assert summaries == sorted([f"first {n}" for n in range(15)] + [f"second {n}" for n in range(15)])
        rows = db.session.execute(sa.select(InboundMessage.status, InboundMessage.attempts)).all()
        assert len(rows) == 30 and {(status.value, attempts) for status, attempts in rows} == {("processed", 1)}
        for account_id in ids:
            account = db.session.get(IncomingAccount, account_id)
            assert account.last_success_at is not None and account.failing_since is None
        assert mail_account.messages() == [] and second.messages() == []
        # Not due again before its interval (60 s): nothing is handed.
        assert polls.due_accounts(utcnow()) == []
    finally:
        dovecot.clear(second.email)
