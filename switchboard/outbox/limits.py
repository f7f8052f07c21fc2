"""Limits on what mail can make the desk send (RFC 3834 section 2): the one place that says
whether an automatic reply to a mail (the acknowledgement of a call it logged, a rejection, a
summary of the sender's items) may go out, and to which address.

Who: the parsed From line, when it names exactly one mailbox and no group, and that mailbox
is an addr-spec with a domain, not an address nobody reads (mailer-daemon, no-reply...) and
not one of the desk's own addresses (the incoming accounts' addresses and catch-all domains,
the outgoing servers' and templates' From addresses). Otherwise nobody: a From line is
whatever the sender wrote, and a reply to a second or a made-up address is how a desk is
turned into a spam cannon. One reply at most per incoming mail.

How often: at most `per_address_hour` and `per_address_day` replies of each kind to one
address, counted on the address actually replied to (normalised), never on a stored header;
and at most `desk_hour` automatic replies from the whole desk. Admins change them on the
notification settings page; no row means the default. A reply held back is said on the
inbound message's outcome ("no reply: limit reached (...)"); what the mail did still happens.

Staff mail an incoming mail causes (a call it logged, a note or reopen it added, told to an
analyst, a group or every admin as the admin's rules say) is not a reply, and has limits of
its own (permit_staff_mail): a customer's mail tells staff at most as often as the
per-address limits allow (counted per mail in, on the sender), and the whole desk sends at
most `staff_hour` such mails an hour, whoever the senders are (counted per mail out: the harm
is the mail staff receive and the sending quota it spends, and one mail in to a group of 50
is 50 of those). A mail in tells all its staff recipients or none of them, so the cap is
never passed and a group is never half told. Past it the record is still made; the inbound
log says "staff not told by mail: desk-wide limit reached (...)"; the first refusal of an
hour leaves a mark the admin's health page shows (staff_mail_held).

Counting reads the auto_reply table (an index range scan) once per address and kind per
transaction and counts in memory after that, so a batch acted on together (batched writes,
where queries do not see the batch's unflushed rows) counts its own replies too. Two acting
processes on PostgreSQL count in separate transactions, so at worst each sends up to the
limit to the same address in the same moment; on SQLite acting transactions take turns and
the count is exact."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from switchboard.db import db, forget_transaction_cache, transaction_cache, utcnow
from switchboard.errors import InvalidInput
from switchboard.outbox.models import AutoReply, OutgoingServer, ReplyLimit, TemplateOverride
from switchboard.permissions import require

ACKNOWLEDGEMENT = "acknowledgement"
REJECTION = "rejection"
SUMMARY = "summary"
# Not a reply: a customer's mail that told staff of what it did (a note, a reopen). It goes to
# every member of the call's group, so one mail becomes many; counted on the sender's address
# with the same per-address limits, outside the desk-wide cap on replies (see permit_staff_mail).
STAFF_NOTICE = "staff_notice"
KINDS = {ACKNOWLEDGEMENT: ("acknowledgement", "acknowledgements"), REJECTION: ("rejection", "rejections"),
         SUMMARY: ("summary", "summaries"), STAFF_NOTICE: ("mail that told staff", "mails that told staff")}
# What the desk-wide cap on automatic replies counts.
REPLY_KINDS = (ACKNOWLEDGEMENT, REJECTION, SUMMARY)
# Desk-wide only, never per address (so not in KINDS): one row per staff mail an incoming mail
# caused (address: the staff member's), and at most one an hour saying the cap held some back
# (address: the sender's, "" when none), for the health page.
STAFF_MAIL = "staff_mail"
STAFF_HELD = "staff_held"


@dataclass(frozen=True)
class Limit:
    name: str
    default: int
    label: str
    maximum: int


# 200 an hour for the whole desk: several times the automatic replies of a busy desk's
# busiest hour (one acknowledgement per call logged by mail, a few rejections), yet a flood of
# forged senders costs at most 200 mails an hour, 4,800 a day: under the daily sending quotas
# of Microsoft 365 (10,000 recipients) and far from what gets a server's address blocklisted.
# 500 staff mails an hour caused by incoming mail: a busy desk's busiest hour (say 100 mails
# in, most told to one analyst, a third to a group of 8) is about 300; a flood of forged
# senders costs each member of a 20-analyst group at most 25 mails an hour. A flood that lasts
# a day would spend 12,000 of a hosted quota: the health page says when the cap holds.
LIMITS = {
    limit.name: limit for limit in (
        Limit("per_address_hour", 3, "Automatic replies of each kind to one address, per hour", 1000),
        Limit("per_address_day", 10, "Automatic replies of each kind to one address, per day", 10000),
        Limit("desk_hour", 200, "Automatic replies from the whole desk, per hour", 100000),
        Limit("staff_hour", 500, "Staff mail caused by incoming mail, from the whole desk, per hour", 100000),
    )
}
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


# -- the limits admins set ----------------------------------------------------------------------

def limits() -> dict[str, int]:
    """name -> value in force (read once per transaction)."""
    cache = transaction_cache()
    values = cache.get("reply_limits")
    if values is None:
        stored = dict(db.session.execute(sa.select(ReplyLimit.name, ReplyLimit.value)).all())
        values = cache["reply_limits"] = {name: stored.get(name, limit.default) for name, limit in LIMITS.items()}
    return values


def set_limits(actor, **values) -> dict[str, int]:
    """Sets some or all of the limits, checked together: whole numbers from 0 (no automatic
    replies) to the limit's maximum, the per-day one at least the per-hour one. Raises
    InvalidInput (with the field) and changes nothing when any is wrong."""
    require(actor, "admin")
    wanted = dict(limits())
    for name, value in values.items():
        limit = LIMITS.get(name)
        if limit is None:
            raise InvalidInput(f"There is no reply limit {name!r}; the limits are: {', '.join(LIMITS)}.",
                               field=name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit.maximum:
            raise InvalidInput(f"{limit.label}: give a whole number from 0 to {limit.maximum}.", field=name)
        wanted[name] = value
    if wanted["per_address_day"] < wanted["per_address_hour"]:
        raise InvalidInput("The limit per day cannot be lower than the limit per hour.", field="per_address_day")
    for name, value in values.items():
        row = db.session.get(ReplyLimit, name)
        if row is None and value == LIMITS[name].default:
            continue  # left at the default: no row, so it follows the default
        if row is None:
            db.session.add(ReplyLimit(name=name, value=value, updated_at=utcnow()))
        else:
            row.value, row.updated_at = value, utcnow()
    db.session.flush()
    forget_transaction_cache()
    return limits()


# -- who a reply may go to ----------------------------------------------------------------------

@dataclass
class Answering:
    """One incoming mail being acted on: the address an automatic reply to it may go to (None:
    nowhere, and `refusal` says why), and the replies held back, for its outcome."""

    inbound_id: int | None
    address: str | None
    refusal: str | None = None
    replied: bool = False
    notes: list[str] = field(default_factory=list)

    def outcome_note(self, reply: str | None = None) -> str | None:
        """What to add to the message's outcome: the rejection's fate and anything held back."""
        parts = [p for p in [reply, *self.notes] if p]
        return "; ".join(dict.fromkeys(parts)) or None


def reply_target(msg) -> tuple[str | None, str | None]:
    """(address, None) when an automatic reply to the parsed mail `msg` may go to `address`,
    else (None, the "no reply: ..." reason)."""
    from switchboard.inbound.automated import is_never_answer_address
    from switchboard.people.services import normalize_email

    named = tuple(getattr(msg, "from_addresses", ()) or ((msg.from_address,) if msg.from_address else ()))
    if getattr(msg, "from_groups", ()):
        return None, "no reply: the From line is a group, not a sender"
    if len(named) > 1:
        return None, f"no reply: the From line names {len(named)} addresses"
    if not named:
        return None, "no reply: the mail has no sender address"
    raw = named[0]
    try:
        address = normalize_email(raw)
    except InvalidInput:
        address = None
    if address is None or "@" not in address or address.rsplit("@", 1)[1].startswith("["):
        return None, f"no reply: {_shown(raw)} is not an address with a domain"
    if is_never_answer_address(address):
        return None, "no reply: the sender address is not one to answer"
    if _is_our_own(address):
        return None, f"no reply: {address} is one of the desk's own addresses"
    return address, None


def _is_our_own(address: str) -> bool:
    cache = transaction_cache()
    own = cache.get("own_addresses")
    if own is None:
        from switchboard.inbound.models import IncomingAccount, IncomingAddress

        # One statement per transaction: every address the desk receives at or sends from.
        query = sa.union_all(
            sa.select(IncomingAddress.address.label("a")),
            sa.select(IncomingAccount.username).where(IncomingAccount.username.like("%@%")),
            sa.select(OutgoingServer.from_address),
            sa.select(TemplateOverride.from_address).where(TemplateOverride.from_address.is_not(None)),
        )
        with db.session.no_autoflush:
            own = cache["own_addresses"] = {(a or "").strip().lower() for a in db.session.scalars(query)}
    # "@domain" is an account's catch-all: every address there reaches the desk.
    return address in own or "@" + address.rsplit("@", 1)[1] in own


def _shown(value: str) -> str:
    return repr(value[:80])


# -- the mail being acted on ---------------------------------------------------------------------
# The acknowledgement is queued by an event handler (switchboard.outbox.notify), which learns of
# the call, not of the mail: acting alone it runs inside act() (the mail is `answering_now`),
# in batched writes after the batch (the mail is found by the call it logged).

def start(inbound, msg) -> Answering:
    """Called before acting on `inbound` (parsed as `msg`)."""
    address, refusal = reply_target(msg)
    answering = Answering(getattr(inbound, "id", None), address, refusal)
    cache = transaction_cache()
    cache.setdefault("answering", {})[id(inbound)] = (inbound, answering)
    cache["answering_now"] = answering
    return answering


def acted(answering: Answering, record) -> None:
    """Called after acting: `record` (if any) is what the mail logged or touched."""
    cache = transaction_cache()
    cache.pop("answering_now", None)
    if record is not None:
        # The first mail to name a record in a transaction is the one that logged it.
        cache.setdefault("answering_by_record", {}).setdefault(id(record), (record, answering))


def answering_for(record=None, inbound=None) -> Answering | None:
    """The mail that caused mail about `record`, or the Answering registered for `inbound`."""
    cache = transaction_cache()
    if inbound is not None:
        found = cache.get("answering", {}).get(id(inbound))
        return found[1] if found is not None and found[0] is inbound else None
    found = cache.get("answering_by_record", {}).get(id(record))
    if found is not None and found[0] is record:
        return found[1]
    return cache.get("answering_now")


def answering_now() -> Answering | None:
    """The mail being acted on at this moment, if any (None after it, so in batched writes,
    where handlers run after the batch: answering_for(record) then finds the first mail of
    the batch that named the record)."""
    return transaction_cache().get("answering_now")


# -- the decision --------------------------------------------------------------------------------

def permit(kind: str, answering: Answering, to: str | None = None) -> str | None:
    """None when an automatic reply of `kind` may go to answering.address (it is counted
    then: queue it), else why not ("no reply: ..."), also kept in answering.notes. `to`, when
    given, is where the caller would send it: anywhere but the sender's address is refused."""
    refusal = _refusal(kind, answering)
    if refusal is None and to is not None and to.strip().lower() != answering.address:
        refusal = f"no reply: {_shown(to)} is not the address that sent the mail"
    if refusal is not None:
        answering.notes.append(refusal)
        return refusal
    _count(kind, answering)
    return None


