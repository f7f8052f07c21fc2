"""The numbered message types that can send mail, with their recipients, variables and default templates.

Numbers are stable (admins and stored settings refer to them): add new types at the end,
never renumber. Default templates are files in `default_templates/<key>.subject.txt`,
`<key>.text.txt` and, where there is one, `<key>.html`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import IntEnum, StrEnum
from functools import lru_cache
from importlib import resources
from types import SimpleNamespace

from switchboard.outbox.compose import mailto_link
from switchboard.outbox.templates import check_template, render, render_budget
from switchboard.outbox.views import (  # noqa: F401 (snapshot/restore re-exported)
    View, call_view, desk_view, item_view, person_view, request_view, restore, snapshot,
    task_view,
)


class MessageType(IntEnum):
    CALL_LOGGED = 1
    CALL_UPDATED_BY_EMAIL = 2
    CALL_FORWARDED = 3
    CALL_RESOLVED = 4
    CALL_CLOSED = 5
    CALL_REOPENED = 6
    TASK_FORWARDED = 7
    APPROVAL_REQUESTED = 8
    APPROVAL_DECIDED = 9
    EMAIL_REJECTED = 10
    SUMMARY_REPLY = 11
    SLA_ESCALATION = 12
    SLA_BREACH = 13
    MANUAL_MESSAGE = 14
    CALL_UPDATED_BY_DESK = 15
    MAILBOX_NEEDS_RECONNECTING = 16


class Recipient(StrEnum):
    """Who a message type goes to by default (the sender job resolves these to addresses)."""

    CUSTOMER = "customer"  # the call's customer
    ASSIGNED_ANALYST = "assigned_analyst"  # of the call or task
    GROUP_MEMBERS = "group_members"  # active members of the assigned group
    REQUEST_OWNER = "request_owner"  # the request's requester
    APPROVER = "approver"  # the approval task's approver
    ESCALATION_RECIPIENTS = "escalation_recipients"  # set on the SLA escalation level
    SENDER = "sender"  # whoever sent the incoming mail we answer
    ADMINS = "admins"  # every active admin (alerts about the desk itself)


@dataclass(frozen=True)
class Variable:
    name: str  # as written in a template, e.g. "call.ref"
    description: str
    sample: object = None  # the value in sample_variables(), for the editor's list


@dataclass(frozen=True)
class TemplateSet:
    subject: str
    text: str
    html: str | None = None


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str | None = None


@dataclass(frozen=True)
class MessageTypeInfo:
    type: MessageType
    key: str
    title: str
    description: str
    recipients: tuple[Recipient, ...]
    # RFC 3834: "auto-generated" for notifications, "auto-replied" for answers to an
    # incoming mail, None for mail a person wrote.
    auto_submitted: str | None
    variables: tuple[Variable, ...] = field(default=())

    @property
    def number(self) -> int:
        return int(self.type)

    @property
    def automatic(self) -> bool:
        return self.auto_submitted is not None

    @property
    def variable_names(self) -> frozenset[str]:
        """Top-level names a template of this type may use."""
        return frozenset(v.name.split(".")[0] for v in self.variables)

    @property
    def default_templates(self) -> TemplateSet:
        return _load_templates(self.key)


# What the desk understands in a subject (DESIGN.md); the rejection mail lists these.
# Plain dicts, so they can be stored in an outbox row's JSON variables as they are.
ACCEPTED_SUBJECTS: tuple[dict, ...] = tuple(
    {"subject": subject, "action": action}
    for subject, action in (
        ("Log call: <summary>", "log a new call (any subject without a reference does too)"),
        ("Update call 42", "add your mail to call 42 as a note, with its attachments"),
        ("Close call 42", "close call 42"),
        ("Reopen call 42", "reopen closed call 42"),
        ("Approve task 7 / Reject task 7", "decide approval task 7 (the mail body is the reason)"),
        ("Update task 7 / Update request 9", "add a note"),
        ("Summary calls / Summary requests / Summary tasks", "get a list of your open items"),
    )
)


def approval_mailto(desk_address: str, task_id: int, token: str, decision: str) -> str:
    """A reply-ready link: `Approve task 7 [SB-<token>]` (or Reject) to the desk."""
    if decision not in ("Approve", "Reject"):
        raise ValueError("decision is 'Approve' or 'Reject'")
    return mailto_link(desk_address, f"{decision} task {task_id} [SB-{token}]")


def reopen_mailto(desk_address: str, call_id: int, token: str) -> str:
    return mailto_link(desk_address, f"Reopen call {call_id} [SB-{token}]")


# -- the types -----------------------------------------------------------------------------

_COMMON = (
    ("desk.name", "the service desk's name"),
    ("desk.address", "the desk's mail address (where replies go)"),
    ("desk.url", "the portal's address"),
    ("recipient.display_name", "the person this mail goes to"),
    ("recipient.email", "their mail address"),
    ("token", "the reply token that ties replies to this record (added to the subject "
              "and footer automatically)"),
)
_CALL = (
    ("call.ref", "the call's reference, e.g. CALL-42"),
    ("call.id", "the call's number, e.g. 42"),
    ("call.summary", "one-line summary"),
    ("call.description", "full description"),
    ("call.status.label", "status as shown (Open, Pending, Resolved, Closed); .value is lower-case"),
    ("call.priority.name", "priority name"),
    ("call.customer.display_name", "the customer's name (also .email)"),
    ("call.assigned_analyst.display_name", "the assigned analyst, if any"),
    ("call.assigned_group.name", "the assigned group, if any"),
    ("call.logged_at", "when it was logged; format with |datetime"),
    ("call_url", "link to the call: for its customer (not staff), a read-only page of the call that "
                 "needs no login (signed, expires after CUSTOMER_LINK_DAYS); for anyone else, the call "
                 "in the portal"),
)
_TASK = (
    ("task.ref", "the task's reference, e.g. TASK-7"),
    ("task.id", "the task's number, e.g. 7"),
    ("task.title", "task title"),
    ("task.description", "task description"),
    ("task.status.label", "task status"),
    ("task.assigned_analyst.display_name", "assigned analyst, if any"),
    ("task.assigned_group.name", "assigned group, if any"),
    ("task.approver.display_name", "the approver (approval tasks)"),
    ("request.ref", "the request's reference, e.g. REQ-9"),
    ("request.title", "request title"),
    ("request.requester.display_name", "who asked for it"),
    ("task_url", "link to the task in the portal"),
)


def _info(type_, title, description, recipients, auto_submitted, *variable_groups):
    variables = tuple(Variable(n, d) for group in (_COMMON, *variable_groups) for n, d in group)
    return MessageTypeInfo(type_, type_.name.lower(), title, description, tuple(recipients),
                           auto_submitted, variables)


_AUTO, _REPLY = "auto-generated", "auto-replied"
R = Recipient

_TYPES = [
    _info(MessageType.CALL_LOGGED, "Call logged",
          "Tells the customer their call was logged, with its reference.",
          [R.CUSTOMER], _AUTO, _CALL),
    _info(MessageType.CALL_UPDATED_BY_EMAIL, "Call updated by email",
          "Tells the assigned analyst (or group) that the customer added something by mail.",
          [R.ASSIGNED_ANALYST, R.GROUP_MEMBERS], _AUTO, _CALL,
          (("update.author.display_name", "who sent the update"),
           ("update.text", "the text they added"),
           ("update.attachment_count", "how many attachments came with it"))),
    _info(MessageType.CALL_FORWARDED, "Call forwarded",
          "Tells the analyst or group a call was forwarded to them.",
          [R.ASSIGNED_ANALYST, R.GROUP_MEMBERS], _AUTO, _CALL,
          (("forwarded_by.display_name", "who forwarded it"),
           ("note", "the note written when forwarding (may be empty)"))),
    _info(MessageType.CALL_RESOLVED, "Call resolved",
          "Tells the customer the call is resolved and how to reopen it.",
          [R.CUSTOMER], _AUTO, _CALL,
          (("resolution", "what was done"),
           ("reopen_mailto", "mailto: link that reopens the call"))),
    _info(MessageType.CALL_CLOSED, "Call closed",
          "Tells the customer the call is closed.",
          [R.CUSTOMER], _AUTO, _CALL,
          (("reopen_mailto", "mailto: link that reopens the call"),)),
    _info(MessageType.CALL_REOPENED, "Call reopened",
          "Tells the analyst or group a call they had came back.",
          [R.ASSIGNED_ANALYST, R.GROUP_MEMBERS], _AUTO, _CALL,
          (("reopened_by.display_name", "who reopened it"),
           ("reason", "why (may be empty)"))),
    _info(MessageType.TASK_FORWARDED, "Task forwarded",
          "Tells the analyst or group a task was forwarded to them.",
          [R.ASSIGNED_ANALYST, R.GROUP_MEMBERS], _AUTO, _TASK,
          (("forwarded_by.display_name", "who forwarded it"),
           ("note", "the note written when forwarding (may be empty)"))),
    _info(MessageType.APPROVAL_REQUESTED, "Approval requested",
          "Asks the approver to approve or reject, with reply-ready links.",
          [R.APPROVER], _AUTO, _TASK,
          (("approve_mailto", "mailto: link whose subject is 'Approve task N [SB-token]'"),
           ("reject_mailto", "mailto: link whose subject is 'Reject task N [SB-token]'"))),
    _info(MessageType.APPROVAL_DECIDED, "Approval decided",
          "Tells the request's owner an approval task was approved or rejected.",
          [R.REQUEST_OWNER], _AUTO, _TASK,
          (("decision", "'approved' or 'rejected'"),
           ("decided_by.display_name", "who decided"),
           ("reason", "the reason given (may be empty)"))),
    _info(MessageType.EMAIL_REJECTED, "Email rejected",
          "Answers a mail the desk could not act on: why, and the subjects it understands.",
          [R.SENDER], _REPLY,
          (("original_subject", "the subject of the mail we could not act on"),
           ("reason", "why it was rejected"),
           ("accepted_subjects", "list of accepted subjects, each with .subject and .action"))),
    _info(MessageType.SUMMARY_REPLY, "Summary reply",
          "Answers 'Summary calls/requests/tasks' with the sender's open items.",
          [R.SENDER], _REPLY,
          (("kind", "'calls', 'requests' or 'tasks'"),
           ("items", "the open items, each with .ref, .title, .status.label, .updated_at, .url"))),
    _info(MessageType.SLA_ESCALATION, "SLA escalation",
          "Warns that a call has used a share of its response or fix target.",
          [R.ESCALATION_RECIPIENTS], _AUTO, _CALL,
          (("level", "the escalation level number, 1, 2, ..."),
           ("target", "'response' or 'fix'"),
           ("percent", "share of the target used, e.g. 75"),
           ("due_at", "when the target is breached; format with |datetime"))),
    _info(MessageType.SLA_BREACH, "SLA breach",
          "Says a call has missed its response or fix target.",
          [R.ESCALATION_RECIPIENTS, R.ASSIGNED_ANALYST], _AUTO, _CALL,
          (("target", "'response' or 'fix'"),
           ("due_at", "when the target was due; format with |datetime"))),
    _info(MessageType.MANUAL_MESSAGE, "Manual message",
          "A message an analyst writes to the customer from the call.",
          [R.CUSTOMER], None, _CALL,
          (("author.display_name", "the analyst who wrote it"),
           ("message", "what they wrote"))),
    _info(MessageType.CALL_UPDATED_BY_DESK, "Call updated by the desk",
          "Tells the customer an analyst added a note they can see (internal notes are never mailed).",
          [R.CUSTOMER], _AUTO, _CALL,
          (("update.author.display_name", "the analyst who wrote the note"),
           ("update.text", "the note"),
           ("update.attachment_count", "how many files came with it"))),
]

_TYPES.append(
    _info(MessageType.MAILBOX_NEEDS_RECONNECTING, "Mailbox needs reconnecting",
          "Tells the admins, once, that the OAuth2 provider or the mail server refused a mailbox's "
          "or outgoing server's grant: nothing is tried until an admin reconnects it.",
          [R.ADMINS], _AUTO,
          (("mailbox.name", "the incoming account's or outgoing server's name"),
           ("mailbox.kind", "'incoming account' or 'outgoing server'"),
           ("mailbox.provider", "'microsoft', 'google' or 'generic'"),
           ("error", "what the provider or server said"),
           ("settings_url", "its page in the portal, where an admin reconnects it"))))

CATALOGUE: dict[MessageType, MessageTypeInfo] = {info.type: info for info in _TYPES}
_BY_KEY = {info.key: info for info in _TYPES}

# `catalogue.CALL_LOGGED` etc.: the types by name, for short imports.
CALL_LOGGED = MessageType.CALL_LOGGED
CALL_UPDATED_BY_EMAIL = MessageType.CALL_UPDATED_BY_EMAIL
CALL_FORWARDED = MessageType.CALL_FORWARDED
CALL_RESOLVED = MessageType.CALL_RESOLVED
CALL_CLOSED = MessageType.CALL_CLOSED
CALL_REOPENED = MessageType.CALL_REOPENED
TASK_FORWARDED = MessageType.TASK_FORWARDED
APPROVAL_REQUESTED = MessageType.APPROVAL_REQUESTED
APPROVAL_DECIDED = MessageType.APPROVAL_DECIDED
EMAIL_REJECTED = MessageType.EMAIL_REJECTED
SUMMARY_REPLY = MessageType.SUMMARY_REPLY
SLA_ESCALATION = MessageType.SLA_ESCALATION
SLA_BREACH = MessageType.SLA_BREACH
MANUAL_MESSAGE = MessageType.MANUAL_MESSAGE
CALL_UPDATED_BY_DESK = MessageType.CALL_UPDATED_BY_DESK
MAILBOX_NEEDS_RECONNECTING = MessageType.MAILBOX_NEEDS_RECONNECTING


def get(type_: MessageType | int | str) -> MessageTypeInfo:
    """The message type by enum, number or key ("call_logged")."""
    if isinstance(type_, str) and not type_.isdigit():
        try:
            return _BY_KEY[type_]
        except KeyError:
            raise KeyError(f"no message type {type_!r}") from None
    try:
        return CATALOGUE[MessageType(int(type_))]
    except ValueError:
        raise KeyError(f"no message type {type_!r}") from None


def base_variables(*, desk_name: str, desk_address: str, desk_url: str = "",
                   recipient=None, token: str | None = None) -> dict:
    """The variables every type has (`desk`, `recipient`, `token`); the sender adds these
    to a row's stored variables. `recipient` is a Person, a view, or a bare address."""
    if isinstance(recipient, str):
        who = View(recipient, display_name=recipient, name="", email=recipient)
    elif recipient is None or isinstance(recipient, View):
        who = recipient
    else:
        who = person_view(recipient)
    return {"desk": desk_view(desk_name, desk_address, desk_url), "recipient": who,
            "token": token}


