"""A call's SLA clock through the call services, with a frozen clock: which SLA a call gets,
its due times in business time, the pending pause, a priority change, responding, resolving."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine

from switchboard.calls.models import CallStatus
from switchboard.calls.services import (
    change_priority, close_call, hold_call, log_call, reopen_call, resolve_call, resume_call, update_call,
)
from switchboard.db import db
from switchboard.slm import admin

HOUR = timedelta(hours=1)


def london(*fields):
    return datetime(*fields, tzinfo=ZoneInfo("Europe/London"))


def log_at(instant, people, **kwargs):
    with time_machine.travel(instant, tick=False):
        call = log_call(people["anna"], "Printer jammed", customer=people["carol"], **kwargs)
        db.session.commit()
    return call


def act_at(instant, action, *args, **kwargs):
    with time_machine.travel(instant, tick=False):
        result = action(*args, **kwargs)
        db.session.commit()
    return result


def test_a_call_logged_out_of_hours_is_due_in_business_time(people, make_sla, office):
    make_sla(calendar_id=office.id, response=HOUR.seconds, fix=4 * 3600)
    call = log_at(london(2026, 6, 9, 20, 0), people)  # Tuesday evening
    assert call.sla.name == "Standard"
    assert call.response_due_at == london(2026, 6, 10, 10, 0)
    assert call.fix_due_at == london(2026, 6, 10, 13, 0)
    assert call.next_due_at == london(2026, 6, 10, 9, 30)  # response level 1, 50%


def test_a_call_logged_on_friday_afternoon_is_due_on_monday(people, make_sla, office):
    make_sla(calendar_id=office.id, fix=4 * 3600)
    call = log_at(london(2026, 6, 12, 15, 0), people)
    assert call.response_due_at is None
    assert call.fix_due_at == london(2026, 6, 15, 11, 0)


def test_across_the_dst_change_in_london(people, make_sla, office):
    make_sla(calendar_id=office.id, fix=2 * 3600)
    call = log_at(london(2026, 3, 27, 16, 0), people)  # Friday, GMT; the clocks go forward on Sunday
    assert call.fix_due_at == london(2026, 3, 30, 10, 0)  # Monday 10:00 BST (09:00 UTC)


def test_across_the_dst_change_in_new_york(people, make_sla):
    calendar = admin.save_calendar(people["admin"], "NYC", "America/New_York", {d: "09:00-17:00" for d in range(5)})
    make_sla(calendar_id=calendar.id, fix=2 * 3600)
    nyc = ZoneInfo("America/New_York")
    call = log_at(datetime(2026, 10, 30, 16, 0, tzinfo=nyc), people)
    assert call.fix_due_at == datetime(2026, 11, 2, 10, 0, tzinfo=nyc)


def test_a_pending_spell_stops_the_clock_and_the_time_left_resumes(people, make_sla, office):
    make_sla(calendar_id=office.id, fix=4 * 3600)
    call = log_at(london(2026, 6, 8, 9, 0), people)  # Monday
    act_at(london(2026, 6, 8, 10, 0), hold_call, call, people["anna"], "Waiting for the customer's photo")
    assert call.status is CallStatus.PENDING
    assert call.fix_due_at is None and call.next_due_at is None
    assert call.sla_used_seconds == 3600
    act_at(london(2026, 6, 9, 9, 0), resume_call, call, people["anna"])
    assert call.fix_due_at == london(2026, 6, 9, 12, 0)  # 3 business hours left, from Tuesday 09:00


def test_a_priority_change_recomputes_the_targets_keeping_the_time_used(people, make_sla, office):
    sla = make_sla(calendar_id=office.id, fix=8 * 3600)
    admin.save_sla(people["admin"], sla.name, calendar_id=office.id, sla=sla, is_default=True,
                   targets={3: (None, 8 * 3600), 1: (None, 4 * 3600)})
    db.session.commit()
    call = log_at(london(2026, 6, 8, 9, 0), people, priority_id=3)
    assert call.fix_due_at == london(2026, 6, 8, 17, 0)
    act_at(london(2026, 6, 8, 11, 0), change_priority, call, people["anna"], 1, "Whole floor affected")
    assert call.fix_due_at == london(2026, 6, 8, 13, 0)  # 4 h target, 2 h used


def test_responding_stops_the_response_target_and_an_internal_note_does_not(people, make_sla):
    make_sla(response=3600, fix=8 * 3600)
    start = datetime(2026, 6, 8, 9, 0, tzinfo=ZoneInfo("UTC"))
    call = log_at(start, people)
    assert call.next_due_at == start + 30 * timedelta(minutes=1)
    act_at(start + timedelta(minutes=5), update_call, call, people["anna"], "Looking at logs", internal=True)
    assert call.first_response_at is None and call.next_due_at == start + timedelta(minutes=30)
    act_at(start + timedelta(minutes=10), update_call, call, people["anna"], "We are on it")
    assert call.first_response_at is not None
    assert call.next_due_at == start + 4 * HOUR  # the fix target's 50%


def test_resolving_or_closing_stops_both_and_reopening_resumes_the_fix_target(people, make_sla):
    make_sla(response=3600, fix=8 * 3600)
    start = datetime(2026, 6, 8, 9, 0, tzinfo=ZoneInfo("UTC"))
    call = log_at(start, people)
    act_at(start + 2 * HOUR, resolve_call, call, people["anna"], "Restarted the spooler")
    assert call.next_due_at is None
    act_at(start + 5 * HOUR, close_call, call, people["carol"])
    assert call.next_due_at is None
    act_at(start + 30 * HOUR, reopen_call, call, people["carol"], "Jammed again")
    assert call.fix_due_at == start + 36 * HOUR  # 6 h left
    assert call.next_due_at == start + 32 * HOUR  # 50% of 8 h reached 2 h after reopening


def test_the_sla_is_the_customers_then_the_groups_then_the_desks(people, make_sla):
    desk = make_sla(fix=8 * 3600, name="Desk")
    gold = make_sla(fix=3600, name="Gold", default=False)
    network = make_sla(fix=2 * 3600, name="Network", default=False)
    admin.set_default_sla(people["admin"], people["carol"], gold)
    admin.set_default_sla(people["admin"], people["network"], network)
    db.session.commit()
    assert log_call(people["anna"], "a", customer=people["carol"], group=people["network"]).sla == gold
    assert log_call(people["anna"], "b", customer=people["dave"], group=people["network"]).sla == network
    assert log_call(people["anna"], "c", customer=people["dave"]).sla == desk


def test_an_sla_change_recomputes_the_targets_keeping_the_time_used(people, make_sla):
    from switchboard.calls.services import change_sla

    make_sla(fix=8 * 3600, name="Standard")
    gold = make_sla(fix=4 * 3600, name="Gold", default=False)
    start = datetime(2026, 6, 8, 9, 0, tzinfo=ZoneInfo("UTC"))
    call = log_at(start, people)
    act_at(start + HOUR, change_sla, call, people["anna"], gold.id, "Customer on the Gold contract")
    assert call.sla == gold
    assert call.fix_due_at == start + 4 * HOUR  # 3 h left of Gold's 4 h
    assert call.next_due_at == start + 2 * HOUR  # Gold's 50%
