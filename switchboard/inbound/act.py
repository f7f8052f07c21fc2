"""Step two: decide what a stored message means and do it.

Matching order (DESIGN.md), first hit wins: our reply token, then
In-Reply-To/References naming a mail we sent, then the subject keywords,
else a new call where the account allows it. The sender must be allowed to
do what it asks (switchboard.permissions), and every change but a new call or
a note on the sender's own open call needs proof that the mail comes from its
From address (switchboard.inbound.trust, the one sender trust rule).

A refusal about a record named by number reads the same whether the record
does not exist or the sender may not see it, so replies tell nobody which
numbers exist."""

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app

from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.calls.services import close_call, get_call, log_call, reopen_call, update_call
from switchboard.desk.routing import default_group
from switchboard.errors import DeskError, InvalidInput, NotFound, PermissionDenied
from switchboard.history.services import NewAttachment
from switchboard.inbound import replies, trust
from switchboard.inbound.automated import bounced_message_ids, classify_automated
from switchboard.inbound.models import InboundMessage, InboundStatus, UnknownSenders
from switchboard.inbound.parse import ParsedMessage
from switchboard.inbound.quotes import strip_quoted_reply
from switchboard.inbound.subject import find_reply_token, parse_subject
from switchboard.outbox.queue import find_by_message_ids, find_by_token
from switchboard.people.models import Person
from switchboard.people.services import create_person, find_person
from switchboard.permissions import allowed
from switchboard.requests.models import Request, Task
from switchboard.requests.services import (
    approve_task,
    get_request,
    get_task,
    reject_task,
    update_request,
    update_task,
)

# Which subject actions apply to which kind of record.
CALL_ACTIONS = {"update_call", "close_call", "reopen_call"}
TASK_ACTIONS = {"approve_task", "reject_task", "update_task"}
REQUEST_ACTIONS = {"update_request"}
SUMMARY_ACTIONS = {"summary_calls", "summary_requests", "summary_tasks"}
# The rule in switchboard.permissions each action needs, and the one that lets a sender see
# the record at all (a record it may not see is answered as if it did not exist).
PERMISSION = {"update_call": "update_call", "close_call": "close_call", "reopen_call": "reopen_call",
              "approve_task": "decide_task", "reject_task": "decide_task", "update_task": "update_task",
              "update_request": "update_request"}
VIEW = {Call: "view_call", Task: "view_task", Request: "view_request"}
VERB = {"update_call": "update", "close_call": "close", "reopen_call": "reopen", "approve_task": "approve",
        "reject_task": "reject", "update_task": "update", "update_request": "update"}


@dataclass
class Outcome:
    status: InboundStatus
    # What happened, for the inbound log. A callable where it names a record made just now:
    # acting in batched writes, the record has its id (and so its ref) only after the batch.
    text: str | Callable[[], str]
    record: object = None
    reply_needed: bool = False  # a rejection the sender should hear about
    details: dict = field(default_factory=dict)

    def describe(self) -> str:
        return self.text() if callable(self.text) else self.text


def act(inbound: InboundMessage, msg: ParsedMessage) -> Outcome:
    verdict = classify_automated(msg, inbound.envelope_from)
    if verdict is not None:
        if verdict.is_bounce:
            replies.attach_bounce(inbound, bounced_message_ids(msg))
        return Outcome(InboundStatus.IGNORED, f"Automated mail: {verdict.reason}")
    if not msg.from_address:
        return Outcome(InboundStatus.IGNORED, "No sender address to act for or answer.")

    account = inbound.account
    sender = find_person(msg.from_address)
    command = parse_subject(msg.subject)
    record, token_row, how = _match(msg, command)

    if record is None and command.action in SUMMARY_ACTIONS:
        if sender is None or not sender.active:
            return _reject("We do not know your address, so there is nothing to summarise.")
        what = command.action.split("_")[1]
        if replies.queue_summary(inbound, sender, command.action):
            return Outcome(InboundStatus.PROCESSED, f"Sent a summary of open {what}.")
        # Held back by the reply limits; the reason is added to the outcome.
        return Outcome(InboundStatus.PROCESSED, f"Summary of open {what} not sent.")

    if record is None and command.number is None:
        try:
            return _log_new_call(inbound, msg, sender, account, command)
        except DeskError as exc:
            return _reject(exc.message)

    # Before looking at the record, so the answer is the same whether it exists or not.
    if sender is None or not sender.active:
        return _reject("We do not know your address; only people known to the desk can change a record by mail.")
    if record is None or (how == "subject" and not allowed(sender, VIEW[type(record)], record)):
        return _reject(_no_such(command))

    action = _action_for(record, command, how)
    if action in ("mismatch", "wrong_kind"):
        return _reject(
            f"The subject names {command.action.split('_')[-1]} {command.number}, but the mail you replied to is "
            f"about {record.ref}; send a new mail naming the record you mean.")
    if not allowed(sender, PERMISSION[action], record):
        if PERMISSION[action] == "decide_task":
            return _reject(f"You are not the approver of {record.ref}.")
        return _reject(f"You may not {VERB[action]} {record.ref}.")
    sender_trust = trust.sender_trust(msg, sender, account, token_row, record, current_app.config)
    refused = trust.refusal(action, sender_trust, sender, record)
    if refused is not None:
        return _reject(refused)
    try:
        return _do(action, record, sender, msg, sender_trust, how)
    except (PermissionDenied, InvalidInput, NotFound) as exc:
        return _reject(exc.message)
    except DeskError as exc:  # InvalidTransition and the like
        return _reject(exc.message)


def _no_such(command) -> str:
    kind = command.action.split("_")[-1]
    return f"There is no {kind} {command.number} that you can {VERB.get(command.action, 'change')} by mail."


