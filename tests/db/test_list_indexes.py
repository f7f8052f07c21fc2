"""The indexes migration 0011 adds for the portal's lists and timelines, and the
statistics SQLite needs to use them: given at start and after migrations
(switchboard.db.optimize_sqlite). Without statistics SQLite read every call of
a status and sorted them for one page of the call list."""

import sqlalchemy as sa

from tests.conftest import make_test_app

LIST_INDEXES = {
    "call": {"ix_call_list_order", "ix_call_analyst_work", "ix_call_group_queue"},
    "history_entry": {"ix_history_entry_call_timeline", "ix_history_entry_request_timeline",
                      "ix_history_entry_task_timeline"},
    "service_request": {"ix_service_request_list_order"},
}
REPLACED = {"call": {"ix_call_assigned_analyst_id"},
            "history_entry": {"ix_history_entry_call_id", "ix_history_entry_request_id", "ix_history_entry_task_id"}}


def _indexes(engine) -> dict[str, set[str]]:
    inspector = sa.inspect(engine)
    return {table: {i["name"] for i in inspector.get_indexes(table)} for table in LIST_INDEXES}


def test_migration_0011_adds_the_list_indexes_and_gives_the_old_ones_back_when_undone(app):
    from flask_migrate import downgrade, upgrade

    from switchboard.db import db

    try:
        downgrade(revision="0010")
        before = _indexes(db.engine)
        for table, names in LIST_INDEXES.items():
            assert not names & before[table]
            assert REPLACED.get(table, set()) <= before[table]
    finally:
        upgrade()
    after = _indexes(db.engine)
    for table, names in LIST_INDEXES.items():
        assert names <= after[table] and not REPLACED.get(table, set()) & after[table]


def _plan(engine, statement) -> str:
    sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        return " / ".join(row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))


def _fill(engine, calls: int) -> None:
    from switchboard.db import utcnow

    now = utcnow().replace(tzinfo=None)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO person (id, email, name, is_customer, is_analyst, is_admin, active, "
                             "session_version, created_at) VALUES (1, 'c@example.org', 'C', 1, 0, 0, 1, 1, ?)", (now,))
        statuses = ["open", "pending", "resolved", "closed"]
        conn.exec_driver_sql(
            "INSERT INTO call (summary, description, priority_id, status, customer_id, logged_by_id, source, "
            "logged_at, updated_at) VALUES ('s', '', 3, ?, 1, 1, 'portal', ?, ?)",
            [(statuses[n % 4], now, now) for n in range(calls)],
        )


def test_sqlite_gets_statistics_at_start_so_the_call_list_walks_its_index(tmp_path):
    """A database filled after its migrations (tables empty when they ran) has no
    statistics; the next start gives it some, and the call list's first page is then
    read in list order from ix_call_list_order instead of sorted, with what each line shows
    (customer, analyst, group, priority) joined in."""
    from flask_migrate import upgrade

    from switchboard.calls.queries import call_lines, find_calls
    from switchboard.db import db

    url = f"sqlite:///{tmp_path / 'desk.db'}"
    app = make_test_app(url)
    with app.app_context():
        upgrade()
        _fill(db.engine, 3000)
        engine = sa.create_engine(url)
        unplanned = _plan(engine, find_calls(None).limit(51))
        engine.dispose()
        db.engine.dispose()
    # Without statistics: every call of the status read, then sorted (the control).
    assert "TEMP B-TREE FOR ORDER BY" in unplanned, unplanned

    restarted = make_test_app(url)
    with restarted.app_context():
        plan = _plan(db.engine, find_calls(None).limit(51))
        listed = _plan(db.engine, call_lines(find_calls(None)).limit(51))
        stats = dict(db.session.execute(sa.text("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'call'")).all())
        db.engine.dispose()
    assert "ix_call_list_order" in plan and "TEMP B-TREE" not in plan, plan
    # The page as the list reads it: the call table first, walked in order, so the LIMIT
    # stops the walk; the joined tables are looked up a line at a time.
    assert listed.startswith("SCAN call USING INDEX ix_call_list_order") and "TEMP B-TREE" not in listed, listed
    assert stats["ix_call_list_order"].startswith("3000 ")


def test_sqlite_statistics_follow_a_migration(tmp_path):
    """Migrating a database that has rows leaves statistics for the indexes it added."""
    from flask_migrate import upgrade

    from switchboard.db import db

    url = f"sqlite:///{tmp_path / 'desk.db'}"
    app = make_test_app(url)
    with app.app_context():
        upgrade(revision="0010")
        _fill(db.engine, 500)
        upgrade()
        stats = dict(db.session.execute(sa.text("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'call'")).all())
        db.engine.dispose()
    assert stats["ix_call_list_order"].startswith("500 ") and stats["ix_call_analyst_work"].startswith("500 ")
