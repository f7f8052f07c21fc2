"""Mail out and back in, through the real pipeline: a mail logs a call, the customer gets the
acknowledgement from the SMTP server with its token, answers it, and the answer lands on the
same call; approvals by mail; an analyst's own mail and its answer."""

from email import policy
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
import sqlalchemy as sa

from switchboard.calls.models import Call
from switchboard.calls.services import log_call
from switchboard.db import db
from switchboard.errors import InvalidInput, PermissionDenied
from switchboard.history.models import EntryKind
from switchboard.history.services import NewAttachment, timeline
from switchboard.inbound.models import InboundMessage
from switchboard.inbound.process import process_pending
from switchboard.inbound.store import store_message
from switchboard.outbox.catalogue import MessageType as T
from switchboard.outbox.compose import find_reply_token
from switchboard.outbox.manual import send_manual_mail
from switchboard.requests.models import TaskKind, TaskStatus
from switchboard.requests.services import TaskSpec, create_request

from .desk import DESK, desk_server, rows, send  # noqa: F401


def deliver(raw: bytes) -> InboundMessage:
    """A mail arriving at the desk (as over LMTP), acted on at once."""
    stored = store_message(raw, source="lmtp", envelope_to=[DESK])
    db.session.commit()
    process_pending()
    return db.session.get(InboundMessage, stored.inbound_id)


def mail(sender: str, subject: str, body: str, *, in_reply_to: str | None = None) -> bytes:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = DESK
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.org")
    message["Date"] = "Fri, 27 Nov 2026 09:00:00 +0000"
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message.set_content(body)
    return message.as_bytes()


def reply_to(received, sender: str, body: str, subject: str | None = None) -> bytes:
    """What a mail client makes of "Reply": Re: subject, In-Reply-To, the original quoted."""
    original = received.message
    quoted = "\n".join("> " + line for line in original.get_body(("plain",)).get_content().splitlines())
    return mail(sender, subject or f"Re: {original['Subject'].strip()}",
                f"{body}\n\nOn Friday the desk wrote:\n{quoted}\n", in_reply_to=original["Message-ID"])


def calls() -> list[Call]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(Call).order_by(Call.id)))


def test_a_mail_logs_a_call_the_customer_answers_the_acknowledgement_and_it_lands_on_the_call(
        desk_server, people):
    logged = deliver(mail("Carol Customer <carol@example.org>", "Printer on floor 3 jams",
                          "It jams on every page."))
    assert logged.status.value == "processed", logged.outcome
    [call] = calls()
    assert send().sent == 1

    [ack] = desk_server.messages
    assert ack.rcpt_tos == ["carol@example.org"]
    token = find_reply_token(ack.message["Subject"])
    assert token and token == rows()[0].reply_token
    assert ack.message["Subject"].startswith(f"{call.ref} logged: Printer on floor 3 jams")

    answer = deliver(reply_to(ack, "carol@example.org", "It also jams with the colour printer."))
    assert answer.status.value == "processed", answer.outcome
    assert "matched by reply token" in answer.outcome
    assert [c.id for c in calls()] == [call.id]  # no second call
    notes = [e for e in timeline(call) if e.kind is EntryKind.EMAIL_IN]
    assert [n.body for n in notes] == ["It also jams with the colour printer."]
    assert answer.call_id == call.id


def test_our_own_mail_coming_back_is_ignored(desk_server, people):
    log_call(people["carol"], "Printer jams")
    db.session.commit()
    send()
    [ack] = desk_server.messages
    bounced_back = deliver(ack.data)  # e.g. an auto-forward of the customer's mailbox to the desk
    assert bounced_back.status.value == "ignored"
    assert len(calls()) == 1


def test_the_reply_threads_by_in_reply_to_when_the_token_was_cut_off(desk_server, people):
    call = log_call(people["carol"], "Printer jams")
    db.session.commit()
    send()
    [ack] = desk_server.messages
    raw = mail("carol@example.org", "Re: your printer", "Fixed itself.", in_reply_to=ack.message["Message-ID"])
    answer = deliver(raw)
    assert "In-Reply-To" in answer.outcome and answer.call_id == call.id


def _approval(people):
    request = create_request(people["anna"], "New laptop", requester=people["carol"], tasks=[
        TaskSpec(TaskKind.APPROVAL, "Approve the purchase", approver=people["dave"])])
    db.session.commit()
    send()
    return request.tasks[0]


