"""The message table (outbox) and the SMTP servers mail leaves through."""

import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from switchboard.db import UTCDateTime, db, utcnow


def _enum(cls, length=20):
    return sa.Enum(cls, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e])


class OutboxStatus(enum.Enum):
    QUEUED = "queued"
    SENDING = "sending"  # claimed by a sender, under a lease
    SENT = "sent"
    DEFERRED = "deferred"  # a temporary failure; tried again at next_attempt_at
    FAILED = "failed"  # permanent, or out of attempts: an admin requeues or cancels
    CANCELLED = "cancelled"


class OutboxMessage(db.Model):
    """One mail, written in the same transaction as the change that caused it."""

    __tablename__ = "outbox_message"
    __table_args__ = (sa.Index("ix_outbox_message_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_type: Mapped[int]  # switchboard.outbox.catalogue number
    status: Mapped[OutboxStatus] = mapped_column(_enum(OutboxStatus), default=OutboxStatus.QUEUED)
    to: Mapped[list] = mapped_column(sa.JSON)
    cc: Mapped[list | None] = mapped_column(sa.JSON)
    from_address: Mapped[str | None] = mapped_column(sa.String(320))
    from_name: Mapped[str | None] = mapped_column(sa.String(200))
    # Rendered at send time from the template and this snapshot, unless the
    # subject and text were written out already (manual mail, rejections).
    template_key: Mapped[str | None] = mapped_column(sa.String(60))
    context: Mapped[dict | None] = mapped_column(sa.JSON)
    subject: Mapped[str | None] = mapped_column(sa.String(998))
    text_body: Mapped[str | None] = mapped_column(sa.Text)
    html_body: Mapped[str | None] = mapped_column(sa.Text)
    attachments: Mapped[list | None] = mapped_column(sa.JSON)  # [{sha256, filename, content_type}]
    automatic: Mapped[bool] = mapped_column(default=True)
    message_id: Mapped[str] = mapped_column(sa.String(255), unique=True)  # with <>, set when queued
    in_reply_to: Mapped[str | None] = mapped_column(sa.String(998))
    references: Mapped[list | None] = mapped_column(sa.JSON)
    reply_token: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    call_id: Mapped[int | None] = mapped_column(sa.ForeignKey("call.id", ondelete="SET NULL"), index=True)
    request_id: Mapped[int | None] = mapped_column(sa.ForeignKey("service_request.id", ondelete="SET NULL"), index=True)
    task_id: Mapped[int | None] = mapped_column(sa.ForeignKey("task.id", ondelete="SET NULL"), index=True)
    # The person the token was issued to (approval tokens prove this person got the mail).
    recipient_person_id: Mapped[int | None] = mapped_column(sa.ForeignKey("person.id", ondelete="SET NULL"))
    # The inbound message this answers (rejections, summaries).
    inbound_id: Mapped[int | None] = mapped_column(sa.ForeignKey("inbound_message.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    lease_until = mapped_column(UTCDateTime)
    last_code: Mapped[int | None]
    last_message: Mapped[str | None] = mapped_column(sa.Text)
    recipient_results: Mapped[dict | None] = mapped_column(sa.JSON)  # address -> {code, message, outcome}
    server_name: Mapped[str | None] = mapped_column(sa.String(80))
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    # Set when an admin queues it again: the sender's age limit counts from here then.
    requeued_at = mapped_column(UTCDateTime)
    sent_at = mapped_column(UTCDateTime)
    bounced_at = mapped_column(UTCDateTime)
    bounce_inbound_id: Mapped[int | None] = mapped_column(sa.ForeignKey("inbound_message.id", ondelete="SET NULL"))

    call = relationship("Call")
    request = relationship("Request")
    task = relationship("Task")
    recipient_person = relationship("Person")


class OutgoingServer(db.Model):
    """An SMTP server, or a Microsoft 365 mailbox sending through Microsoft Graph; the
    sender uses the first working one by priority."""

    __tablename__ = "outgoing_server"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(80), unique=True)
    host: Mapped[str] = mapped_column(sa.String(255))
    port: Mapped[int]
    security: Mapped[str] = mapped_column(sa.String(10), default="starttls")  # none, starttls, tls
    # smtp, or graph (sendMail as `username`; host and port are Graph's, graph.microsoft.com:443).
    protocol: Mapped[str] = mapped_column(sa.String(10), default="smtp", server_default="smtp")
    username: Mapped[str | None] = mapped_column(sa.String(255))
    password_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    trusted_ca_pem: Mapped[str | None] = mapped_column(sa.Text)
    from_address: Mapped[str] = mapped_column(sa.String(320))
    from_name: Mapped[str | None] = mapped_column(sa.String(200))
    priority: Mapped[int] = mapped_column(default=10)  # lower goes first
    active: Mapped[bool] = mapped_column(default=True)
    timeout_seconds: Mapped[int] = mapped_column(default=30)
    # Set: the server is signed in to with OAuth2 (switchboard.oauth) instead of a password.
    oauth_grant_id: Mapped[int | None] = mapped_column(sa.ForeignKey("oauth_grant.id"))
    oauth_grant = relationship("OAuthGrant")
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)


# -- what admins configure (switchboard.outbox.settings reads and writes these) ------------

class NotificationSetting(db.Model):
    """Per message type: whether it is sent at all and to whom. No row means the
    catalogue's default (enabled, its default recipients)."""

    __tablename__ = "notification_setting"

    message_type: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    enabled: Mapped[bool] = mapped_column(default=True)
    # catalogue.Recipient values; None means the type's default recipients.
    recipients: Mapped[list | None] = mapped_column(sa.JSON)
    updated_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class MailSwitch(db.Model):
    """A desk-wide on/off switch for mail (settings.SWITCHES names them and their defaults)."""

    __tablename__ = "mail_switch"

    name: Mapped[str] = mapped_column(sa.String(60), primary_key=True)
    enabled: Mapped[bool]
    updated_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class TemplateOverride(db.Model):
    """An admin's own templates for a message type, and the From line and signature
    to use, optionally only for mail about one incoming account's calls.

    `message_type` None: From line and signature for every type (no templates).
    `account_id` None: for every account. The most specific row wins, field by field
    for From and signature; the templates come whole from the most specific row that
    has them (settings.resolve_overrides)."""

    __tablename__ = "template_override"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_type: Mapped[int | None]
    account_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("incoming_account.id", ondelete="CASCADE"), index=True)
    subject: Mapped[str | None] = mapped_column(sa.Text)
    text_body: Mapped[str | None] = mapped_column(sa.Text)
    html_body: Mapped[str | None] = mapped_column(sa.Text)
    from_address: Mapped[str | None] = mapped_column(sa.String(320))
    from_name: Mapped[str | None] = mapped_column(sa.String(200))
    signature: Mapped[str | None] = mapped_column(sa.Text)
    updated_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("person.id", ondelete="SET NULL"))


