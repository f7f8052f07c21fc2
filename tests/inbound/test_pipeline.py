"""The ingest pipeline end to end (store, match, act, outcome), as a customer
who only ever sends mail and an admin reading the inbound log would see it."""

from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from switchboard.calls.models import Call, CallStatus
from switchboard.calls.services import close_call, log_call
from switchboard.db import db
from switchboard.history.models import EntryKind
from switchboard.history.services import timeline
from switchboard.inbound.models import (
    IncomingAccount,
    IncomingAddress,
    InboundMessage,
    InboundStatus,
    Protocol,
    UnknownSenders,
)
from switchboard.inbound.process import process_pending
from switchboard.inbound.store import store_message
from switchboard.outbox import catalogue
from switchboard.outbox.models import OutboxMessage
from switchboard.outbox.queue import queue_mail
from switchboard.people.services import find_person
from switchboard.requests.models import TaskKind, TaskStatus
from switchboard.requests.services import TaskSpec, create_request


def mail(subject, body="Hello", *, sender="carol@example.org", headers=None, attachments=()):
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "help@desk.test"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    for filename, data in attachments:
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    return msg.as_bytes()


def deliver(raw, account=None, source="lmtp", envelope_from="carol@example.org"):
    stored = store_message(raw, source=source, account=account, envelope_from=envelope_from,
                           envelope_to=["help@desk.test"])
    db.session.commit()
    process_pending()
    return db.session.get(InboundMessage, stored.inbound_id)


def deliver_together(raws, account):
    """Stores several mails, then acts on them in one batch."""
    ids = [store_message(raw, source="lmtp", account=account, envelope_to=["help@desk.test"]).inbound_id
           for raw in raws]
    db.session.commit()
    process_pending()
    return [db.session.get(InboundMessage, i) for i in ids]


def rejections():
    return db.session.query(OutboxMessage).filter_by(message_type=catalogue.EMAIL_REJECTED).all()


@pytest.fixture
def account(app, people):
    acct = IncomingAccount(name="help", protocol=Protocol.LMTP, default_group_id=people["service_desk"].id,
                           default_priority_id=2)
    acct.addresses.append(IncomingAddress(address="help@desk.test"))
    db.session.add(acct)
    db.session.commit()
    return acct


def test_new_mail_logs_a_call_with_attachments_and_account_defaults(account, people):
    row = deliver(mail("Log call: printer jammed", "Tray 2 again", attachments=[("log.txt", b"E42")]), account)
    assert row.status is InboundStatus.PROCESSED and row.call_id is not None
    call = db.session.get(Call, row.call_id)
    assert call.summary == "printer jammed" and call.source == "email"
    assert call.customer == people["carol"] and call.assigned_group == people["service_desk"]
    assert call.priority_id == 2 and "Tray 2 again" in call.description
    assert timeline(call)[0].attachments[0].filename == "log.txt"
    assert row.outcome == f"Logged {call.ref}."


def test_unknown_sender_becomes_a_customer_or_is_rejected_per_account(account):
    row = deliver(mail("Wi-Fi down", sender="New Person <new.person@example.net>"), account)
    assert row.status is InboundStatus.PROCESSED
    assert find_person("new.person@example.net").name == "New Person"
    account.unknown_senders = UnknownSenders.REJECT
    db.session.commit()
    row = deliver(mail("Also down", sender="stranger@example.net"), account)
    assert row.status is InboundStatus.REJECTED and "do not know your address" in row.outcome
    assert find_person("stranger@example.net") is None
    assert [r.to for r in rejections()] == [["stranger@example.net"]]


def test_same_message_by_two_paths_is_acted_on_once(account):
    raw = mail("Monitor flickers")
    first = deliver(raw, account)
    # The same mail fetched again by IMAP: other trace headers, CRLF line endings.
    again = b"Received: from mx by imap; Fri, 27 Nov 2026 06:00:00 +0000\r\n" + raw.replace(b"\n", b"\r\n")
    second = deliver(again, account, source="imap")
    assert first.id == second.id and second.deliveries == 2
    assert db.session.query(Call).count() == 1


