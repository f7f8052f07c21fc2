"""Fault drill for the LMTP path: a real Postfix delivers counted mail to `receiver run` (a
real process), something breaks mid-stream, it is repaired, Postfix retries; every mail must
then be exactly one inbound message and one call, and Postfix's queue empty. A mail answered
250 and then missing is the bug these exist to catch: Postfix deletes what got a 250.

Each drill sends 100 mails and strikes after 30 are stored, so the fault lands mid-stream with
70 still to come (200 proved nothing more: every drill asserts the fault struck). A fault lasts
until the receiver has answered 451 at least once, polled, not slept. Databases: the kill drill
runs on both (storing differs: one writer behind the write gate on SQLite, several storing
threads on PostgreSQL); the others on the one database their fault exists for (a PostgreSQL
server stopped or refusing COMMIT; a full or read-only filesystem under SQLite's file)."""

import threading
import time

import psycopg
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.servers.process import free_port

from .conftest import (add_lmtp_account, answers, blast, drain, drill_tag, postqueue_listing,
                       prepare_desk, report, retry_now, take_census)

MAILS = 100
FAULT_AT = 30  # stored mails before the fault strikes


def stored(url: str, tag: str) -> int:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM inbound_message WHERE message_id LIKE :p"),
                                {"p": f"{tag}-%"}).scalar_one()
    finally:
        engine.dispose()


def wait_stored(url: str, tag: str, count: int, postfix, timeout: float = 60.0) -> None:
    """Waits until `count` of the drill's mails are stored, asking Postfix to retry what it
    deferred meanwhile (it suspends a destination that failed, until a flush)."""
    deadline = time.monotonic() + timeout
    retried = time.monotonic()
    while stored(url, tag) < count:
        assert time.monotonic() < deadline, f"fewer than {count} mails stored after {timeout}s"
        if time.monotonic() - retried > 1:
            retry_now(postfix)
            retried = time.monotonic()
        time.sleep(0.05)


def wait_refused(postfix, receiver, timeout: float = 60.0) -> None:
    """Waits until the receiver has answered 451 to Postfix at least once: the fault struck and
    the desk said "try again" (Postfix logs each attempt; this instance is the drill's own)."""
    deadline = retried = time.monotonic()
    deadline += timeout
    while not any(d.status == "deferred" and " 451 " in f" {d.reason} " for d in postfix.deliveries()):
        assert receiver.alive, receiver.output()[-3000:]
        assert time.monotonic() < deadline, f"no 451 within {timeout}s of the fault"
        if time.monotonic() - retried > 1:  # a destination Postfix suspended waits its backoff
            retry_now(postfix)
            retried = time.monotonic()
        time.sleep(0.05)
    assert receiver.alive, receiver.output()[-3000:]


class Blast:
    """`blast()` in a thread, so the fault can strike while Postfix is still delivering."""

    def __init__(self, postfix, tag: str, count: int = MAILS, **options):
        self.count = count
        self.queued: dict[str, str] = {}
        self.error: BaseException | None = None

        def run():
            try:
                self.queued = blast(postfix, tag, count, **options)
            except BaseException as exc:  # surfaced by join()
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self) -> dict[str, str]:
        self.thread.join(120)
        assert self.error is None, self.error
        assert len(self.queued) == self.count
        return self.queued


def finish(name, postfix, url, tag, queued, started, **figures):
    """Retries until Postfix holds nothing, counts, and checks each mail arrived once."""
    drain(postfix)
    census = take_census(url, tag, set(queued))
    outcomes = answers(postfix, set(queued.values()))
    report(name, census, started, **figures, **{"postfix": dict(outcomes)})
    assert "Mail queue is empty" in postqueue_listing(postfix)
    census.assert_each_once()
    return census, outcomes


# The kill drill's mail: after its second kill 140 are still to come. With 100 (40 to come) a
# fast desk once stored them all between seeing 60 and the kill, and the drill tested nothing.
KILL_MAILS = 200


def test_receiver_killed_mid_blast_every_mail_is_one_call(app, postfix_factory, processes):
    """kill -9 of the whole process group (acting processes too), twice, while Postfix delivers
    (after 30 and 60 of 200 stored). SQLite and PostgreSQL: their storing paths differ."""
    add_lmtp_account()
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    port = free_port()
    postfix = postfix_factory(port, domains=("desk.test",))
    receiver = processes.receiver(url, port)
    tag, started = drill_tag("kill"), time.monotonic()
    sending = Blast(postfix, tag, KILL_MAILS)
    kills = 0
    for at in (FAULT_AT, 2 * FAULT_AT):
        wait_stored(url, tag, at, postfix)
        receiver.kill()
        kills += 1
        assert stored(url, tag) < KILL_MAILS  # the kill struck mid-stream
        # Restarting takes a second or more (imports): Postfix meets the closed port meanwhile.
        receiver = processes.receiver(url, port)
        retry_now(postfix)
    queued = sending.join()
    finish(f"receiver killed [{app.config['SQLALCHEMY_DATABASE_URI'].split(':')[0]}]", postfix, url, tag,
           queued, started, kills=kills)