def render_message(type_: MessageType | int | str, variables: dict,
                   templates: TemplateSet | None = None) -> RenderedMessage:
    """Render a type's subject, text and html (the admin's templates, or the defaults).

    `variables` may be live views or a stored `snapshot()` of them. Raises
    templates.TemplateError on a broken template or a missing variable.
    """
    info = get(type_)
    templates = templates or info.default_templates
    values = _defaults(info) | {name: restore(value) for name, value in variables.items()}
    with render_budget():  # one budget (steps, size, time) for the message as a whole
        return RenderedMessage(
            subject=render(templates.subject, values, kind="subject"),
            text=render(templates.text, values, kind="text"),
            html=render(templates.html, values, kind="html") if templates.html else None,
        )


def check_templates(type_: MessageType | int | str, templates: TemplateSet) -> list[str]:
    """Editor checks for a whole template set: syntax errors and unknown variables."""
    info = get(type_)
    known = info.variable_names
    problems = []
    for kind, source in (("subject", templates.subject), ("text", templates.text),
                         ("html", templates.html)):
        if source:
            problems += [f"{kind}: {p}" for p in check_template(source, known_variables=known,
                                                                  kind=kind)]
    return problems


def _defaults(info: MessageTypeInfo) -> dict:
    if info.type is MessageType.EMAIL_REJECTED:
        return {"accepted_subjects": ACCEPTED_SUBJECTS}
    return {}


