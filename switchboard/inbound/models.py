"""Incoming accounts and every message that came in, with its outcome."""

import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from switchboard.db import UTCDateTime, db, utcnow


def _enum(cls, length=20):
    return sa.Enum(cls, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e])


class Protocol(enum.Enum):
    LMTP = "lmtp"  # the MTA pushes mail to us; the account names the addresses
    IMAP = "imap"
    POP3 = "pop3"
    GRAPH = "graph"  # a Microsoft 365 mailbox read through Microsoft Graph (receiver.graph)


class Security(enum.Enum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"  # implicit TLS (IMAPS, POP3S)


class AfterProcessing(enum.Enum):
    MOVE = "move"
    SEEN = "seen"
    DELETE = "delete"


class UnknownSenders(enum.Enum):
    CREATE = "create"  # a customer record is made for a new address
    REJECT = "reject"


class IncomingAccount(db.Model):
    """A mailbox the desk reads (IMAP/POP3) or the addresses an MTA delivers
    to us over LMTP, with what to do with the mail that arrives there."""

    __tablename__ = "incoming_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(80), unique=True)
    protocol: Mapped[Protocol] = mapped_column(_enum(Protocol))
    active: Mapped[bool] = mapped_column(default=True)
    # Mailbox connection (IMAP/POP3).
    host: Mapped[str | None] = mapped_column(sa.String(255))
    port: Mapped[int | None]
    security: Mapped[Security] = mapped_column(_enum(Security), default=Security.TLS)
    username: Mapped[str | None] = mapped_column(sa.String(255))
    # Fernet-encrypted with a key derived from SECRET_KEY (switchboard.secrets).
    password_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    # PEM of a CA to trust for this server only (self-signed test servers).
    trusted_ca_pem: Mapped[str | None] = mapped_column(sa.Text)
    folder: Mapped[str] = mapped_column(sa.String(255), default="INBOX")
    after_processing: Mapped[AfterProcessing] = mapped_column(_enum(AfterProcessing), default=AfterProcessing.MOVE)
    processed_folder: Mapped[str] = mapped_column(sa.String(255), default="Processed")
    poll_interval_seconds: Mapped[int] = mapped_column(default=60)
    max_messages_per_session: Mapped[int] = mapped_column(default=1000)
    batch_size: Mapped[int] = mapped_column(default=100)
    timeout_seconds: Mapped[int] = mapped_column(default=30)
    # What mail arriving here does.
    allow_new_calls: Mapped[bool] = mapped_column(default=True)
    unknown_senders: Mapped[UnknownSenders] = mapped_column(_enum(UnknownSenders), default=UnknownSenders.CREATE)
    default_priority_id: Mapped[int | None] = mapped_column(sa.ForeignKey("priority.id"))
    default_group_id: Mapped[int | None] = mapped_column(sa.ForeignKey("analyst_group.id"))
    default_analyst_id: Mapped[int | None] = mapped_column(sa.ForeignKey("person.id"))
    # New calls go to the analyst who last worked a call for this customer.
    use_linked_analyst: Mapped[bool] = mapped_column(default=False)
    # Set by an admin when every mail reaching this account has passed authenticated
    # submission (the MTA delivers only what its own users sent after logging in), so
    # the From line is proof of the sender (switchboard.inbound.trust). Off by default.
    trusted_submission: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Set: the account signs in with OAuth2 (switchboard.oauth) instead of its password.
    oauth_grant_id: Mapped[int | None] = mapped_column(sa.ForeignKey("oauth_grant.id"))
    oauth_grant = relationship("OAuthGrant")
    # Poll state, for admins and monitoring.
    uidvalidity: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Graph: where the next poll's delta query starts (the last round's @odata.deltaLink, or
    # the @odata.nextLink of a round cut short); NULL: read the whole folder.
    graph_delta_link: Mapped[str | None] = mapped_column(sa.Text)
    last_poll_at = mapped_column(UTCDateTime)
    last_success_at = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    last_error_at = mapped_column(UTCDateTime)
    # The first failure since the last success (NULL while polls work): `desk health` alarms
    # when an account has failed for an hour.
    failing_since = mapped_column(UTCDateTime)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    addresses = relationship(
        "IncomingAddress", back_populates="account", cascade="all, delete-orphan", order_by="IncomingAddress.address"
    )
    default_group = relationship("Group")
    default_analyst = relationship("Person")


class IncomingAddress(db.Model):
    """An address (or `@domain` catch-all) whose mail belongs to an account."""

    __tablename__ = "incoming_address"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("incoming_account.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(sa.String(320), unique=True)  # lower-case

    account = relationship("IncomingAccount", back_populates="addresses")


class InboundStatus(enum.Enum):
    NEW = "new"  # stored, not yet acted on
    PROCESSED = "processed"
    IGNORED = "ignored"
    REJECTED = "rejected"
    FAILED = "failed"


class InboundMessage(db.Model):
    """One message as it arrived: raw bytes (in the blob store), envelope,
    where it came from, and what became of it."""

    __tablename__ = "inbound_message"
    __table_args__ = (
        # The same message is stored once per account, however often it
        # arrives there (see inbound.store.fingerprint); acted on once per
        # desk whichever account brings it (MessageClaim).
        sa.UniqueConstraint("scope", "fingerprint"),
        sa.Index("ix_inbound_message_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(sa.String(40))
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    # NULL once housekeeping pruned the raw bytes (switchboard.housekeeping); the row stays.
    raw_sha256: Mapped[str | None] = mapped_column(sa.ForeignKey("blob.sha256"))
    size: Mapped[int]
    source: Mapped[str] = mapped_column(sa.String(10))  # lmtp, imap, pop3, pipe
    account_id: Mapped[int | None] = mapped_column(sa.ForeignKey("incoming_account.id", ondelete="SET NULL"), index=True)
    envelope_from: Mapped[str | None] = mapped_column(sa.String(320))
    envelope_to: Mapped[list | None] = mapped_column(sa.JSON)
    message_id: Mapped[str | None] = mapped_column(sa.String(998), index=True)
    # Copied from the headers at storage time, for the admin's list.
    from_address: Mapped[str | None] = mapped_column(sa.String(320))
    subject: Mapped[str] = mapped_column(sa.String(300), default="")
    received_at = mapped_column(UTCDateTime, default=utcnow, nullable=False, index=True)
    deliveries: Mapped[int] = mapped_column(default=1)  # how often it arrived
    status: Mapped[InboundStatus] = mapped_column(_enum(InboundStatus), default=InboundStatus.NEW)
    outcome: Mapped[str] = mapped_column(sa.Text, default="")  # what it did, or why not
    error: Mapped[str | None] = mapped_column(sa.Text)  # traceback, for admins only
    attempts: Mapped[int] = mapped_column(default=0)
    processed_at = mapped_column(UTCDateTime)
    call_id: Mapped[int | None] = mapped_column(sa.ForeignKey("call.id", ondelete="SET NULL"), index=True)
    request_id: Mapped[int | None] = mapped_column(sa.ForeignKey("service_request.id", ondelete="SET NULL"))
    task_id: Mapped[int | None] = mapped_column(sa.ForeignKey("task.id", ondelete="SET NULL"))
    # What reading it gave, kept when it is acted on, so the admin's pages never parse it
    # again (a hostile message once cost 31 s a page view). NULL: not read yet, or stored
    # before these were kept. `warnings`: short strings, what was cut, guessed or lost.
    warnings: Mapped[list | None] = mapped_column(sa.JSON)
    from_name: Mapped[str | None] = mapped_column(sa.String(300))
    parsed_headers: Mapped[list | None] = mapped_column(sa.JSON)  # [[name, decoded value], ...]
    parsed_text: Mapped[str | None] = mapped_column(sa.Text)
    parsed_html: Mapped[str | None] = mapped_column(sa.Text)  # already sanitised
    parsed_attachments: Mapped[list | None] = mapped_column(sa.JSON)  # [{filename, content_type, size, inline}]

    account = relationship("IncomingAccount")
    call = relationship("Call")
    request = relationship("Request")
    task = relationship("Task")


class MessageClaim(db.Model):
    """Which stored copy of a message the desk acts on: the first one stored,
    whichever account brought it. The primary key is what makes "once per desk"
    hold, even for two receivers storing the same message at the same moment:
    the second copy's claim finds this row and that copy is only recorded."""

    __tablename__ = "message_claim"

    fingerprint: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    inbound_id: Mapped[int] = mapped_column(sa.ForeignKey("inbound_message.id", ondelete="CASCADE"), index=True)


class MailboxReceipt(db.Model):
    """A mailbox message (IMAP UIDVALIDITY:UID or POP3 UIDL) known to be
    stored: only these are moved or deleted, and none is fetched twice."""

    __tablename__ = "mailbox_receipt"
    __table_args__ = (sa.UniqueConstraint("account_id", "mailbox_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("incoming_account.id", ondelete="CASCADE"))
    mailbox_key: Mapped[str] = mapped_column(sa.String(300))
    inbound_id: Mapped[int | None] = mapped_column(sa.ForeignKey("inbound_message.id", ondelete="SET NULL"))
    stored_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    # Set once the mailbox was told (moved, flagged, deleted): nothing left to do.
    settled: Mapped[bool] = mapped_column(default=False)
