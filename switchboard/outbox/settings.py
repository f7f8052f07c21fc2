"""What admins decide about outgoing mail: which message types go out and to whom, the
desk-wide switches, their own templates (checked before they are saved), who opted out,
and what to do with mail that failed. Functions flush; the caller commits."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from switchboard.db import db, forget_transaction_cache, transaction_cache, utcnow
from switchboard.errors import InvalidInput, InvalidTransition, NotFound
from switchboard.outbox import catalogue
from switchboard.outbox.catalogue import MessageType, Recipient, TemplateSet
from switchboard.outbox.models import (
    MailOptOut, MailSwitch, NotificationSetting, OutboxMessage, OutboxStatus, TemplateOverride,
)
from switchboard.outbox.templates import TemplateError, check_length
from switchboard.permissions import require
from switchboard.process_copy import ProcessCopy

# Desk-wide switches and their defaults.
SWITCHES = {
    # The forward form offers "send a mail" as a choice (otherwise forwarding always mails).
    "forward_email_optional": False,
    # Tell the analyst (or group) when a customer adds to a call by mail.
    "email_on_update_via_email": True,
    # SLA escalation and breach mail.
    "email_on_escalation": True,
    # Mail the customer a note an analyst added that the customer can see (never an internal one).
    "email_customer_on_desk_note": True,
}
SWITCH_LABELS = {
    "forward_email_optional": "Email optional at forward (the analyst chooses on the forward form)",
    "email_on_update_via_email": "Email the analyst when a call is updated by email",
    "email_on_escalation": "Email at SLA escalation and breach",
    "email_customer_on_desk_note": "Email the customer when an analyst adds a note they can see",
}
# Which switch gates which message types (on top of each type's own on/off).
SWITCHED_TYPES = {
    "email_on_update_via_email": {MessageType.CALL_UPDATED_BY_EMAIL},
    "email_on_escalation": {MessageType.SLA_ESCALATION, MessageType.SLA_BREACH},
    "email_customer_on_desk_note": {MessageType.CALL_UPDATED_BY_DESK},
}

# Mail a person gets even after opting out: it asks them to act, answers their own
# mail, or was written to them by a person.
ESSENTIAL_TYPES = frozenset({
    MessageType.APPROVAL_REQUESTED, MessageType.EMAIL_REJECTED, MessageType.SUMMARY_REPLY,
    MessageType.MANUAL_MESSAGE, MessageType.MAILBOX_NEEDS_RECONNECTING,
})

MAX_TEMPLATE_CHARS = 100_000
MAX_SIGNATURE_CHARS = 2_000


# -- notification settings ------------------------------------------------------------------

@dataclass(frozen=True)
class NotificationRule:
    type: MessageType
    enabled: bool
    recipients: tuple[Recipient, ...]
    customised: bool  # False while the catalogue's defaults apply


# -- the process's copy, and the per-transaction cache ------------------------------------------
# Every action on a call asks whether its mail is on, which switches are set and who opted out;
# admins change these seldom. So each process (a portal worker, the receiver, the scheduler)
# keeps a copy of all three, read in three statements, for CONFIG_SECONDS (a
# switchboard.process_copy.ProcessCopy):
# - a change made in this process is in force here as soon as its transaction commits (the
#   writers below drop the copy at the write and again when that transaction ends);
# - every other process sees it at most CONFIG_SECONDS after the commit (its copy expires);
# - the transaction that made a change reads these tables from the database until it ends, so
#   it sees its own uncommitted change and no other process's copy ever holds one.
# Reads that must be fresh (the admin's settings page) go to the database: notification_rules()
# and switches(). Without a copy (inside a writing transaction, or more opt-outs than
# OPT_OUTS_READ_WHOLE) the answers are kept in switchboard.db's transaction cache as before.

CONFIG_SECONDS = 5.0
_clock = time.monotonic  # the copy's age; a test moves it on
_desk_config = ProcessCopy("switchboard.outbox.settings.written")


@dataclass(frozen=True)
class _Copy:
    rules: dict  # message type number -> NotificationRule, for the stored rows only
    switches: dict  # name -> stored value
    opted_out: frozenset | None  # None: too many to hold; asked per person


def forget_desk_config() -> None:
    """Drops this process's copy for the current database: the next read loads it again.
    For the writers here, and for anything that changes these tables behind them (a test
    emptying its database)."""
    _desk_config.forget()


def _written() -> None:
    """A writer changed these tables: from here to the end of its transaction, it reads them
    from the database; the copy is dropped now and once more when the transaction ends."""
    forget_transaction_cache()
    _desk_config.written()


def _copy() -> _Copy | None:
    """This process's copy, loaded again when older than CONFIG_SECONDS or after a change
    made here; None inside a transaction that changed these tables."""
    return _desk_config.get(_load_copy, _clock, CONFIG_SECONDS)


def _load_copy() -> _Copy:
    # Pending rows of other tables cannot change these answers: no flush for them.
    with db.session.no_autoflush:
        rules = _stored_rules()
        switches = dict(db.session.execute(sa.select(MailSwitch.name, MailSwitch.enabled)).all())
        opted_out = frozenset(db.session.scalars(
            sa.select(MailOptOut.person_id).limit(OPT_OUTS_READ_WHOLE + 1)))
    return _Copy(rules, switches, opted_out if len(opted_out) <= OPT_OUTS_READ_WHOLE else None)


def notification_rule(message_type) -> NotificationRule:
    info = _info(message_type)
    rules = transaction_cache().get("rules")
    if rules is not None and info.number in rules:
        return rules[info.number]
    copy = _copy()
    if copy is not None:
        return copy.rules.get(info.number) or _default_rule(info)
    rules = transaction_cache().setdefault("rules", {})
    rule = rules[info.number] = _load_notification_rule(info)
    return rule


def _load_notification_rule(info) -> NotificationRule:
    row = db.session.get(NotificationSetting, info.number)
    return _default_rule(info) if row is None else _rule(row)


def _default_rule(info) -> NotificationRule:
    return NotificationRule(info.type, True, info.recipients, False)


def _stored_rules() -> dict:
    """The stored rows as rules, by message type number (a row of a type the catalogue no
    longer has is left out: nothing asks for it)."""
    known = {catalogue.get(t).number for t in MessageType}
    return {row.message_type: _rule(row) for row in db.session.execute(sa.select(
        NotificationSetting.message_type, NotificationSetting.enabled, NotificationSetting.recipients))
        if row.message_type in known}


def _rule(row) -> NotificationRule:
    """A stored row (or a row of its columns) as a rule."""
    info = catalogue.get(row.message_type)
    recipients = (tuple(Recipient(r) for r in row.recipients) if row.recipients is not None
                  else info.recipients)
    return NotificationRule(info.type, row.enabled, recipients, True)


def notification_rules() -> list[NotificationRule]:
    """Every message type with its setting, in catalogue order, read from the database (for
    the settings page: it shows what is saved, not a copy a few seconds old). The rules stay
    in the transaction cache, so notification_rule() answers the same for the rest of it."""
    with db.session.no_autoflush:
        stored = _stored_rules()
    rules = transaction_cache().setdefault("rules", {})
    for message_type in MessageType:
        info = catalogue.get(message_type)
        rules[info.number] = stored.get(info.number) or _default_rule(info)
    return [rules[catalogue.get(t).number] for t in MessageType]


def set_notification(message_type, actor, *, enabled: bool | None = None,
                     recipients=None) -> NotificationRule:
    """Turn a type on or off and/or choose its recipients (catalogue.Recipient values).
    `recipients=()` is refused: turn the type off instead."""
    require(actor, "admin")
    info = _info(message_type)
    row = db.session.get(NotificationSetting, info.number)
    if row is None:
        row = NotificationSetting(message_type=info.number, enabled=True, recipients=None)
        db.session.add(row)
    if enabled is not None:
        row.enabled = bool(enabled)
    if recipients is not None:
        chosen = []
        for value in recipients:
            try:
                chosen.append(Recipient(getattr(value, "value", value)))
            except ValueError:
                allowed = ", ".join(r.value for r in Recipient)
                raise InvalidInput(f"Unknown recipient {value!r}; choose from {allowed}.",
                                   field="recipients") from None
        if not chosen:
            raise InvalidInput("Choose at least one recipient, or turn the message off.",
                               field="recipients")
        row.recipients = [r.value for r in dict.fromkeys(chosen)]
    row.updated_at = utcnow()
    db.session.flush()
    _written()
    return notification_rule(info.type)


def reset_notification(message_type, actor) -> NotificationRule:
    """Back to the catalogue's defaults."""
    require(actor, "admin")
    info = _info(message_type)
    db.session.execute(sa.delete(NotificationSetting).where(
        NotificationSetting.message_type == info.number))
    db.session.flush()
    _written()
    return notification_rule(info.type)


