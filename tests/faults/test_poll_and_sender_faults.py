"""Fault drill for the polled and the outgoing paths: `mail poll` (IMAP, POP3) against a real
Dovecot and `outbox send --loop` against a loopback SMTP server, each a real process killed
with SIGKILL (its whole group) at random moments and started again; then every counted
Message-ID is checked: polled mail one inbound message and one call each, none left in the
mailbox; sent mail all at the SMTP server, at most one duplicate per crash."""

import random
import time
from collections import Counter

import pytest

from switchboard.db import db
from tests.outbox.smtp_sink import SmtpSink

from tests.conftest import BACKENDS

from .conftest import drill_mail, drill_tag, report, take_census

POLLED = 100
KILLS = 3
# Each protocol on one database, both databases used: what differs by protocol (IMAP moves or
# flags, POP3 deletes by UIDL) does not touch the database, and what differs by database (the
# receipt INSERT ... ON CONFLICT of each dialect; acting behind SQLite's write gate) does not
# depend on the protocol, so these two runs cover every path the four combinations would.
POLL_CASES = [(protocol, backend) for protocol, backend in (("imap", "sqlite"), ("pop3", "postgresql"))
              if backend in BACKENDS]


@pytest.mark.parametrize("protocol, app", POLL_CASES, indirect=["app"])
def test_poll_killed_at_random_moments_no_loss_no_duplicate(app, dovecot, mail_account, processes, protocol):
    """`mail poll` killed (SIGKILL, whole group) 3 times at random moments over 100 mails in
    batches of 10, then run until the mailbox is empty: each mail one inbound message and one
    call, none left on the server. IMAP on SQLite, POP3 on PostgreSQL (see POLL_CASES)."""
    from switchboard.inbound.accounts import create_account

    port = dovecot.ports.imap if protocol == "imap" else dovecot.ports.pop3
    create_account("box", protocol, host="127.0.0.1", port=port, security="none",
                   username=mail_account.email, password=mail_account.password, timeout_seconds=10,
                   batch_size=10)  # small batches: the kills land between and inside them
    db.session.commit()
    tag, started = drill_tag(f"poll{protocol}"), time.monotonic()
    expected = set()
    for number in range(POLLED):
        message_id, raw = drill_mail(tag, number)
        mail_account.append(raw)
        expected.add(message_id)
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    rng = random.Random()
    kills, runs = 0, 0
    while True:
        runs += 1
        poll = processes.command(["mail", "poll"], url, f"poll-{runs}")
        if kills < KILLS:
            # Somewhere in the run: starting up (imports take ~1 s), fetching, storing, settling.
            deadline = time.monotonic() + rng.uniform(0.8, 3.0)
            while poll.alive and time.monotonic() < deadline:
                time.sleep(0.01)
            if poll.alive:
                poll.kill()
                kills += 1
                continue
        assert poll.wait(120) == 0, poll.output()[-3000:]
        if not mail_account.messages():
            break
        assert runs < 20, "the mailbox never emptied"
    census = take_census(url, tag, expected)
    report(f"poll killed [{protocol}, {url.split(':')[0]}]", census, started, kills=kills, runs=runs)
    assert mail_account.messages() == []  # every mail settled in the mailbox
    census.assert_each_once()
    assert kills >= 1  # the drill did interrupt a poll


SENT = 100
CRASHES = 2


def test_sender_killed_mid_batch_sends_everything_at_most_one_duplicate_per_crash(app, processes):
    """`outbox send --loop` killed twice mid-batch over 100 mails: every mail reaches the SMTP
    server, at most one twice per crash. Both databases: a sender claims rows differently on
    each (FOR UPDATE SKIP LOCKED on PostgreSQL)."""
    from switchboard.outbox import catalogue
    from switchboard.outbox.queue import queue_mail
    from switchboard.outbox.servers import add_server

    with SmtpSink() as sink:
        add_server("sink", sink.host, port=sink.port, security="none", from_address="desk@example.org",
                   timeout_seconds=5)
        for number in range(SENT):
            queue_mail(catalogue.MANUAL_MESSAGE, [f"customer{number}@example.org"], subject=f"Mail {number}",
                       text="Hello.\n", automatic=False)
        db.session.commit()
        url = app.config["SQLALCHEMY_DATABASE_URI"]
        started = time.monotonic()
        args = ["outbox", "send", "--loop", "0.5", "--batch", "50", "--lease", "10"]
        rng = random.Random()
        crashes = 0
        sender = processes.command(args, url, "sender-0")
        while crashes < CRASHES:
            # Kill it once it has sent some more: mid-batch, marks not yet all committed. A few,
            # so both kills land while queued mail is left: a sender that ran out of it would
            # wait for a dead one's lease (10 s) before reaching a larger target.
            target = len(sink.messages) + rng.randint(5, 25)
            deadline = time.monotonic() + 60
            while len(sink.messages) < min(target, SENT) and time.monotonic() < deadline:
                time.sleep(0.002)
            sender.kill()
            assert len({m.message["Message-ID"] for m in sink.messages}) < SENT  # mid-stream
            crashes += 1
            sender = processes.command(args, url, f"sender-{crashes}")
        # Rows the killed senders held come back after their lease (10 s, the least allowed).
        # Every row marked sent: no sender can still be sending one (it sends only rows it
        # claimed, never a sent one), so nothing more can reach the server after this.
        deadline = time.monotonic() + 90
        while {row.status.value for row in _outbox_rows()} != {"sent"} and time.monotonic() < deadline:
            time.sleep(0.2)
        sender.stop()
        received = Counter(m.message["Message-ID"] for m in sink.messages)
    queued = {row.message_id for row in _outbox_rows()}
    duplicates = sum(n - 1 for n in received.values())
    print(f"\n[fault drill] sender killed [{url.split(':')[0]}]: queued {SENT}, received {len(received)} "
          f"distinct, missing {len(queued - set(received))}, sent twice {duplicates}; "
          f"crashes {crashes}; {time.monotonic() - started:.1f} s")
    assert set(received) == queued  # every mail sent, none missing
    assert {row.status.value for row in _outbox_rows()} == {"sent"}
    assert duplicates <= crashes, f"{duplicates} mails sent twice after {crashes} crashes"


def _outbox_rows():
    import sqlalchemy as sa

    from switchboard.outbox.models import OutboxMessage

    db.session.rollback()
    return list(db.session.scalars(sa.select(OutboxMessage)))