def test_subject_keywords_update_close_and_reopen(account, people):
    # Closing and reopening by mail need a verified sender (inbound.trust): here the account's.
    account.trusted_submission = True
    call = log_call(people["carol"], "Laptop slow")
    db.session.commit()
    row = deliver(mail(f"Re: Update call #{call.id}: more info", "It is slow after lunch.\n\n> old quote"), account)
    assert row.status is InboundStatus.PROCESSED and row.call_id == call.id
    note = timeline(call)[-1]
    assert note.kind is EntryKind.EMAIL_IN and note.body == "It is slow after lunch."
    assert deliver(mail(f"Close call {call.id}", "Fixed by a reboot"), account).status is InboundStatus.PROCESSED
    assert call.status is CallStatus.CLOSED
    row = deliver(mail(f"update call {call.id}", "one more thing"), account)
    assert row.status is InboundStatus.REJECTED and "closed" in row.outcome
    assert deliver(mail(f"Reopen call: {call.id}"), account).status is InboundStatus.PROCESSED
    assert call.status is CallStatus.OPEN


def test_customer_cannot_touch_someone_elses_call(account, people):
    # Verified senders (inbound.trust), so what is checked here is their rights.
    account.trusted_submission = True
    call = log_call(people["carol"], "Mine")
    db.session.commit()
    row = deliver(mail(f"Close call {call.id}", sender="dave@example.org"), account)
    # Answered as if there were no such call: a reply tells nobody which numbers exist.
    assert row.status is InboundStatus.REJECTED and f"There is no call {call.id} that you can close" in row.outcome
    assert call.status is CallStatus.OPEN
    # Analysts may update any call.
    assert deliver(mail(f"Update call {call.id}", "on it", sender="anna@desk.test"), account).status \
        is InboundStatus.PROCESSED


def test_unknown_reference_is_rejected_with_a_reply_listing_subjects(account):
    row = deliver(mail("Update call 999", "hello?"), account)
    no_such = "There is no call 999 that you can update by mail."
    assert row.status is InboundStatus.REJECTED and row.outcome.startswith(no_such)
    (reply,) = rejections()
    assert reply.to == ["carol@example.org"] and reply.context["reason"] == no_such
    assert reply.in_reply_to == f"<{row.message_id}>"
    rendered = catalogue.render_message(catalogue.EMAIL_REJECTED, {
        **reply.context,
        **catalogue.base_variables(desk_name="Desk", desk_address="help@desk.test"),
    })
    assert no_such in rendered.text and "Close call" in rendered.text


def test_rejections_are_rate_limited_per_sender(account):
    for n in range(5):
        deliver(mail(f"Update call {900 + n}"), account)
    assert len(rejections()) == 3
    last = db.session.query(InboundMessage).order_by(InboundMessage.id.desc()).first()
    assert "no reply" in last.outcome