# -- switches ---------------------------------------------------------------------------------

def get_switch(name: str) -> bool:
    default = _switch_default(name)
    stored = transaction_cache().get("switches")
    if stored is None:
        copy = _copy()
        if copy is not None:
            stored = copy.switches
        else:
            stored = transaction_cache()["switches"] = dict(
                db.session.execute(sa.select(MailSwitch.name, MailSwitch.enabled)).all())
    value = stored.get(name)
    return default if value is None else bool(value)


def switches() -> dict[str, bool]:
    stored = dict(db.session.execute(sa.select(MailSwitch.name, MailSwitch.enabled)).all())
    return {name: bool(stored.get(name, default)) for name, default in SWITCHES.items()}


def set_switch(name: str, enabled: bool, actor) -> None:
    require(actor, "admin")
    _switch_default(name)
    if not isinstance(enabled, bool):
        raise InvalidInput(f"{name} is on or off (true or false).", field=name)
    row = db.session.get(MailSwitch, name)
    if row is None:
        db.session.add(MailSwitch(name=name, enabled=enabled, updated_at=utcnow()))
    else:
        row.enabled, row.updated_at = enabled, utcnow()
    db.session.flush()
    _written()


def mail_wanted(message_type) -> bool:
    """The type is enabled and no desk-wide switch turns it off."""
    info = _info(message_type)
    if not notification_rule(info.type).enabled:
        return False
    return all(get_switch(name) for name, types in SWITCHED_TYPES.items() if info.type in types)