def permit_staff_mail(answering: Answering, addresses: list[str], sender: str | None = None) -> str | None:
    """None when the mail being acted on may cause the staff mail to `addresses` (one mail
    each; counted then: queue them), else why not, also kept in answering.notes. `sender`,
    when given, is the customer whose mail it is: their mail tells staff at most as often as
    the per-address limits allow (a customer may write as often as they like, and every mail
    is on the call's timeline; what is limited is the mail to staff each one causes). Then the
    desk-wide cap: all of `addresses` must fit under `staff_hour`, or none is mailed."""
    if not addresses:
        return None
    values = limits()
    refusal = None
    if sender is not None:
        sender = sender.strip().lower()
        hour, day = _address_counts(STAFF_NOTICE, sender)
        if hour >= values["per_address_hour"]:
            refusal = (f"staff not told by mail: limit reached ({_many(hour, STAFF_NOTICE)} from {sender} "
                       "in the last hour)")
        elif day >= values["per_address_day"]:
            refusal = (f"staff not told by mail: limit reached ({_many(day, STAFF_NOTICE)} from {sender} "
                       "in the last day)")
    if refusal is None:
        cap = values["staff_hour"]
        sent = _staff_count(cap)
        if sent + len(addresses) > cap:
            refusal = (f"staff not told by mail: desk-wide limit reached ({sent} of {cap} staff mails caused by "
                       f"incoming mail in the last hour; this one would send {len(addresses)})")
            _mark_held(answering)
    if refusal is not None:
        answering.notes.append(refusal)
        return refusal
    if sender is not None:
        _add_row(STAFF_NOTICE, sender, answering.inbound_id)
    for address in addresses:
        _add(STAFF_MAIL, address.strip().lower()[:320], answering.inbound_id)
    transaction_cache()["staff_mail_desk"] = sent + len(addresses)
    return None