def _reject(reason: str) -> Outcome:
    return Outcome(InboundStatus.REJECTED, reason, reply_needed=True)


def _match(msg: ParsedMessage, command):
    """Returns (record, outbox row whose token matched or None, how it matched)."""
    token = find_reply_token(msg.subject) or find_reply_token(msg.text or "")
    if token:
        row = find_by_token(token)
        if row is not None:
            record = row.call or row.task or row.request
            if record is not None:
                return record, row, "reply token"
    row = find_by_message_ids(list(msg.in_reply_to) + list(msg.references))
    if row is not None:
        record = row.call or row.task or row.request
        if record is not None:
            return record, None, "In-Reply-To/References"
    if command.number is not None:
        try:
            if command.action in CALL_ACTIONS:
                return get_call(command.number), None, "subject"
            if command.action in TASK_ACTIONS:
                return get_task(command.number), None, "subject"
            if command.action in REQUEST_ACTIONS:
                return get_request(command.number), None, "subject"
        except NotFound:
            return None, None, "subject"
    return None, None, None


def _action_for(record, command, how) -> str:
    """What to do with the matched record: the subject's verb when it fits
    the record, else an update. A subject naming another record than the one
    the mail replies to (another number: "mismatch"; another kind, as in
    `Approve task 8` on a reply to CALL-1's mail: "wrong_kind") is refused
    rather than guessed at."""
    kind_actions = CALL_ACTIONS if isinstance(record, Call) else TASK_ACTIONS if isinstance(record, Task) else REQUEST_ACTIONS
    if how != "subject" and command.number is not None:
        if command.action not in kind_actions:
            return "wrong_kind"
        if command.number != record.id:
            return "mismatch"
    if command.action in kind_actions:
        return command.action
    return {Call: "update_call", Task: "update_task", Request: "update_request"}[type(record)]


def _attachments(msg: ParsedMessage):
    return [NewAttachment(a.filename, a.content_type, a.data, a.content_id) for a in msg.attachments]


def _body(msg: ParsedMessage) -> str:
    return strip_quoted_reply(msg.text or "").strip()


def _do(action, record, sender, msg, sender_trust, how) -> Outcome:
    body = _body(msg)
    # The inbound log says on what proof the desk acted, or that it had none.
    proof = f"sender verified by {sender_trust.proof}" if sender_trust.verified else "sender not verified"
    if action == "update_call":
        update_call(record, sender, body or "(no text)", attachments=_attachments(msg), via="email",
                    sender_verified=sender_trust.verified)
        return Outcome(InboundStatus.PROCESSED, f"Added as a note to {record.ref} (matched by {how}; {proof}).",
                       record)
    if action == "close_call":
        close_call(record, sender, body)
        return Outcome(InboundStatus.PROCESSED, f"Closed {record.ref} ({proof}).", record)
    if action == "reopen_call":
        reopen_call(record, sender, body)
        return Outcome(InboundStatus.PROCESSED, f"Reopened {record.ref} ({proof}).", record)
    if action in ("approve_task", "reject_task"):
        reason = body.split("\n\n")[0].strip()
        if action == "approve_task":
            approve_task(record, sender, reason, via="email")
        else:
            reject_task(record, sender, reason or "(no reason given)", via="email")
        verb = "Approved" if action == "approve_task" else "Rejected"
        return Outcome(InboundStatus.PROCESSED, f"{verb} {record.ref} ({proof}).", record)
    if action == "update_task":
        update_task(record, sender, body or "(no text)", attachments=_attachments(msg), via="email")
        return Outcome(InboundStatus.PROCESSED, f"Added as a note to {record.ref} ({proof}).", record)
    if action == "update_request":
        update_request(record, sender, body or "(no text)", attachments=_attachments(msg), via="email")
        return Outcome(InboundStatus.PROCESSED, f"Added as a note to {record.ref} ({proof}).", record)
    raise AssertionError(f"unknown action {action}")


def _log_new_call(inbound, msg, sender, account, command) -> Outcome:
    if account is not None and not account.allow_new_calls:
        return _reject("This address does not take new calls; reply to a mail from the desk or name a record.")
    if sender is None:
        if account is not None and account.unknown_senders is UnknownSenders.REJECT:
            return _reject("We do not know your address; ask the service desk to register you.")
        sender = create_person(msg.from_address, msg.from_name or "")
    elif not sender.active:
        return _reject("Your address is not active at this desk.")
    summary = command.summary or msg.subject or "(no subject)"
    actor = sender
    analyst = group = None
    priority_id = None
    if account is not None:
        priority_id = account.default_priority_id
        group = account.default_group
        if account.default_analyst is not None and account.default_analyst.active:
            actor = account.default_analyst
        if account.use_linked_analyst:
            analyst = _latest_analyst(sender)
    # A call logged by mail always lands in a group (issue 12: calls from an account without
    # a group were in nobody's My work): the account's, else the desk's default group.
    group = group or default_group()
    call = log_call(
        actor,
        summary,
        (msg.text or "").strip(),
        customer=sender,
        priority_id=priority_id,
        analyst=analyst,
        group=group,
        source="email",
        attachments=_attachments(msg),
    )
    return Outcome(InboundStatus.PROCESSED, lambda: f"Logged {call.ref}.", call, details={"new_call": True})


def _latest_analyst(customer):
    """The "linked analyst": the one who worked this customer's latest call."""
    analyst_id = db.session.scalar(
        db.select(Call.assigned_analyst_id)
        .where(Call.customer_id == customer.id, Call.assigned_analyst_id.is_not(None))
        .order_by(Call.id.desc())
        .limit(1)
    )
    person = db.session.get(Person, analyst_id) if analyst_id else None
    return person if person is not None and person.active and person.is_analyst else None
