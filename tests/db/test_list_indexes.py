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
    # The page as the list reads it (call_lines): its calls found by walking the index in
    # order (the LIMIT stops the walk, nothing sorted), then only those read by key with what
    # their lines show; the one sort is of the page's own rows.
    assert "LIST SUBQUERY 1 / SCAN call USING INDEX ix_call_list_order / " in listed, listed
    assert "SEARCH call USING INTEGER PRIMARY KEY" in listed, listed
    assert listed.count("TEMP B-TREE") == 1 and listed.endswith("USE TEMP B-TREE FOR ORDER BY"), listed
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
    # (ix_call_analyst_work leaves out calls nobody has, and these 500 have nobody.)
    assert stats["ix_call_list_order"].startswith("500 ") and stats["ix_call_group_queue"].startswith("500 ")


def test_migration_0015_adds_the_mine_index_and_takes_it_away_when_undone(app):
    from flask_migrate import downgrade, upgrade

    from switchboard.db import db

    try:
        downgrade(revision="0014")
        assert "ix_call_analyst_list_order" not in _indexes(db.engine)["call"]
    finally:
        upgrade()
    assert "ix_call_analyst_list_order" in _indexes(db.engine)["call"]


def _explain(statement) -> str:
    from switchboard.db import db

    sql = str(statement.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    if db.engine.dialect.name == "sqlite":
        return " / ".join(row[3] for row in db.session.execute(sa.text("EXPLAIN QUERY PLAN " + sql)))
    return " / ".join(row[0] for row in db.session.execute(sa.text("EXPLAIN " + sql)))


def test_the_call_list_mine_walks_the_analysts_calls_of_the_status_in_order(app):
    """The call list's "mine" with a status (migration 0015, ix_call_analyst_list_order):
    the page is a walk of the analyst's calls of that status in list order and the count
    reads that range of the index; before it, PostgreSQL combined every call of the status
    with the analyst's and sorted them, hashing every person for the join. And a group's
    queue is read by its own index on SQLite too."""
    from datetime import timedelta

    from portal.pagination import count
    from switchboard.calls.queries import LIST_ORDER, call_lines, find_calls, group_queue_calls
    from switchboard.db import db, optimize_sqlite, utcnow
    from switchboard.people.models import Person

    now = utcnow().replace(tzinfo=None)
    statuses = ["open", "pending", "resolved", "closed", "closed"]
    with db.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO person (id, email, name, is_customer, is_analyst, is_admin, active, session_version, "
            "created_at) VALUES (:id, :email, 'P', true, :analyst, false, true, 1, :now)"
        ), [{"id": n, "email": f"p{n}@example.org", "analyst": n <= 20, "now": now} for n in range(1, 2001)])
        conn.execute(sa.text(
            "INSERT INTO call (summary, description, priority_id, status, customer_id, logged_by_id, "
            "assigned_analyst_id, source, logged_at, updated_at, sla_level, sla_breached, sla_used_seconds) "
            "VALUES ('s', '', 3, :status, :customer, 1, :analyst, 'portal', :at, :at, 0, false, 0)"
        ), [{"status": statuses[n // 20 % 5], "customer": 21 + n % 1980, "analyst": 1 + n % 20,
             "at": now - timedelta(minutes=n)} for n in range(20000)])
        # And 4,000 nobody has, in ten groups' queues; the analyst is in two of the groups.
        conn.execute(sa.text("INSERT INTO analyst_group (id, name, active) VALUES (:id, :name, true)"),
                     [{"id": n, "name": f"G{n}"} for n in range(1, 11)])
        conn.execute(sa.text("INSERT INTO group_membership (group_id, person_id) VALUES (1, 1), (2, 1)"))
        conn.execute(sa.text(
            "INSERT INTO call (summary, description, priority_id, status, customer_id, logged_by_id, "
            "assigned_group_id, source, logged_at, updated_at, sla_level, sla_breached, sla_used_seconds) "
            "VALUES ('s', '', 3, :status, 21, 1, :group, 'portal', :at, :at, 0, false, 0)"
        ), [{"status": statuses[n // 10 % 5], "group": 1 + n % 10, "at": now - timedelta(minutes=n)}
            for n in range(4000)])
        if conn.dialect.name == "sqlite":
            optimize_sqlite(conn)
        else:
            conn.execute(sa.text("ANALYZE call, person, analyst_group, group_membership"))
    try:
        me = db.session.get(Person, 1)
        mine = find_calls(me, status="open", scope="mine").order_by(None)
        page = _explain(call_lines(mine.order_by(*(c.desc() for c in LIST_ORDER)).limit(51)))
        counted = _explain(sa.select(sa.func.count()).select_from(mine.subquery()))
        assert count(mine) == 200
        queue = _explain(call_lines(group_queue_calls(me).limit(50)))
        assert count(group_queue_calls(me)) == 320
    finally:
        if db.engine.dialect.name == "sqlite":
            with db.engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM sqlite_stat1 WHERE tbl IN ('call', 'person')"))
    if db.engine.dialect.name == "sqlite":
        assert "SEARCH call USING COVERING INDEX ix_call_analyst_list_order (assigned_analyst_id=? AND status=?)" \
            in page and page.count("TEMP B-TREE") == 1, page
        assert "COVERING INDEX ix_call_analyst_list_order" in counted, counted
        # My work's queue of my groups: their calls by ix_call_group_queue, not a walk of
        # every call nobody has in the queue's order (ix_call_analyst_work leaves them out).
        assert "SEARCH call USING INDEX ix_call_group_queue" in queue and "ix_call_analyst_work" not in queue, queue
    else:
        assert "Index Only Scan Backward using ix_call_analyst_list_order" in page, page
        assert "Seq Scan on call" not in page and "Seq Scan on person" not in page, page
        # The count's range is the index's (index only once VACUUM has marked the pages).
        assert "ix_call_analyst_list_order" in counted and "ix_call_status" not in counted, counted
        assert "ix_call_group_queue" in queue and "Seq Scan on call" not in queue, queue