def test_the_approver_approves_by_answering_the_approval_mail(desk_server, people):
    task = _approval(people)
    [request_mail] = desk_server.messages
    assert request_mail.rcpt_tos == ["dave@example.org"]
    text = request_mail.message.get_body(("plain",)).get_content()
    assert f"Approve%20task%20{task.id}%20%5BSB-" in text

    answer = deliver(reply_to(request_mail, "dave@example.org", "Fine, within budget.",
                              subject=f"Approve task {task.id} {request_mail.message['Subject'].strip()}"))
    assert answer.status.value == "processed", answer.outcome
    assert "sender verified by reply token" in answer.outcome
    db.session.expire_all()
    assert task.status is TaskStatus.APPROVED and task.decision_reason == "Fine, within budget."
    decided = [r for r in rows() if T(r.message_type) is T.APPROVAL_DECIDED]
    assert sorted(r.to[0] for r in decided) == ["anna@desk.test", "carol@example.org"]


def test_someone_else_answering_with_the_approvers_token_cannot_approve(desk_server, people):
    task = _approval(people)
    [request_mail] = desk_server.messages
    forwarded = deliver(reply_to(request_mail, "carol@example.org", "Approved!",
                                 subject=f"Approve task {task.id} {request_mail.message['Subject'].strip()}"))
    assert forwarded.status.value == "rejected"
    db.session.expire_all()
    assert task.status is TaskStatus.AWAITING_DECISION


# -- mail an analyst writes ------------------------------------------------------------------

@pytest.fixture
def call_with_photo(people):
    call = log_call(people["carol"], "Printer jams", "See photo",
                    attachments=[NewAttachment("jam.jpg", "image/jpeg", b"\xff\xd8\xff photo")])
    db.session.commit()
    return call


def _photo(call):
    return next(a for e in timeline(call) for a in e.attachments)


def test_an_analysts_mail_shows_at_once_goes_out_threaded_and_its_answer_comes_back(
        desk_server, people, call_with_photo):
    call, anna = call_with_photo, people["anna"]
    send()  # the acknowledgement
    photo = _photo(call)
    row = send_manual_mail(call, anna, "carol@example.org", "Engineer visit", "Tomorrow between 9 and 11.",
                           attachment_ids=[photo.id])
    db.session.commit()
    [entry] = [e for e in timeline(call) if e.kind is EntryKind.EMAIL_OUT and e.author_id]
    assert entry.author_id == anna.id and entry.summary == "Mail to carol@example.org: Engineer visit"
    assert entry.body == "Tomorrow between 9 and 11." and not entry.internal
    assert call.first_response_at is not None

    assert send().sent == 1
    ack, sent = desk_server.messages
    message = sent.message
    assert message["Subject"] == f"Engineer visit [SB-{row.reply_token}]"
    assert message["Auto-Submitted"] is None
    assert message["In-Reply-To"] == ack.message["Message-ID"]
    [part] = message.iter_attachments()
    assert part.get_filename() == "jam.jpg" and part.get_content() == b"\xff\xd8\xff photo"
    # The sender does not add a second timeline line for mail the analyst wrote.
    assert len([e for e in timeline(call) if e.kind is EntryKind.EMAIL_OUT]) == 2  # the ack, the analyst's

    answer = deliver(reply_to(sent, "carol@example.org", "9 is fine."))
    assert answer.call_id == call.id and "reply token" in answer.outcome


def test_an_analysts_mail_in_the_desk_template(desk_server, people, call_with_photo):
    send()
    send_manual_mail(call_with_photo, people["anna"], ["carol@example.org"], "", "Please try again now.",
                     template_key="manual_message")
    db.session.commit()
    send()
    message = desk_server.messages[-1].message
    body = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert body.startswith("Hello Carol Customer,\n\nPlease try again now.\n\nAnna Analyst\n")
    assert message["Subject"].strip().startswith(f"{call_with_photo.ref}: Printer jams [SB-")


@pytest.mark.parametrize("change, problem", [
    ({"to": "not an address"}, "Not a valid address"),
    ({"to": []}, "at least one address"),
    ({"text": "  "}, "Write the message"),
    ({"subject": ""}, "Write a subject"),
    ({"template_key": "call_resolved"}, "manual message template"),
    ({"attachment_ids": [987654]}, "files that are on this call"),
])
def test_manual_mail_refuses_what_the_analyst_must_fix(people, call_with_photo, change, problem):
    args = dict(to="carol@example.org", subject="Hi", text="Hello", attachment_ids=(), template_key=None)
    args.update(change)
    with pytest.raises(InvalidInput, match=problem):
        send_manual_mail(call_with_photo, people["anna"], **args)


def test_customers_cannot_send_mail_as_the_desk(people, call_with_photo):
    with pytest.raises(PermissionDenied):
        send_manual_mail(call_with_photo, people["carol"], "dave@example.org", "Hi", "Hello")
