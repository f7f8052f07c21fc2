"""Who a mail may act for: the one sender trust rule every mail action asks (DESIGN.md,
"Incoming mail").

A From line proves nothing: anyone can write any address there. A mail is *verified* for
the person its From line names only by one of three proofs:

1. a reply token the desk mailed to that person's address (the outbox row's
   `recipient_person` is that person and its `to` is their address), and only for the
   record that mail was about. Matching already binds a token to its record (a subject
   naming another record is refused), and a token is as strong as the mailbox it went
   to: a forwarded desk mail then exposes that one record, not everything its reader may
   do. A mail sent to several people at once has no `recipient_person` (outbox.manual),
   so its token proves nobody;
2. a DMARC pass in the TOPMOST `Authentication-Results` header, when that header's
   authserv-id is in TRUSTED_AUTHSERV_IDS and its `header.from` domain is the From
   domain. Only the topmost counts: our own MTA adds its header above everything the
   sender wrote and removes incoming ones carrying its own authserv-id (RFC 8601
   section 5), so any lower header may be the sender's own invention;
3. arrival on an incoming account an admin marked "trusted submission": every mail
   reaching it passed authenticated submission, so the MTA vouches for the From line.

What each sender may do (`refusal`):
- verified: what its person may do (switchboard.permissions, the one rule table);
- unverified, known person: log a new call for the From address, add a customer-visible
  note to its OWN open call (as that call's customer; the timeline marks it "sender not
  verified"), ask for a summary of its own open items (the reply goes to that address).
  Never staff rights, never close, reopen, approve, reject, never a task or a request,
  never anyone else's record;
- unknown address: log a new call (where the account allows it), nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import authres

from switchboard.calls.models import Call
from switchboard.inbound.parse import ParsedMessage

# What the refusal reply tells a sender whose mail had no proof.
HOW_TO_PROVE = "Reply to the mail the desk sent you about it; it carries a token that is that proof."

# Actions unverified mail may take (besides a new call): a note on the sender's own open call.
UNVERIFIED_ACTIONS = {"update_call"}


@dataclass(frozen=True)
class SenderTrust:
    """Whether a mail is verified for the person named in its From line, and by what."""

    verified: bool
    proof: str | None = None  # e.g. "reply token", for the inbound log


UNVERIFIED = SenderTrust(False)


def sender_trust(msg: ParsedMessage, sender, account, token_row, record, config) -> SenderTrust:
    """Is `msg` verified for `sender` (the Person its From names, or None), acting on `record`?
    `token_row` is the outbox row whose reply token the mail carried (None without one)."""
    if account is not None and account.trusted_submission:
        return SenderTrust(True, f"trusted submission account {account.name}")
    if _token_proves(token_row, sender, record):
        return SenderTrust(True, "reply token")
    domain = dmarc_pass(msg, msg.from_address or "", trusted_authserv_ids(config))
    if domain is not None:
        return SenderTrust(True, f"DMARC pass for {domain}")
    return UNVERIFIED


def refusal(action: str, trust: SenderTrust, sender, record) -> str | None:
    """Why `sender` may not do `action` on `record` by this mail, or None when it may.
    Permissions (switchboard.permissions) are checked apart; this is only the proof rule."""
    if trust.verified:
        return None
    if action in UNVERIFIED_ACTIONS and isinstance(record, Call) and sender is not None \
            and record.customer_id == sender.id:
        return None
    address = sender.email if sender is not None else "your address"
    return f"Nothing was changed: this needs proof that the mail comes from {address}. {HOW_TO_PROVE}"


def trusted_authserv_ids(config) -> set[str]:
    raw = config.get("TRUSTED_AUTHSERV_IDS") or ()
    if isinstance(raw, str):
        raw = raw.split(",")
    return {item.strip().lower() for item in raw if item.strip()}


def dmarc_pass(msg: ParsedMessage, sender_address: str, trusted: set[str]) -> str | None:
    """The From domain when the topmost Authentication-Results header is a trusted server's
    and says DMARC passed for `header.from` equal to that domain; else None."""
    if not trusted or "@" not in sender_address:
        return None
    sender_domain = sender_address.rsplit("@", 1)[1].lower()
    values = msg.header_values("Authentication-Results")
    if not values:
        return None
    try:
        header = authres.AuthenticationResultsHeader.parse("Authentication-Results: " + values[0])
    except Exception:  # a malformed header proves nothing; authres raises several kinds
        return None
    if (header.authserv_id or "").lower() not in trusted:
        return None
    for result in header.results:
        if (result.method or "").lower() == "dmarc" and (result.result or "").lower() == "pass" \
                and _header_from_domain(result) == sender_domain:
            return sender_domain
    return None


def _token_proves(token_row, sender, record) -> bool:
    if token_row is None or sender is None or record is None:
        return False
    if token_row.recipient_person_id is None or token_row.recipient_person_id != sender.id:
        return False
    if sender.email.lower() not in [address.lower() for address in token_row.to or ()]:
        return False  # the address changed since: the token went to another mailbox
    token_record = token_row.call or token_row.task or token_row.request
    return token_record is record


def _header_from_domain(result) -> str | None:
    for prop in getattr(result, "properties", []) or []:
        if (prop.type or "").lower() == "header" and (prop.name or "").lower() == "from":
            value = str(prop.value or "").strip().lower()
            return value.rsplit("@", 1)[-1] or None
    return None