def staff_mail_held(now=None):
    """When the desk-wide cap on staff mail last left its mark (the first mail it held back in
    an hour), if that was in the last hour; None when it held nothing back."""
    since = (now or utcnow()) - HOUR
    return db.session.scalar(sa.select(sa.func.max(AutoReply.created_at))
                             .where(AutoReply.kind == STAFF_HELD, AutoReply.created_at >= since))


def _refusal(kind: str, answering: Answering) -> str | None:
    if answering.address is None:
        return answering.refusal or "no reply: the sender address is not one to answer"
    if answering.replied:
        return "no reply: this mail was answered already"
    values = limits()
    hour, day = _address_counts(kind, answering.address)
    if hour >= values["per_address_hour"]:
        return f"no reply: limit reached ({_many(hour, kind)} to {answering.address} in the last hour)"
    if day >= values["per_address_day"]:
        return f"no reply: limit reached ({_many(day, kind)} to {answering.address} in the last day)"
    desk = _desk_count(values["desk_hour"])
    if desk >= values["desk_hour"]:
        return f"no reply: limit reached (the desk sent {desk} automatic replies in the last hour)"
    return None


def _many(count: int, kind: str) -> str:
    return f"{count} {KINDS[kind][count != 1]}"


# The counts of every kind for a set of addresses, in one statement.
_COUNTS = (
    sa.select(AutoReply.address, AutoReply.kind,
              sa.func.sum(sa.case((AutoReply.created_at >= sa.bindparam("hour_ago"), 1), else_=0)),
              sa.func.count())
    .where(AutoReply.address.in_(sa.bindparam("addresses", expanding=True)),
           AutoReply.created_at >= sa.bindparam("day_ago"))
    .group_by(AutoReply.address, AutoReply.kind)
)