def _switch_default(name: str) -> bool:
    if name not in SWITCHES:
        raise InvalidInput(f"There is no mail switch {name!r}; the switches are: "
                           + ", ".join(SWITCHES) + ".", field="name")
    return SWITCHES[name]


# -- template overrides -----------------------------------------------------------------------

@dataclass(frozen=True)
class Overrides:
    """What the admin set for one message type (and account), resolved: templates None
    means the shipped defaults."""

    templates: TemplateSet | None = None
    from_address: str | None = None
    from_name: str | None = None
    signature: str | None = None


def get_template_override(message_type, account_id: int | None = None) -> TemplateOverride | None:
    number = None if message_type is None else _info(message_type).number
    return db.session.scalar(sa.select(TemplateOverride).where(
        _is(TemplateOverride.message_type, number), _is(TemplateOverride.account_id, account_id)))


def list_template_overrides() -> list[TemplateOverride]:
    return list(db.session.scalars(sa.select(TemplateOverride).order_by(
        TemplateOverride.message_type, TemplateOverride.account_id, TemplateOverride.id)))


def save_template_override(message_type, actor, *, subject: str | None = None,
                           text: str | None = None, html: str | None = None,
                           account_id: int | None = None, from_address: str | None = None,
                           from_name: str | None = None,
                           signature: str | None = None) -> TemplateOverride:
    """Save (or replace) the admin's templates and/or From line and signature.

    `message_type` None sets From and signature for every type. Templates come as a set:
    subject and text together (html optional). They are checked before anything is
    saved: syntax, the type's documented variables, names that reach for Python
    internals, and a render on the editor's sample data (which also trips the
    sandbox), so a template that cannot be sent is never stored."""
    require(actor, "admin")
    number = None if message_type is None else _info(message_type).number
    subject, text, html = (_blank_to_none(v) for v in (subject, text, html))
    if (subject is None) != (text is None):
        raise InvalidInput("Give both a subject and a text template (or neither).",
                           field="subject" if subject is None else "text")
    if html is not None and text is None:
        raise InvalidInput("An HTML template needs a text template too.", field="text")
    if text is not None:
        if number is None:
            raise InvalidInput("Templates belong to a message type.", field="message_type")
        check_template_set(number, TemplateSet(subject, text, html))
    if account_id is not None:
        from switchboard.inbound.models import IncomingAccount

        if db.session.get(IncomingAccount, account_id) is None:
            raise InvalidInput(f"There is no incoming account {account_id}.", field="account_id")
    if from_address is not None and from_address.strip():
        from switchboard.people.services import normalize_email

        try:
            from_address = normalize_email(from_address)
        except InvalidInput:
            raise InvalidInput(f"Not a valid From address: {from_address[:80]!r}.",
                               field="from_address") from None
    else:
        from_address = None
    from_name = " ".join((from_name or "").split())[:200] or None
    signature = _blank_to_none(signature)
    if signature is not None and len(signature) > MAX_SIGNATURE_CHARS:
        raise InvalidInput(f"A signature has at most {MAX_SIGNATURE_CHARS} characters.",
                           field="signature")
    if text is None and not any((from_address, from_name, signature)):
        raise InvalidInput("Nothing to save: give templates, a From line or a signature.")

    row = get_template_override(number, account_id) if number is not None else db.session.scalar(
        sa.select(TemplateOverride).where(TemplateOverride.message_type.is_(None),
                                          _is(TemplateOverride.account_id, account_id)))
    if row is None:
        row = TemplateOverride(message_type=number, account_id=account_id)
        db.session.add(row)
    row.subject, row.text_body, row.html_body = subject, text, html
    row.from_address, row.from_name, row.signature = from_address, from_name, signature
    row.updated_at = utcnow()
    row.updated_by_id = getattr(actor, "id", None)
    db.session.flush()
    return row


