"""Sending outbox mail through Microsoft Graph (a server row of protocol "graph"): the
composed MIME message, base64-encoded, to POST /users/{mailbox}/sendMail ("user: sendMail"),
answering the sender with the same SendResult an SMTP server's answer gives.

Never a duplicate: sendMail has no idempotency key, and a 5xx or a lost connection after the
request went out may mean Exchange took the message. So such a failure is not retried at
once (and not tried on another server): the row is deferred, and every attempt first looks
in the mailbox's Sent Items for a message with this Message-ID (sendMail files each mail
there); found, it counts as sent and is not sent again. That check also covers a sender
killed between Graph's 202 and the mark of the row. Throttling answers (429, and 503 with
Retry-After) say the request was not taken: those are waited out and retried
(switchboard.graph, bounded)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from email.parser import BytesHeaderParser
from email.policy import compat32

from switchboard.errors import DeskError
from switchboard.graph import GraphClient, GraphError
from switchboard.outbox.smtp import Outcome, RecipientResult, SendResult, SmtpServerSettings, Stage

log = logging.getLogger(__name__)

PROTOCOL = "graph"


class GraphSession:
    """sendMail as one mailbox, the HTTP connection kept for the batch (as SmtpSession keeps
    its SMTP connection). Not thread-safe."""

    def __init__(self, settings: SmtpServerSettings, **_ignored):
        self.settings = settings
        self._client: GraphClient | None = None
        self._can_look = True  # False once Graph refused reading Sent Items (no Mail.Read(Write))

    def __enter__(self) -> GraphSession:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def send(self, envelope_from: str | None, recipients: Iterable[str], message_bytes: bytes) -> SendResult:
        """Send one message; never raises for anything Graph or the network does. The message
        goes to its own To and Cc lines: Graph takes no envelope."""
        rcpts = list(dict.fromkeys(r.strip() for r in recipients if r and r.strip()))
        if not rcpts:
            raise ValueError("no recipients")
        message_id = _message_id(message_bytes)
        try:
            client = self._connected()
            if message_id and self._in_sent_items(client, message_id):
                return self._whole(Outcome.SENT, rcpts, None, 250,
                                   "found in Sent Items: sent by an earlier attempt, not sent again")
            client.request("POST", "/sendMail", data=base64.b64encode(message_bytes),
                           headers={"Content-Type": "text/plain"}, safe=False).close()
        except GraphError as error:
            return self._failed(rcpts, error)
        except DeskError as error:  # the grant: needs reconnecting, or the provider unreachable
            return self._whole(Outcome.TEMPORARY, rcpts, Stage.AUTH, None, error.message)
        return self._whole(Outcome.SENT, rcpts, None, 202, "accepted by Microsoft Graph (sendMail)")

    def _connected(self) -> GraphClient:
        if self._client is None:
            s = self.settings
            self._client = GraphClient(host=s.host, port=s.port, grant_id=s.oauth_grant_id,
                                       mailbox=s.username or "", ca_pem=s.ca_pem, timeout=s.timeout)
        return self._client

    def _in_sent_items(self, client: GraphClient, message_id: str) -> bool:
        if not self._can_look:
            return False
        literal = message_id.replace("'", "''")
        try:
            found = client.json("GET", "/mailFolders/sentitems/messages",
                                params={"$filter": f"internetMessageId eq '{literal}'", "$select": "id"})
        except GraphError as error:
            if error.status == 403:  # the app may send but not read: no check, as SMTP has none
                log.warning("Graph server %s: cannot read Sent Items (%s); mail is sent without "
                            "looking for an earlier attempt's copy", self.settings.name, error.message)
                self._can_look = False
                return False
            raise
        return bool(found.get("value"))

    def _failed(self, rcpts: list[str], error: GraphError) -> SendResult:
        status = error.status
        if error.unknown_outcome:
            # Perhaps taken: not this server again now, not another one; the row is deferred
            # and the next attempt looks in Sent Items first.
            return self._whole(Outcome.TEMPORARY, rcpts, Stage.DATA, status,
                               f"{error.message}; it may have been sent: the next attempt looks in "
                               "Sent Items before sending again")
        if status in (401, 403) or status is None or status == 429 or status >= 500:
            # The grant, a permission, the network, or throttling beyond the bound: this server
            # cannot be used now (the next server is tried; nothing was sent).
            stage = Stage.AUTH if status in (401, 403) else Stage.CONNECT
            return self._whole(Outcome.TEMPORARY, rcpts, stage, status, error.message)
        outcome = Outcome.TEMPORARY if error.temporary else Outcome.PERMANENT
        return self._whole(outcome, rcpts, Stage.DATA, status, error.message)

    def _whole(self, outcome: Outcome, rcpts: list[str], stage: Stage | None, code: int | None,
               message: str) -> SendResult:
        if outcome is not Outcome.SENT:
            log.warning("Graph server %s: %s", self.settings.name, message)
        return SendResult(outcome, tuple(RecipientResult(a, outcome, code, message) for a in rcpts),
                          self.settings.name, stage, code, message)


def _message_id(message_bytes: bytes) -> str | None:
    head = message_bytes.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0][:256 * 1024]
    value = BytesHeaderParser(policy=compat32).parsebytes(head + b"\r\n\r\n").get("Message-ID")
    value = " ".join(str(value or "").split())
    return value if value.startswith("<") and value.endswith(">") and len(value) < 1000 else None