def _address_counts(kind: str, address: str) -> list[int]:
    """[in the last hour, in the last day] for `kind` to `address`, kept for the transaction.
    The first question reads the counts of every address of the mail being acted on in this
    transaction (in batched writes, the whole batch: one statement per batch)."""
    cache = transaction_cache()
    counts = cache.setdefault("auto_reply_counts", {})
    key = (kind, address)
    if key not in counts:
        loaded = cache.setdefault("auto_reply_loaded", set())
        wanted = {a.address for _, a in cache.get("answering", {}).values() if a.address} | {address}
        wanted -= loaded
        now = utcnow()
        with db.session.no_autoflush:
            found = db.session.execute(_COUNTS, {"addresses": sorted(wanted), "hour_ago": now - HOUR,
                                                 "day_ago": now - DAY}).all()
        for each in wanted:
            for name in KINDS:
                counts[(name, each)] = [0, 0]
        for each, name, hour, day in found:
            counts[(name, each)] = [int(hour or 0), int(day)]
        # Rows of this transaction not written yet (a query does not see them in batched writes).
        for row in _pending_rows():
            if row.address in wanted and row.kind in KINDS:
                counts[(row.kind, row.address)][0] += 1
                counts[(row.kind, row.address)][1] += 1
        loaded |= wanted
    return counts[key]