@lru_cache(maxsize=None)
def _load_templates(key: str) -> TemplateSet:
    folder = resources.files("switchboard.outbox") / "default_templates"
    html = folder / f"{key}.html"
    return TemplateSet(
        subject=(folder / f"{key}.subject.txt").read_text(encoding="utf-8"),
        text=(folder / f"{key}.text.txt").read_text(encoding="utf-8"),
        html=html.read_text(encoding="utf-8") if html.is_file() else None,
    )


# -- sample data for the editor's preview -----------------------------------------------------

_TO_CUSTOMER = (MessageType.CALL_LOGGED, MessageType.CALL_RESOLVED, MessageType.CALL_CLOSED,
                MessageType.MANUAL_MESSAGE, MessageType.CALL_UPDATED_BY_DESK)


def sample_variables(type_: MessageType | int | str) -> dict:
    """Variables shaped like the real ones (built through the same views), for previews."""
    info = get(type_)
    world = _sample_world()
    values: dict = {
        "desk": desk_view("Acme Service Desk", "servicedesk@example.org",
                          "https://desk.example.org"),
        "token": world.token,
    }
    t = info.type
    if t in _TO_CUSTOMER:
        values["recipient"] = person_view(world.customer)
    elif t in (MessageType.EMAIL_REJECTED, MessageType.SUMMARY_REPLY):
        values["recipient"] = person_view(world.customer)
    elif t is MessageType.APPROVAL_REQUESTED:
        values["recipient"] = person_view(world.approver)
    elif t is MessageType.APPROVAL_DECIDED:
        values["recipient"] = person_view(world.requester)
    else:
        values["recipient"] = person_view(world.analyst)

    if any(v.name.startswith("call.") for v in info.variables):
        values["call"] = call_view(world.call)
        # The customer's link is their call's read-only page (calls.customer_link), not the portal.
        values["call_url"] = ("https://desk.example.org/follow/WzQyLDE3XQ.Z0o3bA.sample-signature"
                              if t in _TO_CUSTOMER else "https://desk.example.org/calls/42")
    if any(v.name.startswith("task.") for v in info.variables):
        values["task"] = task_view(world.task)
        values["request"] = request_view(world.request)
        values["task_url"] = "https://desk.example.org/tasks/7"

    address = "servicedesk@example.org"
    extra = {
        MessageType.CALL_UPDATED_BY_EMAIL: lambda: {"update": SimpleNamespace(
            author=person_view(world.customer),
            text="It happens with the colour printer too, see the attached photo.",
            attachment_count=1)},
        MessageType.CALL_UPDATED_BY_DESK: lambda: {"update": SimpleNamespace(
            author=person_view(world.analyst),
            text="The new fuser unit is ordered; it should arrive on Thursday.",
            attachment_count=0)},
        MessageType.CALL_FORWARDED: lambda: {"forwarded_by": person_view(world.dispatcher),
                                             "note": "Hardware fault, needs a site visit."},
        MessageType.CALL_RESOLVED: lambda: {
            "resolution": "Replaced the fuser unit; test pages print cleanly.",
            "reopen_mailto": reopen_mailto(address, 42, world.token)},
        MessageType.CALL_CLOSED: lambda: {"reopen_mailto": reopen_mailto(address, 42, world.token)},
        MessageType.CALL_REOPENED: lambda: {"reopened_by": person_view(world.customer),
                                            "reason": "It jammed again this morning."},
        MessageType.TASK_FORWARDED: lambda: {"forwarded_by": person_view(world.dispatcher),
                                             "note": "Please order through the usual supplier."},
        MessageType.APPROVAL_REQUESTED: lambda: {
            "approve_mailto": approval_mailto(address, 7, world.token, "Approve"),
            "reject_mailto": approval_mailto(address, 7, world.token, "Reject")},
        MessageType.APPROVAL_DECIDED: lambda: {"decision": "approved",
                                               "decided_by": person_view(world.approver),
                                               "reason": "Within budget."},
        MessageType.EMAIL_REJECTED: lambda: {
            "original_subject": "Close call 41",
            "reason": "Call 41 belongs to someone else, so you cannot close it.",
            "accepted_subjects": ACCEPTED_SUBJECTS},
        MessageType.SUMMARY_REPLY: lambda: {"kind": "calls", "items": [
            item_view("CALL-42", "Printer on floor 3 jams on every page", "open",
                      world.call.updated_at, "https://desk.example.org/calls/42"),
            item_view("CALL-38", "VPN drops every hour", "pending",
                      datetime(2025, 3, 1, 16, 40, tzinfo=timezone.utc),
                      "https://desk.example.org/calls/38"),
        ]},
        MessageType.SLA_ESCALATION: lambda: {
            "level": 2, "target": "fix", "percent": 75,
            "due_at": datetime(2025, 3, 5, 17, 0, tzinfo=timezone.utc)},
        MessageType.SLA_BREACH: lambda: {
            "target": "fix", "due_at": datetime(2025, 3, 5, 17, 0, tzinfo=timezone.utc)},
        MessageType.MANUAL_MESSAGE: lambda: {
            "author": person_view(world.analyst),
            "message": "An engineer will visit tomorrow between 9 and 11. "
                       "Please leave the printer switched on."},
        MessageType.MAILBOX_NEEDS_RECONNECTING: lambda: {
            "mailbox": SimpleNamespace(name="support", kind="incoming account", provider="microsoft"),
            "error": "invalid_grant: AADSTS700082: The refresh token has expired due to inactivity.",
            "settings_url": "https://desk.example.org/admin/mail/accounts/1"},
    }.get(t)
    if extra:
        values.update(extra())
    return values


