"""The same message through two accounts is one call (issue 10, item 11), with
the real servers: Postfix delivering one mail to the receiver over LMTP and into
a Dovecot mailbox the desk polls; a POP3 and an IMAP account on one mailbox;
and a copy a gateway altered on its way into the mailbox. Each account keeps
its own stored copy (its audit trail); the desk acts on the first."""

import pwd

import sqlalchemy as sa

from receiver.poll import poll_account
from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.inbound.models import InboundMessage
from switchboard.inbound.process import process_pending

from .conftest import make_mail, wait_for


def stored() -> list[tuple[str, str]]:
    db.session.rollback()
    return sorted((r.source, r.status.value) for r in db.session.scalars(sa.select(InboundMessage)))


def calls() -> list[str]:
    db.session.rollback()
    return sorted(db.session.scalars(sa.select(Call.summary)))


def test_one_mail_to_the_lmtp_address_and_cc_a_polled_mailbox_is_one_call(
        app, desk_accounts, receiver, postfix_factory, dovecot, mail_account, mailbox_account):
    from tests.servers.process import free_port

    mail_user = pwd.getpwnam("mail")  # the owner of Dovecot's mailboxes (tests/servers/dovecot.py)
    # Postfix's own virtual(8) agent delivers example.test into the Maildir Dovecot serves;
    # desk.test goes to the receiver over LMTP, as in production.
    postfix = postfix_factory(free_port(), domains=("desk.test",), settings={
        "virtual_mailbox_domains": "example.test",
        "virtual_mailbox_base": str(dovecot.root / "mail"),
        "virtual_mailbox_maps": f"inline:{{ {mail_account.email}={mail_account.email.lower()}/ }}",
        "virtual_uid_maps": f"static:{mail_user.pw_uid}",
        "virtual_gid_maps": f"static:{mail_user.pw_gid}",
        "virtual_minimum_uid": "1",
    })
    receiver(port=postfix.lmtp_port)
    imap_account = mailbox_account(mail_account, "imap", name="support")
    raw = make_mail(subject="Log call: the projector in room 4 is dead",
                    to=f"help@desk.test, {mail_account.email}")
    postfix.send("carol@example.org", ["help@desk.test", mail_account.email], raw)
    delivered = postfix.wait_until_delivered(timeout=20)
    assert sorted(d.status for d in delivered) == ["sent", "sent"], delivered
    assert wait_for(lambda: calls() == ["the projector in room 4 is dead"])
    assert len(mail_account.messages()) == 1  # Postfix put its copy into the mailbox
    assert poll_account(imap_account).duplicates == 1  # "1 already received"
    process_pending()
    assert stored() == [("imap", "ignored"), ("lmtp", "processed")]
    assert calls() == ["the projector in room 4 is dead"]


def test_a_pop3_and_an_imap_account_on_the_same_mailbox_give_one_call(app, dovecot, mail_account, mailbox_account):
    imap_account = mailbox_account(mail_account, "imap", name="imap", after_processing="seen")
    pop_account = mailbox_account(mail_account, "pop3", name="pop", after_processing="delete")
    dovecot.append(mail_account.email, make_mail(subject="Log call: no sound on the laptop"))
    assert poll_account(imap_account).stored == 1
    pop = poll_account(pop_account)
    assert (pop.stored, pop.duplicates, pop.settled) == (0, 1, 1)  # recorded, deleted, not acted on again
    process_pending()
    assert stored() == [("imap", "processed"), ("pop3", "ignored")]
    assert calls() == ["no sound on the laptop"]


def test_a_copy_a_gateway_altered_on_its_way_into_the_mailbox_is_the_same_call(
        app, desk_accounts, receiver, dovecot, mail_account, mailbox_account):
    running = receiver()
    imap_account = mailbox_account(mail_account, "imap", name="support")
    raw = make_mail(subject="Log call: badge reader at the back door", message_id="<badge-7@example.org>",
                    body="It beeps red for everyone.\n")
    client = running.raw()
    client.deliver("carol@example.org", ["help@desk.test"], raw)
    client.close()
    # An "external sender" banner above the text and a footer below, as Exchange Online adds.
    altered = raw.replace(b"It beeps red", b"[EXTERNAL] This message came from outside the organisation.\r\n\r\n"
                                          b"It beeps red") + b"--\r\nScanned by the gateway\r\n"
    dovecot.append(mail_account.email, altered)
    assert wait_for(lambda: calls() == ["badge reader at the back door"])
    assert poll_account(imap_account).duplicates == 1
    process_pending()
    assert stored() == [("imap", "ignored"), ("lmtp", "processed")]
    assert calls() == ["badge reader at the back door"]
