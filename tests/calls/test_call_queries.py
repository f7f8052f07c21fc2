"""The call lists an analyst sees: their own work, their groups' queues and
the call list's filters."""

from switchboard.calls.queries import assigned_calls, find_calls, group_queue_calls
from switchboard.calls.services import close_call, forward_call, hold_call, log_call, resolve_call
from switchboard.db import db


def _summaries(query):
    return [c.summary for c in db.session.scalars(query)]


def test_my_work_and_my_groups_queue(people):
    anna, bob, carol = people["anna"], people["bob"], people["carol"]
    urgent = log_call(anna, "Server down", customer=carol, priority_id=1, analyst=anna)
    waiting = log_call(anna, "Toner", customer=carol, analyst=anna)
    hold_call(waiting, anna, "Waiting for the supplier")
    done = log_call(anna, "Password reset", customer=carol, analyst=anna)
    resolve_call(done, anna, "Reset")
    log_call(anna, "Bob's own", customer=carol, analyst=bob)
    queued = log_call(anna, "Unassigned in Service Desk", customer=carol, group=people["service_desk"])
    log_call(anna, "Unassigned in Network", customer=carol, group=people["network"])
    log_call(anna, "Taken in Service Desk", customer=carol, group=people["service_desk"], analyst=bob)
    closed = log_call(anna, "Closed in Service Desk", customer=carol, group=people["service_desk"])
    close_call(closed, anna)

    # Pending counts as work; resolved waits on the customer. Urgent first.
    assert _summaries(assigned_calls(anna)) == ["Server down", "Toner"]
    assert _summaries(group_queue_calls(anna)) == ["Unassigned in Service Desk"]
    assert _summaries(group_queue_calls(bob)) == ["Unassigned in Service Desk", "Unassigned in Network"]

    forward_call(queued, anna, analyst=anna, group=people["service_desk"])
    assert _summaries(group_queue_calls(anna)) == []
    assert urgent.summary in _summaries(assigned_calls(anna))


def test_call_list_filters(people):
    anna, bob, carol = people["anna"], people["bob"], people["carol"]
    printer = log_call(anna, "Printer 100% jammed", customer=carol, analyst=anna)
    vpn = log_call(anna, "VPN drops", customer=carol, group=people["network"], analyst=bob)
    mail = log_call(anna, "Mail slow", customer=carol)
    close_call(mail, anna)

    assert set(_summaries(find_calls(anna))) == {"Printer 100% jammed", "VPN drops"}
    assert _summaries(find_calls(anna, status="closed")) == ["Mail slow"]
    assert len(_summaries(find_calls(anna, status="all"))) == 3
    assert _summaries(find_calls(anna, scope="mine")) == ["Printer 100% jammed"]
    assert _summaries(find_calls(anna, scope="groups")) == []
    assert _summaries(find_calls(bob, scope="groups")) == ["VPN drops"]
    assert _summaries(find_calls(anna, text="vpn")) == ["VPN drops"]
    # A reference finds the call; % is text, not a wildcard.
    assert _summaries(find_calls(anna, text=f"CALL-{vpn.id}")) == ["VPN drops"]
    assert _summaries(find_calls(anna, text=str(printer.id), status="all"))[0] == "Printer 100% jammed"
    assert _summaries(find_calls(anna, text="100%")) == ["Printer 100% jammed"]
    assert _summaries(find_calls(anna, text="0%j")) == []
    # Unknown filter words fall back to the defaults.
    assert set(_summaries(find_calls(anna, status="nonsense", scope="nonsense"))) == {
        "Printer 100% jammed",
        "VPN drops",
    }
