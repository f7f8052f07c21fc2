"""Content-addressed storage for attachments and raw messages.

Bytes are keyed by their SHA-256, so the same file sent twice is stored once.
By default they live in the database, written in the same transaction as the
record that owns them: every host sees them and nothing is half-written.
`BlobStore` is the one interface; an object-storage backend would implement
the same methods."""

import functools
import hashlib

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from switchboard.db import UTCDateTime, db, utcnow
from switchboard.errors import NotFound


class Blob(db.Model):
    __tablename__ = "blob"

    sha256: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    size: Mapped[int]
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class DatabaseBlobStore:
    """Keeps bytes in the `blob` table, in the caller's transaction."""

    def put(self, data: bytes) -> str:
        sha = digest(data)
        session = db.session
        session.execute(_insert_statement(session.get_bind().dialect.name),
                        dict(sha256=sha, size=len(data), data=data, created_at=utcnow()))
        return sha

    def put_many(self, blobs: dict[str, bytes]) -> None:
        """Stores each of {sha256: bytes} with one statement (keys as `digest` gives them)."""
        if blobs:
            session = db.session
            now = utcnow()
            session.execute(_insert_statement(session.get_bind().dialect.name),
                            [dict(sha256=sha, size=len(data), data=data, created_at=now) for sha, data in blobs.items()])

    def get_many(self, shas) -> dict[str, bytes]:
        """The stored bytes of each of `shas` that is stored, in one query."""
        rows = db.session.execute(sa.select(Blob.sha256, Blob.data).where(Blob.sha256.in_(set(shas))))
        return {sha: data for sha, data in rows}

    def get(self, sha: str) -> bytes:
        data = db.session.scalar(sa.select(Blob.data).where(Blob.sha256 == sha))
        if data is None:
            raise NotFound("That file is not stored.")
        return data


@functools.cache
def _insert_statement(dialect: str):
    """Insert-or-ignore: two messages carrying the same file at once must not
    fail on the primary key; the bytes are identical anyway. Built once per
    dialect (the values come as parameters): building it was a third of storing."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(Blob.__table__).on_conflict_do_nothing(index_elements=["sha256"])


store = DatabaseBlobStore()
