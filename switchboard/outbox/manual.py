"""Mail an analyst writes from a call: queued like any other mail (sent by the sender job),
shown on the call's timeline at once, and carrying the call's reply token so the answer
lands on the same call."""

from __future__ import annotations

import sqlalchemy as sa

from switchboard.db import db, utcnow
from switchboard.errors import InvalidInput
from switchboard.history.models import Attachment, EntryKind, HistoryEntry
from switchboard.history.services import record
from switchboard.outbox import catalogue
from switchboard.outbox.compose import one_line
from switchboard.outbox.queue import queue_mail
from switchboard.outbox.views import call_view, person_view, snapshot
from switchboard.permissions import require
from switchboard.slm import clock

MAX_RECIPIENTS = 20
MAX_TEXT = 200_000


def send_manual_mail(call, actor, to, subject: str, text: str, attachment_ids=(),
                     template_key: str | None = None):
    """Queue a mail from `actor` (an analyst) about `call` to `to` (an address or a list).

    Without `template_key` the subject and text go out as written (plus the reply token).
    With `template_key="manual_message"` the text is wrapped in the desk's manual-message
    template (greeting, signature, the call's reference); a subject given still wins over
    the template's. `attachment_ids` are files already on the call's timeline. Returns the
    outbox row; raises InvalidInput for anything the analyst must fix."""
    require(actor, "change_call", call)
    addresses = _addresses(to)
    subject = one_line(subject)
    text = (text or "").strip("\n")
    if not text.strip():
        raise InvalidInput("Write the message.", field="text")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"The message is longer than {MAX_TEXT} characters.", field="text")
    if template_key is not None:
        try:
            info = catalogue.get(template_key)
        except KeyError:
            info = None
        if info is None or info.type is not catalogue.MANUAL_MESSAGE:
            raise InvalidInput("Manual mail is written out or uses the manual message template.",
                               field="template_key")
    elif not subject:
        raise InvalidInput("Write a subject.", field="subject")
    files = _attachments(call, attachment_ids)

    from switchboard.people.services import find_person

    people = [find_person(a) for a in addresses]
    # With one known recipient, the token is theirs (as in any notification).
    recipient = people[0] if len(addresses) == 1 else None
    common = dict(record=call, recipient_person=recipient, automatic=False,
                  attachments=[{"sha256": f.blob_sha256, "filename": f.filename,
                                "content_type": f.content_type} for f in files] or None)
    if template_key is not None:
        row = queue_mail(catalogue.MANUAL_MESSAGE, addresses, template_key=info.key,
                         context=snapshot({"call": call_view(call), "author": person_view(actor),
                                           "message": text}),
                         subject=subject or None, **common)
    else:
        row = queue_mail(catalogue.MANUAL_MESSAGE, addresses, subject=subject, text=text, **common)

    record(call, EntryKind.EMAIL_OUT, actor,
           f"Mail to {', '.join(addresses)}: {subject or call.summary}", text,
           details={"outbox_id": row.id, "message_id": row.message_id, "to": addresses,
                    "attachment_ids": [f.id for f in files]})
    now = utcnow()
    if call.first_response_at is None and actor.id != call.customer_id:
        call.first_response_at = now
        clock.responded(call, now)  # the response target stops
    call.updated_at = now
    db.session.flush()
    return row


def _addresses(to) -> list[str]:
    from switchboard.people.services import normalize_email

    items = [to] if isinstance(to, str) else list(to or ())
    # "a@x, b@y" typed in one field.
    items = [part for item in items for part in str(item).replace(";", ",").split(",")]
    addresses = []
    for item in items:
        if not item.strip():
            continue
        try:
            addresses.append(normalize_email(item))
        except InvalidInput:
            raise InvalidInput(f"Not a valid address: {item.strip()[:80]!r}.", field="to") from None
    addresses = list(dict.fromkeys(addresses))
    if not addresses:
        raise InvalidInput("Give at least one address to send to.", field="to")
    if len(addresses) > MAX_RECIPIENTS:
        raise InvalidInput(f"At most {MAX_RECIPIENTS} recipients.", field="to")
    return addresses


def _attachments(call, attachment_ids) -> list[Attachment]:
    try:
        ids = list(dict.fromkeys(int(i) for i in attachment_ids or ()))
    except (TypeError, ValueError):
        raise InvalidInput("Attach only files that are on this call.", field="attachments") from None
    if not ids:
        return []
    files = db.session.scalars(
        sa.select(Attachment).join(HistoryEntry).where(Attachment.id.in_(ids),
                                                      HistoryEntry.call_id == call.id)
        .order_by(Attachment.id)
    ).all()
    if len(files) != len(ids):
        raise InvalidInput("Attach only files that are on this call.", field="attachments")
    return list(files)