def delete_template_override(message_type, actor, account_id: int | None = None) -> bool:
    """Back to the shipped templates (and the server's From line). True if one was removed."""
    require(actor, "admin")
    number = None if message_type is None else _info(message_type).number
    result = db.session.execute(sa.delete(TemplateOverride).where(
        _is(TemplateOverride.message_type, number), _is(TemplateOverride.account_id, account_id)))
    db.session.flush()
    return bool(result.rowcount)


def check_template_set(message_type, templates: TemplateSet) -> catalogue.RenderedMessage:
    """Raise InvalidInput listing every problem (a render over its budget among them: see
    templates.render_budget), or return the set rendered on sample data when it can be sent."""
    info = _info(message_type)
    problems = []
    for kind, source in (("subject", templates.subject), ("text", templates.text),
                         ("html", templates.html)):
        if source is not None and len(source) > MAX_TEMPLATE_CHARS:
            problems.append(f"{kind}: longer than {MAX_TEMPLATE_CHARS} characters")
        elif source:
            # Counted before anything parses it: parsing a huge template costs seconds.
            problems += [f"{kind}: {p}" for p in check_length(source)] or \
                [f"{kind}: {p}" for p in _private_names(source)]
    if not problems:
        problems = catalogue.check_templates(info.type, templates)
    if not problems:
        try:
            rendered = catalogue.render_message(info.type, catalogue.sample_variables(info.type),
                                                templates)
        except TemplateError as error:
            problems.append(f"on sample data: {error}")
    if problems:
        raise InvalidInput("The template cannot be used: " + "; ".join(problems), field="templates")
    return rendered


def preview(message_type, templates: TemplateSet | None = None) -> catalogue.RenderedMessage:
    """The type rendered on sample data, with the given templates or the ones in force."""
    info = _info(message_type)
    if templates is None:
        templates = resolve_overrides(info.type, None, list_template_overrides()).templates
    return catalogue.render_message(info.type, catalogue.sample_variables(info.type), templates)


def resolve_overrides(message_type, account_id: int | None, rows) -> Overrides:
    """The overrides in force for a type and account, from `rows` (all TemplateOverride
    rows, loaded once per batch by the sender)."""
    number = _info(message_type).number
    by_key = {(r.message_type, r.account_id): r for r in rows}
    order = [(number, account_id), (None, account_id), (number, None), (None, None)]
    if account_id is None:
        order = [(number, None), (None, None)]
    chain = [by_key[k] for k in order if k in by_key]
    templates = next((TemplateSet(r.subject, r.text_body, r.html_body) for r in chain
                      if r.message_type is not None and r.subject and r.text_body), None)

    def first(attribute):
        return next((getattr(r, attribute) for r in chain if getattr(r, attribute)), None)

    return Overrides(templates, first("from_address"), first("from_name"), first("signature"))


_PARSER = ImmutableSandboxedEnvironment()


def _private_names(source: str) -> list[str]:
    """Attribute or key names starting with "_" (`__class__`, `_label`...): the sandbox
    refuses them when they run, but a branch the sample data does not reach would only
    fail when real mail is sent, so they are refused at save time."""
    try:
        tree = _PARSER.parse(source)
    except (TemplateSyntaxError, RecursionError):
        return []  # reported by check_templates with its line
    problems = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else (
            node.arg.value if isinstance(node.arg, nodes.Const) else None)
        if isinstance(name, str) and name.startswith("_"):
            problems.append(f"line {node.lineno}: '{name}' is not allowed in a template")
    for node in tree.find_all(nodes.Name):
        if node.name.startswith("_"):
            problems.append(f"line {node.lineno}: '{node.name}' is not allowed in a template")
    return problems


# -- opting out -------------------------------------------------------------------------------

