"""Batched writes (switchboard.db.batched_writes), which the inbound pipeline
acts in: the services' flushes wait for the end of the block, so do the
handlers of the events they emit, and a block that raises writes nothing."""

import pytest

from switchboard.calls.models import Call
from switchboard.calls.services import log_call
from switchboard.db import batched_writes, db
from switchboard.events import subscribe, _handlers
from switchboard.history.models import EntryKind, HistoryEntry
from switchboard.outbox import catalogue
from switchboard.outbox.models import OutboxMessage
from switchboard.people.services import create_person, find_person, look_up_people


@pytest.fixture
def seen_events():
    seen = []

    def handler(call, actor, **_):
        seen.append((call.id, call.ref))

    subscribe("call_logged", handler)
    yield seen
    _handlers["call_logged"].remove(handler)


def test_writes_and_event_handlers_wait_for_the_end_of_the_block(people, seen_events):
    with batched_writes():
        first = log_call(people["carol"], "Printer jammed", "Tray 2")
        second = log_call(people["dave"], "VPN drops")
        # Nothing written yet: no ids, and the handlers have not run.
        assert first.id is None and second.id is None and seen_events == []
    # One flush for both; then the handlers ran in order and saw the ids.
    assert seen_events == [(first.id, first.ref), (second.id, second.ref)] and first.id < second.id
    # The notification handler's rows were written too, about the right calls.
    acks = db.session.query(OutboxMessage).filter_by(message_type=catalogue.CALL_LOGGED).all()
    assert sorted(a.call_id for a in acks) == [first.id, second.id]
    assert {a.context["call"]["ref"] for a in acks} == {first.ref, second.ref}
    logged = db.session.query(HistoryEntry).filter_by(kind=EntryKind.LOGGED).all()
    assert sorted(e.call_id for e in logged) == [first.id, second.id]


def test_a_block_that_raises_writes_nothing_and_runs_no_handler(people, seen_events):
    with pytest.raises(RuntimeError):
        with batched_writes():
            log_call(people["carol"], "Printer jammed")
            raise RuntimeError("the batch fails")
    db.session.rollback()
    assert db.session.query(Call).count() == 0 and seen_events == []
    # Outside a block the services flush and emit at once, as before.
    call = log_call(people["carol"], "Monitor flickers")
    assert call.id is not None and seen_events == [(call.id, call.ref)]


def test_people_created_in_a_block_are_found_before_they_are_written(app):
    look_up_people(["new@example.net", "nobody@example.net"])
    with batched_writes():
        person = create_person("New@Example.net", "New Person")
        assert person.id is None
        # A query would not see the unwritten row: the transaction's cache does.
        assert find_person("NEW@example.net") is person
        assert find_person("nobody@example.net") is None
    assert person.id is not None and find_person("new@example.net") is person
