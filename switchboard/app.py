"""Binds the domain to a Flask app: configuration, the database and Alembic.

The portal, the receiver and the scheduler all start from an app set up
here; the portal adds its blueprints on top."""

import logging

import sqlalchemy as sa
from flask import Flask
from flask_migrate import Migrate

from switchboard import config, models  # noqa: F401  (the whole schema)
from switchboard.db import UTCDateTime, db, optimize_sqlite



def _render_item(type_, obj, autogen_context):
    # Migrations name plain SQL types, never our Python wrappers, so an old
    # migration keeps working whatever becomes of switchboard.db.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


migrate = Migrate(render_as_batch=True, compare_type=True, render_item=_render_item)


def init_domain(app: Flask, overrides: dict | None = None) -> None:
    app.config.from_mapping(config.from_environment(app.instance_path))
    if overrides:
        app.config.from_mapping(overrides)
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite:"):
        # One writer at a time on SQLite: wait for the lock instead of failing. The pool stays
        # FIFO here: with LIFO, a trigger one test dropped was still seen by the connection the
        # next test reused ("trigger ... already exists", 5 times in 8 runs of
        # tests/receiver/test_lmtp.py's two storage-failure tests; never with FIFO).
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"connect_args": {"timeout": 30}})
    else:
        # LIFO: a quiet portal keeps using the connection it used last, whose prepared
        # statements are warm (psycopg prepares a statement after 5 uses on one connection);
        # the default FIFO walks every pooled connection in turn.
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True, "pool_use_lifo": True})
    db.init_app(app)
    migrate.init_app(app, db, directory=_migrations_dir())
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sa.event.listen(db.engine, "connect", _sqlite_pragmas)
            _optimize_at_start()

    from switchboard.outbox import notify  # noqa: F401  (mail notifications subscribe to the events)
    from switchboard import cli  # noqa: F401  (registers commands)

    cli.register(app)


def _migrations_dir() -> str:
    import os

    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations")


def _optimize_at_start() -> None:
    import os

    path = db.engine.url.database
    if path and path != ":memory:" and not os.path.exists(path):
        return  # nothing to plan for yet (`db upgrade` makes it, and optimizes after)
    # Statistics help, they are not needed: a database that is locked (another process is
    # writing) or read-only now still serves, planned without them, so wait briefly only.
    try:
        with db.engine.begin() as connection:
            waited = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
            connection.exec_driver_sql("PRAGMA busy_timeout=500")
            try:
                optimize_sqlite(connection)
            finally:
                connection.exec_driver_sql(f"PRAGMA busy_timeout={int(waited)}")
    except sa.exc.OperationalError as exc:
        logging.getLogger(__name__).warning("SQLite statistics not refreshed at start: %s", exc)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (portal pages) run while the receiver writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # FULL: a commit is on disk before it returns, as an acknowledgement (LMTP 250, an
    # IMAP move, an exit status to the MTA) promises; NORMAL could lose the last
    # commits to a power cut. With commits grouped it costs about 0.3 ms each here.
    cursor.execute("PRAGMA synchronous=FULL")
    # 16 MB of page cache per connection (SQLite's default is 2 MB): the indexes the lists
    # and My work walk stay in memory on a desk of 100,000 calls.
    cursor.execute("PRAGMA cache_size=-16000")
    cursor.close()