def _desk_count(cap: int) -> int:
    cache = transaction_cache()
    if "auto_reply_desk" not in cache:
        since = utcnow() - HOUR
        # Counting stops at the cap: the answer is "cap reached" either way.
        inner = (sa.select(AutoReply.id).where(AutoReply.created_at >= since, AutoReply.kind.in_(REPLY_KINDS))
                 .limit(max(cap, 0)).subquery())
        with db.session.no_autoflush:
            found = db.session.scalar(sa.select(sa.func.count()).select_from(inner))
        cache["auto_reply_desk"] = int(found) + sum(1 for row in _pending_rows() if row.kind in REPLY_KINDS)
    return cache["auto_reply_desk"]


def _staff_count(cap: int) -> int:
    """Staff mails caused by incoming mail in the last hour (up to the cap), read once per
    transaction; permit_staff_mail adds its own to the kept count."""
    cache = transaction_cache()
    if "staff_mail_desk" not in cache:
        since = utcnow() - HOUR
        inner = (sa.select(AutoReply.id).where(AutoReply.created_at >= since, AutoReply.kind == STAFF_MAIL)
                 .limit(max(cap, 0)).subquery())
        with db.session.no_autoflush:
            found = db.session.scalar(sa.select(sa.func.count()).select_from(inner))
        cache["staff_mail_desk"] = int(found) + sum(1 for row in _pending_rows() if row.kind == STAFF_MAIL)
    return cache["staff_mail_desk"]


def _mark_held(answering: Answering) -> None:
    """The health page's mark: at most one an hour (a flood refuses thousands of mails; one
    row says it as well), asked once per transaction."""
    cache = transaction_cache()
    if cache.get("staff_held_marked"):
        return
    cache["staff_held_marked"] = True
    if any(row.kind == STAFF_HELD for row in _pending_rows()):
        return
    with db.session.no_autoflush:
        held = db.session.scalar(sa.select(AutoReply.id).where(
            AutoReply.kind == STAFF_HELD, AutoReply.created_at >= utcnow() - HOUR).limit(1))
    if held is None:
        _add(STAFF_HELD, answering.address or "", answering.inbound_id)


def _pending_rows() -> list[AutoReply]:
    return [row for row in db.session.new if isinstance(row, AutoReply)]


def _count(kind: str, answering: Answering) -> None:
    # The counts are read before the row is added, so it is counted once.
    desk = _desk_count(limits()["desk_hour"])
    _add_row(kind, answering.address, answering.inbound_id)
    answering.replied = True
    transaction_cache()["auto_reply_desk"] = desk + 1


def _add_row(kind: str, address: str, inbound_id: int | None) -> None:
    counts = _address_counts(kind, address)
    _add(kind, address, inbound_id)
    counts[0] += 1
    counts[1] += 1


def _add(kind: str, address: str, inbound_id: int | None) -> None:
    cache = transaction_cache()
    if not cache.get("auto_reply_pruned"):
        cache["auto_reply_pruned"] = True
        _prune()
    db.session.add(AutoReply(address=address, kind=kind, created_at=utcnow(), inbound_id=inbound_id))


def _prune() -> None:
    """Forgets replies older than the longest period, once per transaction that counts one.
    On PostgreSQL rows another acting process is deleting are skipped, never waited for."""
    cutoff = utcnow() - DAY - HOUR
    old = sa.select(AutoReply.id).where(AutoReply.created_at < cutoff).limit(1000)
    if db.session.get_bind().dialect.name == "postgresql":
        old = old.with_for_update(skip_locked=True)
    with db.session.no_autoflush:
        db.session.execute(sa.delete(AutoReply).where(AutoReply.id.in_(old.scalar_subquery()))
                           .execution_options(synchronize_session=False))
