"""Person and Group: who logs calls, who works them, who approves."""

import functools
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from switchboard.db import UTCDateTime, db, utcnow

# Werkzeug's default (scrypt). The test suite lowers the cost for speed.
PASSWORD_METHOD = "scrypt"

group_membership = sa.Table(
    "group_membership",
    db.metadata,
    sa.Column("group_id", sa.ForeignKey("analyst_group.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("person_id", sa.ForeignKey("person.id", ondelete="CASCADE"), primary_key=True),
)


class Person(db.Model):
    __tablename__ = "person"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Always stored lower-case, so the unique index is case-insensitive on
    # both databases without functional indexes.
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    is_customer: Mapped[bool] = mapped_column(default=True)
    is_analyst: Mapped[bool] = mapped_column(default=False)
    is_admin: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    # Bumped when the password changes, so old sessions stop working.
    session_version: Mapped[int] = mapped_column(default=1)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    # The SLA for calls this person logs as a customer (None: the group's or the desk's default).
    default_sla_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sla.id", ondelete="SET NULL"))

    groups = relationship("Group", secondary=group_membership, back_populates="members")

    @property
    def display_name(self) -> str:
        return self.name or self.email

    @property
    def is_staff(self) -> bool:
        return self.is_analyst or self.is_admin

    @property
    def can_log_in(self) -> bool:
        return self.active and self.password_hash is not None

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password, method=PASSWORD_METHOD)
        self.end_sessions()

    def check_password(self, password: str) -> bool:
        return self.password_hash is not None and check_password_hash(self.password_hash, password)

    def end_sessions(self) -> None:
        """Every session cookie issued so far stops working (they carry the old version)."""
        self.session_version = (self.session_version or 0) + 1

    def __repr__(self) -> str:
        return f"<Person {self.email}>"


def login_password_matches(person: Person | None, password: str) -> bool:
    """A login's password check that costs the same whoever asks: an unknown
    address, or a person without a password, still runs the slow hash (against
    a dummy), so the answer's timing does not tell which accounts exist."""
    if person is None or person.password_hash is None:
        check_password_hash(_dummy_hash(PASSWORD_METHOD), password)
        return False
    return check_password_hash(person.password_hash, password)


@functools.cache
def _dummy_hash(method: str) -> str:
    # Per method: the dummy must cost what a real hash of the current method costs.
    return generate_password_hash(secrets.token_urlsafe(16), method=method)


class Group(db.Model):
    __tablename__ = "analyst_group"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120), unique=True)
    email: Mapped[str | None] = mapped_column(sa.String(320))
    active: Mapped[bool] = mapped_column(default=True)
    # The SLA for calls assigned to this group when the customer names none.
    default_sla_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sla.id", ondelete="SET NULL"))

    members = relationship(
        "Person", secondary=group_membership, back_populates="groups", order_by="Person.name"
    )

    def __repr__(self) -> str:
        return f"<Group {self.name}>"
