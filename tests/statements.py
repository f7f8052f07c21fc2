"""Counting the SQL statements sent to the database inside a block: the statement-bound tests
(tests/portal/test_sql_per_*.py) and the tests that an action reads or writes a table once."""

import contextlib

import sqlalchemy as sa

from switchboard.db import db


@contextlib.contextmanager
def statements():
    """The SQL statements sent to the database inside the block, in order."""
    sent = []

    def count(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
