"""Issue 8: a 250 always means stored. The real LMTP server, its storing made
to fail at each point (our storing code, the INSERT the database refuses, the
COMMIT the database refuses, a disk that is full), for one delivery, one
delivery to several accounts and a group of deliveries committed together:
every recipient hears 451, nothing is half-written, and once the fault clears
the MTA's retry is answered 250 and stored once. And the receiver outliving
its storage going away (issue 8, item 2)."""

import contextlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from switchboard.blobs import Blob
from switchboard.db import db
from switchboard.inbound.models import InboundMessage

from .conftest import make_mail, storage_fails
from .faults import commit_fails, fill_disk, tmpfs

HELP, SALES, LAPTOPS = "help@desk.test", "sales@desk.test", "laptops@support.desk.test"


def count(model) -> int:
    db.session.rollback()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def stored_rows() -> list[tuple[int, str, int]]:
    db.session.rollback()
    return sorted(tuple(row) for row in db.session.execute(
        sa.select(InboundMessage.account_id, InboundMessage.subject, InboundMessage.deliveries)).all())


@contextlib.contextmanager
def storing_raises(monkeypatch):
    """Our storing code raises before any SQL runs (store_messages monkeypatched: our own code)."""
    from switchboard.inbound import store

    with monkeypatch.context() as patch:
        def broken(items):
            raise RuntimeError("storing broke")
        patch.setattr(store, "store_messages", broken)
        yield


FAULTS = {
    "storing": storing_raises,
    # store_messages writes with Core statements, not the ORM: its "flush" is the INSERT,
    # refused here by the database itself (a trigger raising, as on a full disk).
    "insert": lambda monkeypatch: storage_fails(),
    # Every statement succeeds; the database refuses the COMMIT (see faults.commit_fails).
    "commit": lambda monkeypatch: commit_fails(),
}

# Each delivery: its recipients. "group": several deliveries that the writer stores together.
SHAPES = {
    "one recipient": [[HELP]],
    "several accounts": [[HELP, SALES, LAPTOPS]],
    "group": [[HELP], [SALES], [HELP, SALES], [LAPTOPS], [SALES], [HELP]],
}


# On PostgreSQL the receiver stores with several writer threads, each taking what is queued;
# with one, the deliveries a test hands in at once are sure to form one group.
ONE_WRITER = {"db_threads": 1}


def deliver_all(lmtp, deliveries, tag: str, monkeypatch) -> tuple[list[list[int]], list[int]]:
    """Delivers each [recipients] on its own connection, all at once; returns the
    codes after DATA per delivery, and the sizes of the groups the writer stored.
    With several deliveries the writer's first group waits (a spy around our
    _store_group) until the others are queued, so they are stored as one group
    (the receiver runs one writer thread: see `one_writer`)."""
    from receiver.lmtp import StoreWriter

    original = StoreWriter._store_group
    sizes = []

    def spy(self, group):
        deadline = time.monotonic() + 5
        while not sizes and self._queue.qsize() < len(deliveries) - len(group) and time.monotonic() < deadline:
            time.sleep(0.01)
        sizes.append(len(group))
        return original(self, group)

    def one(index):
        raw = lmtp.raw()
        try:
            rcpt, replies = raw.deliver("carol@example.org", deliveries[index],
                                        make_mail(subject=f"Log call: {tag} {index}",
                                                  message_id=f"<{tag}-{index}@example.org>"))
            assert [r.code for r in rcpt] == [250] * len(deliveries[index])
            return [r.code for r in replies]
        finally:
            raw.close()

    with monkeypatch.context() as patch:
        patch.setattr(StoreWriter, "_store_group", spy)
        with ThreadPoolExecutor(len(deliveries)) as pool:
            codes = list(pool.map(one, range(len(deliveries))))
    return codes, sizes


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fault", FAULTS)
def test_a_failure_at_any_point_answers_451_to_every_recipient_and_the_retry_is_stored_once(
        app, desk_accounts, receiver, monkeypatch, fault, shape):
    deliveries = SHAPES[shape]
    lmtp = receiver(**ONE_WRITER)
    with FAULTS[fault](monkeypatch):
        codes, groups = deliver_all(lmtp, deliveries, "first", monkeypatch)
    assert codes == [[451] * len(recipients) for recipients in deliveries]
    if len(deliveries) > 1:
        assert max(groups) > 1  # they really were committed (and failed) together
    assert count(InboundMessage) == 0 and count(Blob) == 0  # nothing half-written
    # The fault has cleared; the MTA retries the same mail: 250 each, each copy stored once.
    codes, _ = deliver_all(lmtp, deliveries, "first", monkeypatch)
    assert codes == [[250] * len(recipients) for recipients in deliveries]
    accounts = {HELP: desk_accounts["help"], LAPTOPS: desk_accounts["help"], SALES: desk_accounts["sales"]}
    expected = sorted((account, f"Log call: first {index}", 1)
                      for index, recipients in enumerate(deliveries)
                      for account in {accounts[r] for r in recipients})
    assert stored_rows() == expected
    assert count(Blob) == len(deliveries)


