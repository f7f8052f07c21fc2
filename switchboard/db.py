"""The one database handle, with a naming convention so constraint names are
stable across SQLite and PostgreSQL (Alembic needs stable names); a cache
that lives as long as the current transaction; and batched writes."""

import contextlib
from datetime import datetime, timezone

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Session

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)

# -- per-transaction cache ---------------------------------------------------------------------
# Acting on a batch of mail asks the same few questions (is this type of mail on, who is this
# sender) once per message. Answers are kept in the session for the current transaction only.

_CACHE_KEY = "switchboard.transaction_cache"


def transaction_cache() -> dict:
    """A dict that lives until the current transaction of db.session ends: a commit or
    any rollback (a savepoint's too) forgets it; a savepoint's commit keeps it."""
    info = db.session().info
    cache = info.get(_CACHE_KEY)
    if cache is None:
        cache = info[_CACHE_KEY] = {}
    return cache


def forget_transaction_cache(session=None) -> None:
    """For a writer whose change makes what is cached wrong."""
    (session or db.session()).info.pop(_CACHE_KEY, None)


def _forget_at_end(session, transaction) -> None:
    if transaction.parent is None:  # the outermost one: commit or rollback
        forget_transaction_cache(session)


sa.event.listen(Session, "after_transaction_end", _forget_at_end)
sa.event.listen(Session, "after_soft_rollback", lambda session, *_: forget_transaction_cache(session))


# -- batched writes ----------------------------------------------------------------------------
# A service flushes before it returns, so its caller sees ids. Flushing is the dearest part of
# acting on mail (the unit of work runs once per flush), so the inbound pipeline acts on a
# whole batch inside `batched_writes()`: there the services' flushes wait, and the rows of the
# batch are written together at its end, many rows per INSERT.

_BATCHED = "switchboard.batched_writes"


def flush() -> None:
    """What a service calls to flush: at once, or at the end of the enclosing batched_writes()."""
    if not db.session().info.get(_BATCHED):
        db.session.flush()


@contextlib.contextmanager
def batched_writes():
    """Writes inside wait for one flush when the block ends (not when it raises), and so
    do the handlers of events emitted inside (switchboard.events): they run after that
    flush, when the new rows have ids, and what they write is flushed together too.
    Autoflush is off inside: a query does not see rows added in the block, and new rows
    have no id yet. Code inside must not depend on either (see inbound/process.py)."""
    from switchboard import events  # here: the package imports this module first

    session = db.session()
    if session.info.get(_BATCHED):
        yield
        return
    with events.held() as held:
        with _flushing_at_end(session):
            yield
        while held.waiting:
            with _flushing_at_end(session):
                held.release()


@contextlib.contextmanager
def _flushing_at_end(session):
    session.info[_BATCHED] = True
    try:
        with session.no_autoflush:
            yield
    finally:
        session.info.pop(_BATCHED, None)
    session.flush()


def rollback_or_drop() -> None:
    """Rolls the session back after a failure; when the connection itself is broken (the
    server went away, the file vanished), drops it instead, so the next unit of work takes
    a fresh one from the pool rather than failing on the dead one."""
    try:
        db.session.rollback()
    except Exception:
        db.session.invalidate()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(sa.types.TypeDecorator):
    """Stores UTC as a naive timestamp and hands back an aware one.

    SQLite has no time zones and PostgreSQL's timestamptz would convert to the
    session zone; storing naive UTC behaves the same on both."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use switchboard.db.utcnow()")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


def after_in_order(columns: tuple, position: tuple) -> sa.ColumnElement[bool]:
    """Rows that come after `position` in a list sorted by `columns`, all descending (the
    newest first): keyset paging's condition. A row-value comparison, which both
    databases answer from an index on `columns` by walking it from `position` on."""
    return sa.tuple_(*columns) < _row_value(columns, position)


def before_in_order(columns: tuple, position: tuple) -> sa.ColumnElement[bool]:
    """Rows that come before `position` in the same order (the previous page's)."""
    return sa.tuple_(*columns) > _row_value(columns, position)


def _row_value(columns, position):
    # Typed as the columns are, so a time goes through UTCDateTime like a stored one.
    return sa.tuple_(*(sa.literal(value, column.type) for column, value in zip(columns, position)))


# SQLite's planner picks indexes by the statistics ANALYZE leaves in sqlite_stat1; without
# them (or with a sampled guess: PRAGMA analysis_limit undercounts rows per status ~20-fold
# here) it sorted all 100,000 calls for one page of the call list rather than walk the index
# in list order. Exact ANALYZE reads the whole table (about 1 s per million timeline rows),
# so it runs only for a table whose statistics are missing or that has more than doubled
# since: at most a few times in a table's life.
GROWTH_BEFORE_ANALYZE = 2


def optimize_sqlite(connection) -> None:
    """Gives SQLite's planner statistics: ANALYZE for each table that has rows but no
    statistics (a new database, an index a migration added) or has outgrown them, then
    PRAGMA optimize. Run when a process starts and after migrations. SQLite 3.40's PRAGMA
    optimize alone does nothing on a connection that has not queried yet, so it cannot be
    the whole of it."""
    run = connection.exec_driver_sql
    tables = [row[0] for row in run(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )]
    has_stats = run("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'").first()
    counted = {}
    indexed = {}
    if has_stats:
        for table, index, stat in run("SELECT tbl, idx, stat FROM sqlite_stat1"):
            counted[table] = int(stat.split()[0])
            indexed.setdefault(table, set()).add(index)
    for table in tables:
        # max(rowid) is one step down the table's b-tree: an upper bound on its rows, as
        # tables mostly grow by inserting.
        rows = run(f'SELECT max(rowid) FROM "{table}"').scalar() or 0
        indexes = {row[0] for row in run(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,)
        )}
        stale = rows > GROWTH_BEFORE_ANALYZE * counted.get(table, 0)
        if rows and (stale or not indexes <= indexed.get(table, set())):
            run(f'ANALYZE "{table}"')
    run("PRAGMA optimize")


def lock_path(engine, name: str, instance_path: str) -> str:
    """A lock file that stands for one SQLite database (`<file>.<name>`), whatever folder a
    process runs from; in the instance folder for an in-memory database. For locks that
    must not hold SQLite's only write lock (the scheduler's, an OAuth2 refresh)."""
    import os

    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        return os.path.abspath(database) + f".{name}"
    os.makedirs(instance_path, exist_ok=True)
    return os.path.join(instance_path, name)
