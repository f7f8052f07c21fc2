"""The indexes migration 0014 adds for the request list and the task queues, and the
request list's plans on SQLite with statistics: its pages walk the list's index in order
(the LIMIT stops the walk) with the requester and the task count looked up per line, and
"mine" starts from the person's own requests and tasks, not from every request."""

import sqlalchemy as sa

from tests.conftest import make_test_app

ADDED = {"service_request": {"ix_service_request_owner_id"}, "task": {"ix_task_group_queue"}}


def _indexes(engine) -> dict[str, set[str]]:
    inspector = sa.inspect(engine)
    return {table: {i["name"] for i in inspector.get_indexes(table)} for table in ADDED}


def test_migration_0014_adds_the_request_indexes_and_takes_them_away_when_undone(app):
    from flask_migrate import downgrade, upgrade

    from switchboard.db import db

    try:
        downgrade(revision="0013")
        before = _indexes(db.engine)
        assert all(not names & before[table] for table, names in ADDED.items()), before
    finally:
        upgrade()
    after = _indexes(db.engine)
    assert all(names <= after[table] for table, names in ADDED.items()), after


def _plan(engine, statement) -> str:
    sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        return " / ".join(row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))


def test_the_request_list_walks_its_index_and_mine_starts_from_the_person(tmp_path):
    from flask_migrate import upgrade

    from switchboard.db import db, optimize_sqlite, utcnow
    from switchboard.people.models import Person
    from switchboard.requests.queries import REQUEST_LISTED_WITH, find_requests

    url = f"sqlite:///{tmp_path / 'desk.db'}"
    app = make_test_app(url)
    with app.app_context():
        upgrade()
        now = utcnow().replace(tzinfo=None)
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO person (id, email, name, is_customer, is_analyst, is_admin, active, session_version, "
                "created_at) VALUES (?, ?, 'P', 0, 1, 0, 1, 1, ?)",
                [(n, f"p{n}@desk.test", now) for n in range(1, 201)],
            )
            statuses = ["open", "in_progress", "completed", "completed", "rejected"]
            conn.exec_driver_sql(
                "INSERT INTO service_request (title, description, status, requester_id, owner_id, created_at, "
                "updated_at) VALUES ('r', '', ?, ?, ?, ?, ?)",
                [(statuses[n % 5], 1 + n % 200, 1 + n * 7 % 200, now, now) for n in range(4000)],
            )
            conn.exec_driver_sql(
                "INSERT INTO task (request_id, stage, kind, title, description, status, assigned_analyst_id, "
                "created_at) VALUES (?, 1, 'action', 't', '', 'done', ?, ?)",
                [(1 + n % 4000, 1 + n * 3 % 200, now) for n in range(12000)],
            )
            optimize_sqlite(conn)
        me = db.session.get(Person, 1)
        listed = _plan(db.engine, find_requests(me).options(*REQUEST_LISTED_WITH).limit(51))
        mine = _plan(db.engine, find_requests(me, status="all", scope="mine").limit(51))
        db.engine.dispose()
    assert listed.startswith("SCAN service_request USING INDEX ix_service_request_list_order"), listed
    assert "TEMP B-TREE" not in listed, listed
    # "Mine": the person's requests by owner and requester, and their tasks, each by an index.
    assert "ix_service_request_owner_id" in mine and "ix_service_request_requester_id" in mine, mine
    assert "SCAN service_request" not in mine, mine
