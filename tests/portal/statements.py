"""Counting the SQL statements a portal page or action sends (the statement-bound tests of
test_sql_per_page.py and test_sql_per_request.py)."""

import contextlib

import sqlalchemy as sa

from switchboard.db import db


@contextlib.contextmanager
def statements():
    """Counts the SQL statements sent to the database inside the block."""
    sent = []

    def count(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)


def counted(portal, method: str, url: str, data=None) -> tuple[int, str]:
    """Serves one page (GET; an htmx request for a timeline's older page) or htmx action
    (POST), which must answer 200: the statements it sent and its HTML."""
    with statements() as sent:
        if method == "GET":
            response = portal.get(url, headers={"HX-Request": "true"} if "/timeline" in url else {})
        else:
            response = portal.post(url, data, htmx=True)
    assert response.status_code == 200, (url, response.status_code, response.get_data(as_text=True)[:500])
    return len(sent), response.get_data(as_text=True)