def set_mail_opt_out(person, opted_out: bool, actor) -> None:
    """A person opts out of (or back into) mail that is not essential; an admin may do it
    for them."""
    if actor is None or (actor.id != person.id):
        require(actor, "admin")
    row = db.session.get(MailOptOut, person.id)
    if opted_out and row is None:
        db.session.add(MailOptOut(person_id=person.id, created_at=utcnow()))
    elif not opted_out and row is not None:
        db.session.delete(row)
    db.session.flush()
    _written()


def is_opted_out(person) -> bool:
    return db.session.get(MailOptOut, person.id) is not None


OPT_OUTS_READ_WHOLE = 2000


def opted_out_ids(person_ids) -> set[int]:
    ids = {i for i in person_ids if i is not None}
    if not ids:
        return set()
    copy = _copy()
    if copy is not None and copy.opted_out is not None:
        return ids & copy.opted_out
    cache = transaction_cache()
    if "all_opted_out" not in cache:
        # Opt-outs are few: read them all once per transaction when there are at most
        # OPT_OUTS_READ_WHOLE, else ask per person.
        with db.session.no_autoflush:
            rows = set(db.session.scalars(sa.select(MailOptOut.person_id).limit(OPT_OUTS_READ_WHOLE + 1)))
        cache["all_opted_out"] = rows if len(rows) <= OPT_OUTS_READ_WHOLE else None
    if cache["all_opted_out"] is not None:
        return ids & cache["all_opted_out"]
    known = cache.setdefault("opted_out", {})  # person id -> opted out?
    missing = ids - known.keys()
    if missing:
        # Pending rows of other tables cannot change the answer, so they need not be
        # flushed for it (the caller's next flush takes them); set_mail_opt_out flushes its own.
        with db.session.no_autoflush:
            found = set(db.session.scalars(sa.select(MailOptOut.person_id).where(MailOptOut.person_id.in_(missing))))
        known.update((i, i in found) for i in missing)
    return {i for i in ids if known[i]}


# -- failed mail: requeue or cancel -------------------------------------------------------------

REQUEUABLE = (OutboxStatus.FAILED, OutboxStatus.DEFERRED, OutboxStatus.CANCELLED)
CANCELLABLE = (OutboxStatus.QUEUED, OutboxStatus.DEFERRED, OutboxStatus.FAILED)


def requeue(row_id: int, actor) -> OutboxMessage:
    """Send it again now, with fresh attempts. Recipients that already got it (see
    recipient_results) are not sent it twice; the Message-ID stays the same."""
    require(actor, "admin")
    row = _row(row_id)
    # Permanent refusals are tried again too: the admin may have fixed the address.
    delivered = {a: r for a, r in (row.recipient_results or {}).items()
                 if r.get("outcome") == "sent"} or None
    return _transition(row, REQUEUABLE, "only failed, deferred or cancelled mail can be queued again",
                       status=OutboxStatus.QUEUED, attempts=0, next_attempt_at=utcnow(),
                       requeued_at=utcnow(), lease_until=None, recipient_results=delivered,
                       last_message=f"Queued again by {actor.display_name}.")


def cancel(row_id: int, actor) -> OutboxMessage:
    """Never send it (a mail already in the hands of a sender cannot be stopped)."""
    require(actor, "admin")
    row = _row(row_id)
    return _transition(row, CANCELLABLE, "only queued, deferred or failed mail can be cancelled",
                       status=OutboxStatus.CANCELLED, lease_until=None,
                       last_message=f"Cancelled by {actor.display_name}.")


def _transition(row: OutboxMessage, allowed, refusal: str, **values) -> OutboxMessage:
    # One conditional UPDATE: a sender claiming the row at the same moment wins or loses
    # cleanly, never leaving a row marked cancelled while it is being sent.
    done = db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == row.id, OutboxMessage.status.in_(allowed))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(row)
    if not done:
        raise InvalidTransition(f"Mail {row.id} is {row.status.value}; {refusal}.")
    return row


def _row(row_id) -> OutboxMessage:
    row = db.session.get(OutboxMessage, row_id)
    if row is None:
        raise NotFound(f"There is no outgoing mail {row_id}.")
    return row


# -- helpers ----------------------------------------------------------------------------------

def _info(message_type) -> catalogue.MessageTypeInfo:
    try:
        return catalogue.get(message_type)
    except KeyError:
        raise InvalidInput(f"There is no message type {message_type!r}.",
                           field="message_type") from None


def _is(column, value):
    return column.is_(None) if value is None else column == value


def _blank_to_none(value: str | None) -> str | None:
    return value if value is not None and value.strip() else None
