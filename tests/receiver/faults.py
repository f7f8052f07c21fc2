"""Real storage faults for the receiver's tests: a database that refuses
COMMIT (the statements all succeed, the commit does not) and a small tmpfs
mounted by the test (a disk that really fills up)."""

import contextlib
import os
import subprocess

import sqlalchemy as sa

from switchboard.db import db


@contextlib.contextmanager
def commit_fails(account_id: int | None = None):
    """Until the block ends, every transaction that inserted an inbound
    message (for one account, or any) fails at COMMIT, for real, in the
    database: PostgreSQL runs a DEFERRABLE INITIALLY DEFERRED constraint
    trigger that raises at commit; SQLite checks a deferred foreign key at
    commit (a trigger adds a row pointing nowhere), and keeps the transaction
    open until it is rolled back, as it does for a disk-full COMMIT."""
    engine = db.engine
    condition = f"NEW.account_id = {int(account_id)}" if account_id is not None else "1 = 1"
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(
                "CREATE OR REPLACE FUNCTION refuse_commit() RETURNS trigger AS $$ BEGIN "
                f"IF {condition} THEN RAISE EXCEPTION 'could not write to file \"pg_wal/xlogtemp\": "
                "No space left on device'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"))
            conn.execute(sa.text(
                "CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON inbound_message "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit()"))
        else:
            conn.execute(sa.text("CREATE TABLE commit_anchor (id INTEGER PRIMARY KEY)"))
            conn.execute(sa.text(
                "CREATE TABLE commit_guard (id INTEGER PRIMARY KEY, anchor INTEGER "
                "REFERENCES commit_anchor(id) DEFERRABLE INITIALLY DEFERRED)"))
            conn.execute(sa.text(
                f"CREATE TRIGGER refuse_commit AFTER INSERT ON inbound_message WHEN {condition} "
                "BEGIN INSERT INTO commit_guard (anchor) VALUES (-1); END"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("DROP TRIGGER IF EXISTS refuse_commit ON inbound_message"))
                conn.execute(sa.text("DROP FUNCTION IF EXISTS refuse_commit()"))
            else:
                conn.execute(sa.text("DROP TRIGGER IF EXISTS refuse_commit"))
                conn.execute(sa.text("DROP TABLE IF EXISTS commit_guard"))
                conn.execute(sa.text("DROP TABLE IF EXISTS commit_anchor"))


@contextlib.contextmanager
def tmpfs(path, size: str = "4m"):
    """A small filesystem of its own at `path` (the machine's tests run as root)."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill_disk(path) -> str:
    """Fills the filesystem holding `path` (a file `filler` in it); returns the filler's path."""
    filler = os.path.join(str(path), "filler")
    chunk = b"\0" * (64 * 1024)
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError:
            pass
        try:
            while True:  # the last few bytes too
                out.write(b"\0" * 512)
        except OSError:
            pass
    return filler
