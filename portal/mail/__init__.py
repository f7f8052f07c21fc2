"""Admin pages for mail in and out: incoming accounts, the inbound log,
outgoing servers, templates, notification settings and the outbox."""

from portal.mail.blueprint import bp
from portal.mail import accounts, inbound, notifications, oauth2, outbox, servers, templates  # noqa: F401,E402

__all__ = ["bp"]
