"""What a poll leaves in the mailbox, per protocol and after-processing policy,
read back from the real Dovecot over IMAP after `mail poll` (issue 10, item 15):
"settled N" counts only what the server moved, flagged or deleted, and a POP3
account added without --after deletes, as the README says."""

import pytest
from imapclient import IMAPClient

from switchboard.inbound.accounts import get_account
from switchboard.inbound.models import AfterProcessing

from .conftest import make_mail


def mailbox(dovecot, mail_account) -> dict[str, list[bool]]:
    """{folder: [seen?, ...]} as an IMAP client sees the mailbox now."""
    with IMAPClient(dovecot.host, port=dovecot.ports.imap, ssl=False, timeout=10) as client:
        client.login(mail_account.email, mail_account.password)
        found = {}
        for _, _, name in client.list_folders():
            client.select_folder(name, readonly=True)
            flags = client.fetch(client.search(["NOT", "DELETED"]), ["FLAGS"])
            found[name] = [b"\\Seen" in data[b"FLAGS"] for _, data in sorted(flags.items())]
        return found


@pytest.mark.parametrize("protocol, after, line, left", [
    ("imap", "move", "settled 2 in the mailbox", {"INBOX": [], "Processed": [False, False]}),
    ("imap", "seen", "settled 2 in the mailbox", {"INBOX": [True, True]}),
    ("imap", "delete", "settled 2 in the mailbox", {"INBOX": []}),
    ("pop3", "delete", "settled 2 in the mailbox", {"INBOX": []}),
    # Kept on the server: nothing was done there, so nothing is "settled" (it said 2 before).
    ("pop3", "seen", "settled 0 in the mailbox, 2 kept on the server", None),
])
def test_a_poll_settles_only_what_the_server_did_read_back_per_protocol_and_policy(
        app, dovecot, mail_account, mailbox_account, protocol, after, line, left):
    mailbox_account(mail_account, protocol, name="box", after_processing=after)
    for subject in ("Log call: printer", "Log call: scanner"):
        dovecot.append(mail_account.email, make_mail(subject=subject))
    done = app.test_cli_runner().invoke(args=["mail", "poll"])
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[0] == f"box: ok: stored 2 new, {line}"
    found = mailbox(dovecot, mail_account)
    if left is None:  # POP3 keeps both (Dovecot flags what POP3 retrieved as seen: not asserted)
        assert len(found["INBOX"]) == 2
    else:
        assert {name: seen for name, seen in found.items() if name in left or seen} == left


def test_a_pop3_account_added_without_after_deletes_what_it_stored(app, dovecot, mail_account):
    runner = app.test_cli_runner()
    added = runner.invoke(args=["mail", "accounts", "add", "--name", "pop", "--protocol", "pop3",
                                "--host", dovecot.host, "--port", str(dovecot.ports.pop3), "--security", "none",
                                "--username", mail_account.email, "--password-stdin"],
                          input=mail_account.password + "\n")
    assert added.exit_code == 0, added.output
    assert get_account("pop").after_processing is AfterProcessing.DELETE
    dovecot.append(mail_account.email, make_mail(subject="Log call: monitor"))
    done = runner.invoke(args=["mail", "poll"])
    assert done.output.splitlines()[0] == "pop: ok: stored 1 new, settled 1 in the mailbox"
    assert mailbox(dovecot, mail_account) == {"INBOX": []}
