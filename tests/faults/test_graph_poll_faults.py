"""Fault drill for the Microsoft Graph mailbox (issue 13, item 4): `mail poll` of a Graph
account, a real process killed with SIGKILL (its whole group) at random moments over 60
mails read in delta pages of 10 (each kill once it has fetched or moved a few more), then run
until the folder is empty: each mail one inbound
message and one call, none left in the folder. Both databases.

Graph itself is the tests' stand-in (tests/servers/graph.py): no Graph server can run here
(it is Microsoft's cloud service), so that is the one mock; the poller is the real command,
its tokens real (MSAL against the tests' OAuth2 server)."""

from __future__ import annotations

import random
import time

from switchboard.db import db
from switchboard.inbound.accounts import create_account
from tests.graph.conftest import provider, graph, mailbox, microsoft_grant  # noqa: F401 (fixtures)

from .conftest import drill_mail, drill_tag, report, take_census

POLLED = 60
KILLS = 3


def test_graph_poll_killed_at_random_moments_no_loss_no_duplicate(app, graph, provider, mailbox, server_tls,
                                                                  processes):
    create_account("m365", "graph", host="127.0.0.1", port=graph.port, username=mailbox,
                   trusted_ca_pem=server_tls.ca.read_text(), oauth_grant=microsoft_grant(provider, mailbox),
                   batch_size=10, timeout_seconds=10)
    db.session.commit()
    graph.log.clear()
    tag, started = drill_tag("pollgraph"), time.monotonic()
    expected = set()
    for number in range(POLLED):
        message_id, raw = drill_mail(tag, number)
        graph.append(mailbox, raw)
        expected.add(message_id)
    graph.delay.update({"value": 0.02, "move": 0.01})  # so a kill lands inside fetching and settling
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    # The child process trusts the test CA for the token endpoint as any `requests` client would.
    env = {"REQUESTS_CA_BUNDLE": str(server_tls.ca)}
    rng = random.Random()
    kills, runs = 0, 0
    try:
        while True:
            runs += 1
            poll = processes.command(["mail", "poll"], url, f"graph-poll-{runs}", **env)
            if kills < KILLS:
                # Inside the poll for sure: once it has fetched (or moved) a few more messages.
                op = rng.choice(("value", "move"))
                target = graph.count(op) + rng.randint(1, 12)
                deadline = time.monotonic() + 60
                while poll.alive and graph.count(op) < target and time.monotonic() < deadline:
                    time.sleep(0.002)
                if poll.alive:
                    poll.kill()
                    kills += 1
                    continue
            assert poll.wait(120) == 0, poll.output()[-3000:]
            if not graph.messages(mailbox):
                break
            assert runs < 20, "the folder never emptied"
    finally:
        graph.delay.clear()
    census = take_census(url, tag, expected)
    report(f"graph poll killed [{url.split(':')[0]}]", census, started, kills=kills, runs=runs,
           fetched=graph.count("value"), moved=graph.count("move"))
    assert graph.messages(mailbox) == [] and len(graph.messages(mailbox, "Processed")) == POLLED
    census.assert_each_once()
    assert kills >= 1  # the drill did interrupt a poll