def test_one_batch_of_mail_is_acted_on_as_if_one_by_one(account, people):
    account.trusted_submission = True  # so the batch's Close call is from a verified sender
    mine = log_call(people["carol"], "Keyboard")
    db.session.commit()
    rows = deliver_together([
        mail("Log call: first", sender="Newcomer <new@example.net>"),
        mail("Log call: second", sender="NEW@example.net"),  # the same new person, written otherwise
        mail(f"Update call {mine.id}", "Still broken.\n\n> quoted"),
        mail(f"Close call {mine.id}", "Works now"),
        mail(f"Update call {mine.id}", "Too late: closed"),
    ] + [mail(f"Update call {900 + n}", sender="pest@example.net") for n in range(5)], account)
    first, second, update, close, late = rows[:5]
    assert [r.status for r in rows[:4]] == [InboundStatus.PROCESSED] * 4
    calls = [db.session.get(Call, r.call_id) for r in (first, second)]
    assert [c.summary for c in calls] == ["first", "second"] and calls[0].id != calls[1].id
    assert calls[0].customer is calls[1].customer and calls[0].customer.email == "new@example.net"
    assert [first.outcome, second.outcome] == [f"Logged {c.ref}." for c in calls]
    # Each new call's acknowledgement names it and carries it as its record.
    acks = db.session.query(OutboxMessage).filter_by(message_type=catalogue.CALL_LOGGED).order_by(OutboxMessage.id)
    assert [(a.call_id, a.context["call"]["ref"]) for a in acks if a.call_id != mine.id] == [
        (c.id, c.ref) for c in calls]
    assert [e.body for e in timeline(mine) if e.kind is EntryKind.EMAIL_IN] == ["Still broken."]
    assert mine.status is CallStatus.CLOSED
    assert late.status is InboundStatus.REJECTED and "closed" in late.outcome
    # The limit on rejections holds within one batch too.
    assert sum(r.to == ["pest@example.net"] for r in rejections()) == 3


def test_reply_token_and_threading_headers_match_our_mail(account, people):
    call = log_call(people["carol"], "Phone dead")
    db.session.commit()
    ours = queue_mail(catalogue.CALL_LOGGED, ["carol@example.org"], record=call, subject="x", text="y")
    db.session.commit()
    # Token in the subject wins even with no keyword.
    row = deliver(mail(f"Re: your call [SB-{ours.reply_token}]", "thanks"), account)
    assert row.call_id == call.id and "reply token" in row.outcome
    # In-Reply-To naming our Message-ID, subject rewritten by the client.
    row = deliver(mail("Re: something else entirely", "still dead", headers={"In-Reply-To": ours.message_id}),
                  account)
    assert row.call_id == call.id and "In-Reply-To" in row.outcome
    assert db.session.query(Call).count() == 1


def _approval(people):
    request = create_request(people["anna"], "New laptop", requester=people["carol"], tasks=[
        TaskSpec(TaskKind.APPROVAL, "Manager approval", approver=people["dave"])])
    task = request.tasks[0]
    token_row = queue_mail(catalogue.APPROVAL_REQUESTED, [people["dave"].email], record=task,
                           recipient_person=people["dave"], subject="approve?", text="please")
    db.session.commit()
    return task, token_row


def test_approval_by_mail_needs_the_approvers_token(account, people):
    task, token_row = _approval(people)
    # A forged From with the right subject but no token: refused.
    row = deliver(mail(f"Approve task {task.id}", sender="dave@example.org"), account)
    assert row.status is InboundStatus.REJECTED and "proof" in row.outcome
    assert task.status is TaskStatus.AWAITING_DECISION
    # Someone else replying with the approver's token: not the approver.
    row = deliver(mail(f"Approve task {task.id} [SB-{token_row.reply_token}]", sender="carol@example.org"), account)
    assert row.status is InboundStatus.REJECTED and task.status is TaskStatus.AWAITING_DECISION
    assert row.outcome.startswith(f"You are not the approver of {task.ref}."), row.outcome
    # The approver's reply to the approval mail: approved, reason kept.
    row = deliver(mail(f"Re: Approve task {task.id} [SB-{token_row.reply_token}]", "Budget ok\n\n-- \nDave",
                       sender="dave@example.org"), account)
    assert row.status is InboundStatus.PROCESSED, row.outcome
    assert task.status is TaskStatus.APPROVED and task.decision_reason == "Budget ok"


def test_token_for_one_task_cannot_decide_another(account, people):
    task, token_row = _approval(people)
    other, _ = _approval(people)
    row = deliver(mail(f"Approve task {other.id} [SB-{token_row.reply_token}]", sender="dave@example.org"), account)
    assert row.status is InboundStatus.REJECTED
    assert other.status is TaskStatus.AWAITING_DECISION and task.status is TaskStatus.AWAITING_DECISION


