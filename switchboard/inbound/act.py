"""Step two: decide what a stored message means and do it.

Matching order (DESIGN.md), first hit wins: our reply token, then
In-Reply-To/References naming a mail we sent, then the subject keywords,
else a new call where the account allows it. The sender must be allowed to
do what it asks; approvals also need proof that the mail is genuine."""

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app

from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.calls.services import close_call, get_call, log_call, reopen_call, update_call
from switchboard.errors import DeskError, InvalidInput, NotFound, PermissionDenied
from switchboard.history.services import NewAttachment
from switchboard.inbound import proof, replies
from switchboard.inbound.automated import bounced_message_ids, classify_automated
from switchboard.inbound.models import InboundMessage, InboundStatus, UnknownSenders
from switchboard.inbound.parse import ParsedMessage
from switchboard.inbound.quotes import strip_quoted_reply
from switchboard.inbound.subject import find_reply_token, parse_subject
from switchboard.outbox.queue import find_by_message_ids, find_by_token
from switchboard.people.models import Person
from switchboard.people.services import create_person, find_person
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
        replies.queue_summary(inbound, sender, command.action)
        return Outcome(InboundStatus.PROCESSED, f"Sent a summary of open {command.action.split('_')[1]}.")

    if record is None:
        if command.number is not None:
            kind = command.action.split("_")[-1]
            return _reject(f"There is no {kind} {command.number}.")
        try:
            return _log_new_call(inbound, msg, sender, account, command)
        except DeskError as exc:
            return _reject(exc.message)

    if sender is None or not sender.active:
        return _reject("We do not know your address; only people known to the desk can change a record by mail.")

    action = _action_for(record, command, token_row)
    try:
        return _do(action, record, sender, msg, inbound, token_row, how)
    except (PermissionDenied, InvalidInput, NotFound) as exc:
        return _reject(exc.message)
    except DeskError as exc:  # InvalidTransition and the like
        return _reject(exc.message)


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


def _action_for(record, command, token_row) -> str:
    """What to do with the matched record: the subject's verb when it fits
    the record, else an update. A subject naming a different record of the
    same kind than the token's is refused rather than guessed at."""
    kind_actions = CALL_ACTIONS if isinstance(record, Call) else TASK_ACTIONS if isinstance(record, Task) else REQUEST_ACTIONS
    if command.action in kind_actions:
        if token_row is not None and command.number is not None and command.number != record.id:
            return "mismatch"
        return command.action
    return {Call: "update_call", Task: "update_task", Request: "update_request"}[type(record)]


def _attachments(msg: ParsedMessage):
    return [NewAttachment(a.filename, a.content_type, a.data, a.content_id) for a in msg.attachments]


def _body(msg: ParsedMessage) -> str:
    return strip_quoted_reply(msg.text or "").strip()


def _do(action, record, sender, msg, inbound, token_row, how) -> Outcome:
    if action == "mismatch":
        return _reject(
            f"The subject names a different record than the mail you replied to ({record.ref}); "
            "send a new mail naming the record you mean."
        )
    body = _body(msg)
    if action == "update_call":
        update_call(record, sender, body or "(no text)", attachments=_attachments(msg), via="email")
        return Outcome(InboundStatus.PROCESSED, f"Added as a note to {record.ref} (matched by {how}).", record)
    if action == "close_call":
        close_call(record, sender, body)
        return Outcome(InboundStatus.PROCESSED, f"Closed {record.ref}.", record)
    if action == "reopen_call":
        reopen_call(record, sender, body)
        return Outcome(InboundStatus.PROCESSED, f"Reopened {record.ref}.", record)
    if action in ("approve_task", "reject_task"):
        evidence = proof.approval_proof(msg, sender, record, token_row, current_app.config)
        if evidence is None:
            return _reject(
                f"A decision on {record.ref} by mail needs proof that it is genuine: reply to the approval "
                "mail itself (it carries a token), or send from a domain that passes DMARC at our mail server."
            )
        reason = body.split("\n\n")[0].strip()
        if action == "approve_task":
            approve_task(record, sender, reason, via="email")
        else:
            reject_task(record, sender, reason or "(no reason given)", via="email")
        verb = "Approved" if action == "approve_task" else "Rejected"
        return Outcome(InboundStatus.PROCESSED, f"{verb} {record.ref} ({evidence}).", record)
    if action == "update_task":
        update_task(record, sender, body or "(no text)", attachments=_attachments(msg), via="email")
        return Outcome(InboundStatus.PROCESSED, f"Added as a note to {record.ref}.", record)
    if action == "update_request":
        update_request(record, sender, body or "(no text)", attachments=_attachments(msg), via="email")
        return Outcome(InboundStatus.PROCESSED, f"Added as a note to {record.ref}.", record)
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