def test_issue8_commit_failing_for_one_account_in_a_group_never_answers_250_for_it(
        app, desk_accounts, receiver, monkeypatch):
    """The bug itself: the group commit fails, each copy is stored alone, and
    the sales copies' COMMITs fail. Before the fix their ids were recorded
    before the commit, so sales got 250 "stored as message N" for a rolled-back
    id (the N of another message)."""
    deliveries = [[HELP, SALES], [SALES], [HELP], [SALES, LAPTOPS]]
    lmtp = receiver(**ONE_WRITER)
    with commit_fails(desk_accounts["sales"]):
        codes, groups = deliver_all(lmtp, deliveries, "mixed", monkeypatch)
    assert max(groups) > 1
    assert codes == [[250, 451], [451], [250], [451, 250]]
    assert stored_rows() == sorted([(desk_accounts["help"], "Log call: mixed 0", 1),
                                    (desk_accounts["help"], "Log call: mixed 2", 1),
                                    (desk_accounts["help"], "Log call: mixed 3", 1)])


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def storage_log():
    """The lines the receiver logs about its storage. A handler of its own on the
    logger: Alembic's logging config (a test migrating a database) replaces the root's."""
    logger = logging.getLogger("receiver.storage")
    handler = _Lines()
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    yield lambda: list(handler.lines)
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_sqlite_on_a_full_disk_answers_451_then_250_once_space_is_freed(tmp_path, monkeypatch, storage_log):
    """The issue's disk-full drill, for real: the SQLite database on a small
    tmpfs that the test fills; the COMMIT (the WAL growing) fails."""
    from flask_migrate import upgrade

    from switchboard.inbound.accounts import create_account
    from tests.conftest import make_test_app
    from .conftest import Receiver

    with tmpfs(tmp_path / "disk", size="6m") as disk:
        full = make_test_app(f"sqlite:///{disk}/switchboard.db")
        with full.app_context():
            upgrade()
            # Alembic's env.py reads its logging config, which disables the loggers that exist.
            logging.getLogger("receiver.storage").disabled = False
            help_account = create_account("help", "lmtp", addresses=["help@desk.test", "@support.desk.test"])
            sales = create_account("sales", "lmtp", addresses=["sales@desk.test"])
            db.session.commit()
            accounts = {HELP: help_account.id, LAPTOPS: help_account.id, SALES: sales.id}
            lmtp = Receiver(full, **ONE_WRITER).start()
            try:
                codes, _ = deliver_all(lmtp, [[HELP]], "before", monkeypatch)
                assert codes == [[250]]
                filler = fill_disk(disk)
                deliveries = SHAPES["group"]
                codes, groups = deliver_all(lmtp, deliveries, "full", monkeypatch)
                assert codes == [[451] * len(r) for r in deliveries] and max(groups) > 1
                codes, _ = deliver_all(lmtp, [[HELP, SALES]], "full-alone", monkeypatch)
                assert codes == [[451, 451]]
                assert [subject for _, subject, _ in stored_rows()] == ["Log call: before 0"]
                os.unlink(filler)
                codes, _ = deliver_all(lmtp, deliveries, "full", monkeypatch)
                assert codes == [[250] * len(r) for r in deliveries]
                rows = stored_rows()
                assert len(rows) == 1 + sum(len({accounts[a] for a in r}) for r in deliveries)
                assert {d for *_, d in rows} == {1}
            finally:
                lmtp.stop()
                db.session.remove()
                db.engine.dispose()
    lines = storage_log()
    assert len([l for l in lines if l.startswith("storage is failing: ")]) == 1
    assert "full" in lines[0]  # "database or disk is full"
    assert lines[-1].startswith("storage is back")


@contextlib.contextmanager
def storage_away(app):
    """Takes the database away until the block ends. SQLite: the file is
    moved aside (unlinked from its path), then put back. PostgreSQL: the
    database stops accepting connections and those open are terminated."""
    url = sa.engine.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite":
        path = url.database
        os.rename(path, path + ".away")
        try:
            yield
        finally:
            os.rename(path + ".away", path)
        return
    import psycopg

    from tests.conftest import PG_ADMIN_URL

    name = url.database
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
        deadline = time.monotonic() + 10
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name]).fetchone()[0]:
            assert time.monotonic() < deadline  # terminating is asynchronous: wait until they are gone
            time.sleep(0.01)
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_the_receiver_outlives_its_storage_going_away_and_resumes_by_itself(
        app, desk_accounts, receiver, storage_log):
    lmtp = receiver()
    raw = lmtp.raw()
    assert [r.code for r in raw.deliver("carol@example.org", [HELP], make_mail())[1]] == [250]
    raw.close()
    db.session.remove()  # the test's own connection must not hold the file or the database
    clock = [time.monotonic()]
    lmtp.server.health.clock = lambda: clock[0]
    refused = 0
    with storage_away(app):
        for n in range(20):  # a stream of deliveries while it is away: each refused, none stored
            raw = lmtp.raw()
            rcpt, replies = raw.deliver("carol@example.org", [HELP, SALES],
                                        make_mail(subject=f"Log call: away {n}", message_id=f"<away-{n}@example.org>"))
            raw.close()
            codes = [r.code for r in rcpt] + [r.code for r in replies]
            assert set(codes) <= {250, 451} and 451 in codes, codes  # 451 at RCPT, or per recipient after DATA
            assert {r.code for r in replies} <= {451}, [(r.code, r.text) for r in rcpt + replies]
            refused += 1
            if n == 9:
                assert len(storage_log()) == 1  # ten deliveries refused: one line
                clock[0] += 61  # a minute later: one more line, counting what was refused meanwhile
        time.sleep(0.1)
    lines = storage_log()
    assert len(lines) == 2, lines
    assert all(line.startswith("storage is failing: ") for line in lines)
    assert "since the last line" in lines[1] and "; 0 answered" not in lines[1]
    # Back: new sessions are answered 250 and stored, once each.
    for n in range(20):
        raw = lmtp.raw()
        rcpt, replies = raw.deliver("carol@example.org", [HELP, SALES],
                                    make_mail(subject=f"Log call: away {n}", message_id=f"<away-{n}@example.org>"))
        raw.close()
        assert [r.code for r in rcpt + replies] == [250] * 4
    assert storage_log()[-1].startswith("storage is back")
    rows = stored_rows()
    assert len(rows) == 1 + 40 and {d for *_, d in rows} == {1}