def test_database_server_stopped_mid_stream_postfix_keeps_the_mail(private_postgres, postfix_factory,
                                                                  processes):
    """PostgreSQL stopped with `-m immediate` while mail flows: the receiver answers 451 (Postfix
    keeps the mail), stays up, and stores everything once the server is back."""
    with psycopg.connect(private_postgres.admin_url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE desk")
    url = private_postgres.url("desk")
    prepare_desk(url)
    port = free_port()
    postfix = postfix_factory(port, domains=("desk.test",))
    receiver = processes.receiver(url, port)
    tag, started = drill_tag("pgdown"), time.monotonic()
    sending = Blast(postfix, tag)
    wait_stored(url, tag, FAULT_AT, postfix)
    private_postgres.stop_immediately()
    wait_refused(postfix, receiver)
    private_postgres.start()
    queued = sending.join()
    census, outcomes = finish("database server stopped", postfix, url, tag, queued, started)
    assert outcomes["deferred 451"] > 0, outcomes  # the fault did strike, and Postfix heard 451
    assert receiver.alive, receiver.output()[-3000:]


def test_commits_failing_on_postgresql_answer_451_then_each_mail_once(scratch_postgres, postfix_factory,
                                                                     processes):
    """The server refuses COMMIT (a deferred constraint trigger raises at commit time, toggled
    by the test): every delivery meanwhile must get 451, none a 250 for a rolled-back row."""
    url = scratch_postgres
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE drill_switch (refuse boolean NOT NULL)"))
        conn.execute(sa.text("INSERT INTO drill_switch VALUES (false)"))
        conn.execute(sa.text(
            "CREATE FUNCTION drill_refuse_commit() RETURNS trigger AS $$ BEGIN "
            "IF (SELECT refuse FROM drill_switch) THEN RAISE EXCEPTION 'fault drill: commit refused'; END IF; "
            "RETURN NULL; END $$ LANGUAGE plpgsql"))
        conn.execute(sa.text(
            "CREATE CONSTRAINT TRIGGER drill_refuse_commit AFTER INSERT ON inbound_message "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION drill_refuse_commit()"))

    def refuse(on: bool) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE drill_switch SET refuse = :on"), {"on": on})

    port = free_port()
    postfix = postfix_factory(port, domains=("desk.test",))
    receiver = processes.receiver(url, port)
    tag, started = drill_tag("commit"), time.monotonic()
    try:
        # The fault strikes once FAULT_AT mails are submitted, from inside the blast: the rest are
        # submitted after it, so some must meet it (waiting for FAULT_AT stored first raced a fast
        # desk, which had stored all 100 before the switch, and no 451 ever came).
        sending = Blast(postfix, tag, during=lambda: refuse(True), at=FAULT_AT)
        wait_refused(postfix, receiver)
        during = stored(url, tag)
        refuse(False)
        queued = sending.join()
        census, outcomes = finish("commits failing [postgresql]", postfix, url, tag, queued, started)
    finally:
        engine.dispose()
    assert outcomes["deferred 451"] > 0, outcomes
    assert receiver.alive, receiver.output()[-3000:]
    assert during < MAILS, "the fault did not strike mid-stream"


def test_disk_full_under_sqlite_then_space_freed_each_mail_once(scratch_filesystem, postfix_factory, processes):
    """The SQLite database on a small tmpfs that fills up mid-stream (so commits fail with
    "database or disk is full"): 451 while full, the receiver stays up, each mail once after."""
    fs = scratch_filesystem("tmpfs", 24)
    url = f"sqlite:///{fs.path / 'switchboard.db'}"
    prepare_desk(url)
    port = free_port()
    postfix = postfix_factory(port, domains=("desk.test",))
    receiver = processes.receiver(url, port)
    tag, started = drill_tag("full"), time.monotonic()
    sending = Blast(postfix, tag, size=4000)
    wait_stored(url, tag, FAULT_AT, postfix)
    filled = fs.fill()
    wait_refused(postfix, receiver)
    fs.free()
    queued = sending.join()
    census, outcomes = finish("disk full [sqlite]", postfix, url, tag, queued, started,
                              filled_mb=round(filled / 2**20, 1))
    assert outcomes["deferred 451"] > 0, outcomes
    assert receiver.alive, receiver.output()[-3000:]


def test_filesystem_read_only_mid_stream_receiver_answers_451(scratch_filesystem, postfix_factory, processes):
    """The filesystem under the SQLite database goes read-only mid-stream (ext4's
    errors=remount-ro, triggered through the kernel): the receiver keeps running and answers
    451; after the operator's repair (stop, fsck, mount, start) every mail arrives once.
    The trigger strikes while the filesystem is frozen for a few milliseconds: bare, ext4
    confirms fdatasync for ~50 ms after dropping its journal, which lost mails answered 250
    that no program could have kept (see ScratchFilesystem.fail and test_drill_machinery)."""
    fs = scratch_filesystem("ext4", 32)
    url = f"sqlite:///{fs.path / 'switchboard.db'}"
    prepare_desk(url)
    port = free_port()
    postfix = postfix_factory(port, domains=("desk.test",))
    receiver = processes.receiver(url, port)
    tag, started = drill_tag("rofs"), time.monotonic()
    sending = Blast(postfix, tag)
    wait_stored(url, tag, FAULT_AT, postfix)
    fs.fail()
    wait_refused(postfix, receiver)
    queued = sending.join()
    drain_deadline = time.monotonic() + 10
    while postfix.queue_ids(("maildrop", "incoming", "active")) and time.monotonic() < drain_deadline:
        time.sleep(0.1)  # let the attempts under way end (in 451) before the repair
    outcomes = answers(postfix, set(queued.values()))
    assert outcomes["deferred 451"] > 0, outcomes
    assert receiver.alive, receiver.output()[-3000:]
    receiver.stop()
    fs.repair()
    processes.receiver(url, port)
    finish("filesystem read-only [sqlite]", postfix, url, tag, queued, started)