class MailOptOut(db.Model):
    """A person who wants no mail that is not essential (approval requests, rejections,
    answers to their own mail and mail an analyst writes still go)."""

    __tablename__ = "mail_opt_out"

    person_id: Mapped[int] = mapped_column(sa.ForeignKey("person.id", ondelete="CASCADE"),
                                           primary_key=True)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)


# -- limits on automatic replies (switchboard.outbox.limits reads and writes these) ---------

class AutoReply(db.Model):
    """One automatic reply queued to an address (an acknowledgement of a call logged by mail,
    a rejection, a summary): what the per-address and desk-wide limits count. Rows older than
    the longest period are pruned, so the table stays small."""

    __tablename__ = "auto_reply"
    # Counting is a range scan of one address's rows of one kind; the desk-wide count and
    # pruning scan by time.
    __table_args__ = (sa.Index("ix_auto_reply_address_kind_created_at", "address", "kind", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(sa.String(320))  # normalised: lower-case, stripped
    kind: Mapped[str] = mapped_column(sa.String(20))  # limits.KINDS
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False, index=True)
    inbound_id: Mapped[int | None] = mapped_column(sa.ForeignKey("inbound_message.id", ondelete="SET NULL"))


class ReplyLimit(db.Model):
    """A limit an admin set (limits.LIMITS names them and their defaults); no row means the default."""

    __tablename__ = "reply_limit"

    name: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    value: Mapped[int]
    updated_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
