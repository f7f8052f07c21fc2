"""The life of a call through the services: what an analyst or customer
would see in the call and its timeline."""

import pytest

from switchboard.calls.models import CallStatus
from switchboard.calls.services import (
    change_priority,
    close_call,
    forward_call,
    get_call,
    hold_call,
    log_call,
    reopen_call,
    resolve_call,
    resume_call,
    update_call,
)
from switchboard.db import db
from switchboard.errors import InvalidInput, InvalidTransition, NotFound, PermissionDenied
from switchboard.history.models import EntryKind
from switchboard.history.services import NewAttachment, timeline


def test_full_life_of_a_call_is_in_its_timeline(people):
    anna, carol, bob = people["anna"], people["carol"], people["bob"]
    call = log_call(anna, "Printer jammed", "Paper stuck in tray 2", customer=carol, priority_id=2)
    forward_call(call, anna, analyst=bob, group=people["service_desk"], note="Bob knows printers")
    update_call(call, bob, "Ordered a new roller", internal=True)
    resolve_call(call, bob, "Roller replaced")
    close_call(call, carol, "Works now, thanks")
    db.session.commit()

    call = get_call(call.id)
    assert call.ref == f"CALL-{call.id}"
    assert call.status is CallStatus.CLOSED
    assert call.priority.name == "P2 High"
    assert call.assigned_analyst == bob and call.assigned_group == people["service_desk"]
    assert call.first_response_at is not None and call.resolved_at and call.closed_at
    kinds = [e.kind for e in timeline(call)]
    assert kinds == [EntryKind.LOGGED, EntryKind.FORWARD, EntryKind.NOTE, EntryKind.STATUS, EntryKind.STATUS]
    summaries = [e.summary for e in timeline(call)]
    assert "Forwarded to Bob Analyst / Service Desk" in summaries
    assert "Status Open → Open/Resolved" in summaries and "Status Open/Resolved → Closed" in summaries
    # Customers do not see internal notes.
    assert EntryKind.NOTE not in [e.kind for e in timeline(call, include_internal=False)]


def test_reopen_clears_resolution_and_closed_call_refuses_updates(people):
    anna, carol = people["anna"], people["carol"]
    call = log_call(carol, "VPN drops")
    close_call(call, anna)
    with pytest.raises(InvalidTransition, match="closed"):
        update_call(call, carol, "still broken")
    with pytest.raises(InvalidTransition):
        close_call(call, anna)
    reopen_call(call, carol, "It happened again")
    assert call.status is CallStatus.OPEN and call.closed_at is None and call.resolved_at is None
    update_call(call, carol, "Happens every hour")


def test_customer_update_on_resolved_call_reopens_it(people):
    call = log_call(people["anna"], "Mail slow", customer=people["carol"])
    resolve_call(call, people["anna"], "Cleared the queue")
    update_call(call, people["carol"], "Still slow for me")
    assert call.status is CallStatus.OPEN
    assert timeline(call)[-1].summary == "Status Open/Resolved → Open"


def test_pending_stops_and_resumes(people):
    call = log_call(people["anna"], "New laptop", customer=people["carol"])
    with pytest.raises(InvalidInput):
        hold_call(call, people["anna"], "")
    hold_call(call, people["anna"], "Waiting for the supplier")
    assert call.status is CallStatus.PENDING
    with pytest.raises(InvalidTransition):
        hold_call(call, people["anna"], "again")
    resume_call(call, people["anna"])
    assert call.status is CallStatus.OPEN


def test_customer_rules(people):
    carol, dave, anna = people["carol"], people["dave"], people["anna"]
    call = log_call(carol, "Screen flickers")
    assert call.customer == carol and call.logged_by == carol
    with pytest.raises(PermissionDenied, match="your own"):
        update_call(call, dave, "me too")
    with pytest.raises(PermissionDenied):
        close_call(call, dave)
    with pytest.raises(PermissionDenied):
        get_call(call.id, dave)
    with pytest.raises(PermissionDenied):
        forward_call(call, carol, analyst=anna)
    with pytest.raises(PermissionDenied):
        resolve_call(call, carol, "fixed it myself")
    with pytest.raises(PermissionDenied):
        log_call(carol, "For Dave", customer=dave)
    # A customer's "internal" note is not hidden from the customer.
    entry = update_call(call, carol, "more detail", internal=True)
    assert entry.internal is False


def test_bad_input_changes_nothing(people):
    anna = people["anna"]
    with pytest.raises(InvalidInput) as err:
        log_call(anna, "   ")
    assert err.value.field == "summary"
    call = log_call(anna, "Keyboard", customer=people["carol"])
    with pytest.raises(InvalidInput):
        forward_call(call, anna)
    with pytest.raises(InvalidInput):
        forward_call(call, anna, analyst=people["carol"])
    with pytest.raises(InvalidInput):
        forward_call(call, anna, analyst=people["anna"], group=people["network"])
    with pytest.raises(InvalidInput):
        resolve_call(call, anna, " ")
    with pytest.raises(InvalidInput):
        update_call(call, anna, "")
    assert call.assigned_analyst is None and call.status is CallStatus.OPEN
    assert len(timeline(call)) == 1
    with pytest.raises(NotFound):
        get_call(9999)


def test_priority_change_and_attachments_are_deduplicated(people, backend):
    anna = people["anna"]
    shot = NewAttachment("screen.png", "image/png", b"\x89PNG fake bytes")
    call = log_call(anna, "Error dialog", customer=people["carol"], attachments=[shot])
    update_call(call, anna, "same screenshot again", attachments=[shot])
    change_priority(call, anna, 1, "CEO affected")
    db.session.commit()
    from switchboard.blobs import Blob, store

    assert db.session.query(Blob).count() == 1
    entries = timeline(call)
    assert entries[0].attachments[0].filename == "screen.png"
    assert store.get(entries[1].attachments[0].blob_sha256) == b"\x89PNG fake bytes"
    assert call.priority_id == 1 and entries[-1].summary == "Priority P3 Medium → P1 Critical"