def with_samples(info: MessageTypeInfo) -> tuple[Variable, ...]:
    """The type's variables with their sample values filled in (for the editor's list)."""
    samples = sample_variables(info.type)
    return tuple(Variable(v.name, v.description, _resolve(samples, v.name))
                 for v in info.variables)


def _resolve(values: dict, dotted: str):
    head, *rest = dotted.split(".")
    value = values.get(head)
    for part in rest:
        value = getattr(value, part, None)
    return value


def _sample_world() -> SimpleNamespace:
    # Fakes with the domain's attribute names (CONTEXT.md), fed through the real views.
    def person(pid, name, email):
        return SimpleNamespace(id=pid, name=name, email=email, display_name=name)

    customer = person(3, "Ann Customer", "ann.customer@example.com")
    analyst = person(5, "Sam Analyst", "sam.analyst@example.org")
    approver = person(8, "Alex Approver", "alex.approver@example.org")
    requester = person(9, "Rita Requester", "rita.requester@example.com")
    dispatcher = person(6, "Dana Dispatcher", "dana.dispatcher@example.org")
    group = SimpleNamespace(id=2, name="Service Desk", email="servicedesk@example.org")
    logged = datetime(2025, 3, 4, 9, 15, tzinfo=timezone.utc)
    call = SimpleNamespace(
        id=42, ref="CALL-42", summary="Printer on floor 3 jams on every page",
        description="Since Monday the printer by the kitchen jams on every page.",
        priority=SimpleNamespace(id=2, name="High"), status=SimpleNamespace(value="open",
                                                                            name="OPEN"),
        customer=customer, logged_by=customer, assigned_analyst=analyst, assigned_group=group,
        source="email", logged_at=logged, first_response_at=None, resolved_at=None,
        closed_at=None, updated_at=datetime(2025, 3, 4, 11, 2, tzinfo=timezone.utc))
    request = SimpleNamespace(id=9, ref="REQ-9", title="New laptop for Bob",
                              description="Bob starts on the 10th and needs a laptop.",
                              requester=requester, status="open")
    task = SimpleNamespace(id=7, ref="TASK-7", request=request, kind="approval",
                           title="Approve purchase of a laptop (EUR 1,250)",
                           description="Standard developer laptop from the catalogue.",
                           status="open", assigned_analyst=analyst, assigned_group=group,
                           approver=approver, decided_at=None, decision_reason=None)
    return SimpleNamespace(customer=customer, analyst=analyst, approver=approver,
                           requester=requester, dispatcher=dispatcher, group=group, call=call,
                           request=request, task=task, token="Xq3kZ9vT0bLmN2pR7sW4yA8c")
