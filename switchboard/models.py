"""Imports every model so the metadata (and Alembic) sees the whole schema."""

from switchboard.blobs import Blob  # noqa: F401
from switchboard.calls.models import Call, Priority  # noqa: F401
from switchboard.desk.models import DeskSettings  # noqa: F401
from switchboard.history.models import Attachment, HistoryEntry  # noqa: F401
from switchboard.people.models import Group, Person  # noqa: F401
from switchboard.requests.models import Request, Task  # noqa: F401
from switchboard.slm.models import CalendarHoliday, CalendarHours, Sla, SlaCalendar, SlaFiring, SlaLevel, SlaTarget  # noqa: F401
from switchboard.inbound.models import IncomingAccount, IncomingAddress, InboundMessage, MailboxReceipt  # noqa: F401
from switchboard.outbox.models import OutboxMessage, OutgoingServer  # noqa: F401
from switchboard.health.models import JobHeartbeat  # noqa: F401
from switchboard.oauth.models import OAuthGrant  # noqa: F401