def test_dmarc_pass_from_a_trusted_server_is_proof(app, account, people):
    task, _ = _approval(people)
    app.config["TRUSTED_AUTHSERV_IDS"] = "mx.desk.test"
    try:
        forged = {"Authentication-Results": "evil.example; dmarc=pass header.from=example.org"}
        row = deliver(mail(f"Reject task {task.id}", "No", sender="dave@example.org", headers=forged), account)
        assert row.status is InboundStatus.REJECTED and task.status is TaskStatus.AWAITING_DECISION
        failed = {"Authentication-Results": "mx.desk.test; dmarc=fail header.from=example.org"}
        row = deliver(mail(f"Reject task {task.id}", "No", sender="dave@example.org", headers=failed), account)
        assert row.status is InboundStatus.REJECTED
        good = {"Authentication-Results": "mx.desk.test; dmarc=pass header.from=example.org"}
        row = deliver(mail(f"Reject task {task.id}", "Too expensive", sender="dave@example.org", headers=good),
                      account)
        assert row.status is InboundStatus.PROCESSED and task.status is TaskStatus.REJECTED
        assert task.decision_reason == "Too expensive"
    finally:
        app.config.pop("TRUSTED_AUTHSERV_IDS")


@pytest.mark.parametrize("headers,sender", [
    ({"Auto-Submitted": "auto-replied"}, "carol@example.org"),
    ({"Precedence": "bulk"}, "carol@example.org"),
    ({"List-Id": "<team.lists.example.org>"}, "carol@example.org"),
    ({"X-Switchboard-Origin": "switchboard"}, "carol@example.org"),
    ({}, "MAILER-DAEMON@example.org"),
])
def test_automated_mail_never_logs_a_call_nor_gets_a_reply(account, headers, sender):
    row = deliver(mail("Out of office", headers=headers, sender=sender), account)
    assert row.status is InboundStatus.IGNORED and row.outcome.startswith("Automated mail")
    assert db.session.query(Call).count() == 0 and rejections() == []


def test_summary_reply_lists_open_calls(account, people):
    log_call(people["carol"], "First")
    closed = log_call(people["carol"], "Second")
    close_call(closed, people["anna"])
    db.session.commit()
    row = deliver(mail("Summary calls"), account)
    assert row.status is InboundStatus.PROCESSED
    (reply,) = db.session.query(OutboxMessage).filter_by(message_type=catalogue.SUMMARY_REPLY).all()
    items = catalogue.restore(reply.context).items
    assert [i.title for i in items] == ["First"]


def test_account_without_new_calls_rejects_unmatched_mail(account):
    account.allow_new_calls = False
    db.session.commit()
    row = deliver(mail("Hello desk"), account)
    assert row.status is InboundStatus.REJECTED and db.session.query(Call).count() == 0


def test_failure_while_acting_keeps_the_message_and_the_next_one_goes_on(account, monkeypatch):
    from switchboard.inbound import process

    real_act = process.act

    def flaky(inbound, msg):
        if "boom" in msg.subject:
            raise RuntimeError("database hiccup")
        return real_act(inbound, msg)

    monkeypatch.setattr(process, "act", flaky)
    store_message(mail("boom"), source="pipe", account=account)
    store_message(mail("fine"), source="pipe", account=account)
    db.session.commit()
    process_pending()
    bad, good = db.session.query(InboundMessage).order_by(InboundMessage.id).all()
    assert bad.status is InboundStatus.FAILED and "database hiccup" in bad.error
    assert good.status is InboundStatus.PROCESSED
    assert db.session.query(Call).count() == 1
    # An admin reprocesses it once the cause is gone.
    monkeypatch.setattr(process, "act", real_act)
    from switchboard.inbound.process import process_batch

    process_batch([bad.id], reprocess=True)
    db.session.commit()
    assert bad.status is InboundStatus.PROCESSED and db.session.query(Call).count() == 2
