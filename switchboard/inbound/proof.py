"""Proof that an approval or rejection by mail is genuine.

A From line is trivially forged, so deciding a task by mail needs one of:
- the reply token from the approval mail sent to this approver (only the
  approver's mailbox received it), or
- an Authentication-Results header, added by a mail server we trust
  (TRUSTED_AUTHSERV_IDS), saying DMARC passed for the sender's domain.

Only the topmost Authentication-Results header from a trusted server counts:
that server adds its own above anything the sender wrote, and RFC 8601 asks
it to remove forged ones claiming its name."""

import authres

from switchboard.inbound.parse import ParsedMessage


def trusted_authserv_ids(config) -> set[str]:
    raw = config.get("TRUSTED_AUTHSERV_IDS") or ""
    if isinstance(raw, str):
        raw = raw.split(",")
    return {item.strip().lower() for item in raw if item.strip()}


def approval_proof(msg: ParsedMessage, sender, task, token_row, config) -> str | None:
    """A short description of the proof found, or None."""
    if (
        token_row is not None
        and token_row.task_id == task.id
        and token_row.recipient_person_id is not None
        and token_row.recipient_person_id == sender.id
    ):
        return "reply token of the approval mail"
    if dmarc_pass(msg, sender.email, trusted_authserv_ids(config)):
        return "DMARC pass at a trusted mail server"
    return None


def dmarc_pass(msg: ParsedMessage, sender_address: str, trusted: set[str]) -> bool:
    if not trusted:
        return False
    sender_domain = sender_address.rsplit("@", 1)[-1].lower()
    for value in msg.header_values("Authentication-Results"):
        try:
            header = authres.AuthenticationResultsHeader.parse("Authentication-Results: " + value)
        except Exception:  # a malformed header proves nothing; authres raises several kinds
            continue
        if (header.authserv_id or "").lower() not in trusted:
            continue
        # The topmost trusted header decides, pass or not.
        for result in header.results:
            if result.method.lower() != "dmarc" or result.result.lower() != "pass":
                continue
            domain = _header_from_domain(result)
            if domain is None or domain == sender_domain:
                return True
        return False
    return False


def _header_from_domain(result) -> str | None:
    for prop in getattr(result, "properties", []) or []:
        if prop.type.lower() == "header" and prop.name.lower() == "from":
            return str(prop.value).lower().rsplit("@", 1)[-1]
    return None
