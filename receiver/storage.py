"""The receiver's view of its storage: a log that says "storage is failing"
once a minute (not once per refused delivery) and "storage is back" when it
works again, and database connections that recover by themselves after the
storage came back (a SQLite file replaced, unlinked or remounted; a
PostgreSQL server restarted)."""

import logging
import os
import sqlite3
import threading
import time
import weakref
from urllib.request import pathname2url

import sqlalchemy as sa

log = logging.getLogger(__name__)


def describe(exc: BaseException) -> str:
    """The cause in one line: the driver's error rather than SQLAlchemy's wrapping of it."""
    cause = getattr(exc, "orig", None) or exc
    text = " ".join(str(cause).split())[:300]
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


class StorageHealth:
    """Says when storing starts failing, at most once per `every` seconds
    while it goes on (with how many deliveries were refused since the last
    line), and when it works again. An outage refusing hundreds of deliveries
    a second leaves a few lines an operator can read, not a flood of
    tracebacks; the first line carries the traceback. Thread-safe."""

    def __init__(self, every: float = 60.0, clock=time.monotonic, logger: logging.Logger | None = None):
        self.every = every
        self.clock = clock
        self.log = logger or log
        self._lock = threading.Lock()
        self._failing = False
        self._last_line = 0.0
        self._refused_since_line = 0
        self._refused_total = 0

    @property
    def failing(self) -> bool:
        return self._failing

    def failed(self, exc: BaseException, refused: int = 1, *, doing: str = "storing mail") -> None:
        """Storing (or looking recipients up) failed; `refused` deliveries or recipients got 451."""
        with self._lock:
            self._refused_since_line += refused
            self._refused_total += refused
            now = self.clock()
            first = not self._failing
            if not first and now - self._last_line < self.every:
                return
            self._failing = True
            self._last_line = now
            refused_now, self._refused_since_line = self._refused_since_line, 0
        self.log.error("storage is failing: %s (while %s; %d answered 451 since the last line)",
                       describe(exc), doing, refused_now, exc_info=exc if first else None)

    def succeeded(self) -> None:
        if not self._failing:  # the common case: no lock taken
            return
        with self._lock:
            if not self._failing:
                return
            self._failing = False
            refused, self._refused_total, self._refused_since_line = self._refused_total, 0, 0
        self.log.warning("storage is back: storing mail works again (%d answered 451 while it failed)", refused)


# -- connections that follow the storage ---------------------------------------------------------

_following: "weakref.WeakSet[sa.engine.Engine]" = weakref.WeakSet()

# SQLite errors after which a connection must be opened again: one opened while the file
# was read-only stays read-only after a remount; one whose file hit an I/O error may hold
# a broken view of it.
_REOPEN_AFTER = ("attempt to write a readonly database", "disk i/o error", "unable to open database file",
                 "database disk image is malformed", "file is not a database")


def follow_storage(engine: sa.engine.Engine) -> None:
    """Makes `engine`'s connections recover once the storage is back, for a
    process that must outlive an outage. PostgreSQL: the pool already pings
    each connection before use (switchboard.app), which drops those of a
    restarted server. SQLite: a connection is opened again when its file was
    replaced or unlinked (it would go on writing into the unlinked file, and
    every commit "succeed" into nothing), and after the errors above; a file
    that is missing is never created empty (mode=rw), so a deleted database
    answers 451 until it is restored. Idempotent."""
    if engine in _following or engine.dialect.name != "sqlite":
        return
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    path = os.path.abspath(path)
    _following.add(engine)

    @sa.event.listens_for(engine, "do_connect")
    def _never_create(dialect, record, cargs, cparams):
        # SQLite makes a missing file empty when it opens it; "mode=rw" refuses instead.
        cargs[:] = [f"file:{pathname2url(path)}?mode=rw"]
        cparams["uri"] = True

    @sa.event.listens_for(engine, "connect")
    def _remember_file(dbapi_connection, record):
        record.info["file_identity"] = _identity(path)

    @sa.event.listens_for(engine, "checkout")
    def _same_file(dbapi_connection, record, proxy):
        current = _identity(path)
        # A connection opened before this was installed is taken to be on today's file.
        known = record.info.setdefault("file_identity", current)
        if current is None or current != known:
            # The pool opens a new connection (and raises if it cannot: the delivery gets 451).
            raise sa.exc.DisconnectionError(f"the database file {path} was replaced or removed")

    @sa.event.listens_for(engine, "handle_error")
    def _reopen_after(context):
        orig = context.original_exception
        if isinstance(orig, sqlite3.Error) and any(text in str(orig).lower() for text in _REOPEN_AFTER):
            context.is_disconnect = True  # the connection is discarded, not pooled again


def _identity(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino
