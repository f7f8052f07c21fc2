"""The link in a customer's mail: a signed, expiring token that opens a read-only page of
their call without a login (customers who only have mail have no password).

The token names the call and the customer, signed with the app's SECRET_KEY under a salt
of its own (so no other signed value of the desk, a session or a CSRF token, is ever read
as one) and dated, so it stops working CUSTOMER_LINK_DAYS after the mail was sent. Nothing
is stored: a link is checked, never looked up. Whatever is wrong with one (altered, expired,
for a call that is gone or now has another customer) reads the same: `None`."""

import logging
import os

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import selectinload
from itsdangerous import BadData, URLSafeTimedSerializer

from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.history.models import EntryKind, HistoryEntry
from switchboard.people.models import Person

log = logging.getLogger(__name__)

SALT = "switchboard.customer-call-link"
# Where the portal serves the page (portal/customer_link.py): the token is the path's last part.
PATH = "/follow/"
DEFAULT_DAYS = 90
# A signed [call id, person id] pair with its date is about 40 characters; anything much
# longer is not ours and is refused before any work.
MAX_TOKEN_CHARS = 200
# The page is read on phones: the latest entries, not a timeline of thousands.
SHOWN = 100

# What a customer sees of a timeline: what they wrote, what was said to them, and the
# status. Forwards, escalations and priority changes are the desk's own business.
_CUSTOMER_KINDS = (EntryKind.LOGGED, EntryKind.NOTE, EntryKind.STATUS, EntryKind.EMAIL_IN)


def link_days() -> float:
    """CUSTOMER_LINK_DAYS: how long a link works after its mail was sent (default 90)."""
    value = current_app.config.get("CUSTOMER_LINK_DAYS") or os.environ.get("CUSTOMER_LINK_DAYS")
    try:
        days = float(value) if value not in (None, "") else DEFAULT_DAYS
    except (TypeError, ValueError):
        days = 0
    if not days > 0:  # NaN and negatives too
        # A link must keep working rather than the page failing for every customer.
        log.warning("CUSTOMER_LINK_DAYS=%r is not a number of days above 0; using %s", value, DEFAULT_DAYS)
        return DEFAULT_DAYS
    return days


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def make_token(call_id: int, customer_id: int) -> str:
    return _serializer().dumps([int(call_id), int(customer_id)])


def read_token(token: str) -> Call | None:
    """The call the token opens, or None: bad signature, expired, malformed, a call that
    does not exist, or one whose customer is no longer the person it was made for."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        payload = _serializer().loads(token, max_age=link_days() * 86400)
    except BadData:  # bad signature, expired, undecodable: all the same to the caller
        return None
    if (not isinstance(payload, list) or len(payload) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in payload)):
        return None
    call_id, customer_id = payload
    call = db.session.get(Call, call_id)
    if call is None or call.customer_id != customer_id:
        return None
    customer = db.session.get(Person, customer_id)
    if customer is None or not customer.active:
        return None
    return call


def customer_timeline(call: Call, limit: int = SHOWN) -> tuple[list[HistoryEntry], bool]:
    """The latest entries the call's customer may read, oldest first, and whether older
    ones were left out: never an internal note, and a mail the desk sent only when it went
    to the customer (a manual mail to a supplier is on the call's timeline too, and is not
    theirs to read)."""
    rows = db.session.scalars(
        sa.select(HistoryEntry)
        .where(HistoryEntry.call_id == call.id, HistoryEntry.internal.is_(False),
               HistoryEntry.kind.in_(_CUSTOMER_KINDS + (EntryKind.EMAIL_OUT,)))
        .order_by(HistoryEntry.created_at.desc(), HistoryEntry.id.desc())
        .limit(limit + 1)
        .options(selectinload(HistoryEntry.author), selectinload(HistoryEntry.attachments))
    ).all()
    more = len(rows) > limit
    email = call.customer.email
    shown = [e for e in rows[:limit] if e.kind is not EntryKind.EMAIL_OUT or _sent_to(e, email)]
    return shown[::-1], more


def _sent_to(entry: HistoryEntry, email: str) -> bool:
    # Manual mail records its addresses; automatic notifications to the customer are
    # summed up by the status entries beside them.
    to = (entry.details or {}).get("to")
    return isinstance(to, list) and email in [str(a).lower() for a in to]
