"""Limits on what mail can make the desk send (issue 9, item 2; switchboard.outbox.limits),
replayed through the real LMTP receiver and the acting step on both databases: forged and
malformed From lines, floods of new calls, rejections and summaries to one victim, the daily
and desk-wide limits, and the admin form that sets them. Each asserts what is queued in the
outbox (and, where cheap, what a real SMTP server receives) and what the inbound log says."""

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
import time_machine

from switchboard.calls.models import Call
from switchboard.calls.services import log_call
from switchboard.db import db
from switchboard.inbound.models import IncomingAccount, InboundMessage, InboundStatus
from switchboard.inbound.process import process_pending
from switchboard.inbound.store import store_message
from switchboard.outbox import catalogue, limits
from switchboard.outbox.models import AutoReply, OutboxMessage
from switchboard.outbox.sender import send_all_due
from tests.outbox.desk import DESK, desk_server  # noqa: F401
from tests.portal.conftest import field_error, smtp_sink  # noqa: F401
from tests.receiver.conftest import RawLMTP, wait_for

HELP = "help@desk.test"
VICTIM = "victim@victim.example"


def raw_mail(from_line: str, subject: str, n: int = 0, body: str = "Cheap pills, click here.") -> bytes:
    """A mail with the From line exactly as an attacker wrote it (no library tidies it up)."""
    return (f"From: {from_line}\r\nTo: {HELP}\r\nSubject: {subject}\r\n"
            f"Message-ID: <attack-{n}-{abs(hash((from_line, subject)))}@spam.example>\r\n"
            f"Date: Mon, 03 Mar 2025 09:15:00 +0000\r\n\r\n{body}\r\n").encode()


def over_lmtp(receiver, mails: list[bytes]) -> list[InboundMessage]:
    """Delivers `mails` over one LMTP session (as an MTA does) and waits until all are acted on."""
    lmtp = RawLMTP("127.0.0.1", receiver().port)
    try:
        for raw in mails:
            _, answers = lmtp.deliver("attacker@spam.example", [HELP], raw)
            assert [a.code for a in answers] == [250]
    finally:
        lmtp.close()
    return settled(len(mails))


def acted_on(mails: list[bytes]) -> list[InboundMessage]:
    """Stores `mails` and acts on them in one batch (batched writes), as the receiver does
    with mail that arrived together."""
    account = db.session.scalar(sa.select(IncomingAccount).where(IncomingAccount.name == "help"))
    for raw in mails:
        store_message(raw, source="lmtp", account=account, envelope_to=[HELP])
    db.session.commit()
    process_pending(batch=50)
    return settled(len(mails))


def settled(count: int) -> list[InboundMessage]:
    def done():
        rows = db.session.scalars(sa.select(InboundMessage).order_by(InboundMessage.id)).all()
        return rows if len(rows) >= count and all(r.status is not InboundStatus.NEW for r in rows) else None
    rows = wait_for(done)
    assert rows, "the mail was not acted on"
    return rows[-count:]


def queued_to(address: str, message_type=None) -> list[OutboxMessage]:
    db.session.expire_all()
    rows = db.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()
    return [r for r in rows if address in (r.to or []) and (message_type is None or r.message_type == message_type)]


# -- the attacks of the issue -------------------------------------------------------------------

def test_an_empty_element_in_from_no_longer_escapes_the_rejection_limit(app, desk_accounts, receiver,
                                                                        desk_server):
    # Was: the limit was keyed on the stored from_address, NULL here, so 6 of 6 went out.
    rows = over_lmtp(receiver, [raw_mail(f", {VICTIM}", f"Update call 9999 VIAGRA {n}", n) for n in range(6)])
    assert [r.status for r in rows] == [InboundStatus.REJECTED] * 6
    assert len(queued_to(VICTIM, catalogue.EMAIL_REJECTED)) == 3
    assert all("(rejection reply queued)" in r.outcome for r in rows[:3])
    for row in rows[3:]:
        assert f"no reply: limit reached (3 rejections to {VICTIM} in the last hour)" in row.outcome
    # What really leaves the desk: a real SMTP server gets three mails for the victim.
    send_all_due()
    assert sum(VICTIM in m.rcpt_tos for m in desk_server.messages) == 3


def test_a_group_in_from_gets_no_reply_at_all(app, desk_accounts, receiver):
    rows = over_lmtp(receiver, [raw_mail(f"undisclosed-recipients:;, {VICTIM}", f"Log call: WIN BIG {n}", n)
                                for n in range(3)]
                     + [raw_mail(f"undisclosed-recipients:;, {VICTIM}", "Update call 9999 WIN", 9)])
    assert queued_to(VICTIM) == []
    for row in rows:
        assert "no reply: the From line is a group, not a sender" in row.outcome
    # The mail still did what it may: the calls are logged (only the mail is not sent).
    assert [r.status for r in rows] == [InboundStatus.PROCESSED] * 3 + [InboundStatus.REJECTED]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Call)) == 3


def test_five_spam_subjects_log_five_calls_but_send_at_most_three_acknowledgements(
        app, desk_accounts, receiver, desk_server):
    subjects = ["Cheap watches", "You won a prize", "Re: invoice overdue", "Bitcoin doubler", "Hot singles"]
    rows = over_lmtp(receiver, [raw_mail(VICTIM, s, n) for n, s in enumerate(subjects)])
    assert [r.status for r in rows] == [InboundStatus.PROCESSED] * 5
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Call)) == 5  # every call is logged
    acks = queued_to(VICTIM, catalogue.CALL_LOGGED)
    assert len(acks) == 3
    held = [r for r in rows if "no reply: limit reached" in r.outcome]
    assert len(held) == 2
    for row in held:
        assert row.outcome.startswith("Logged CALL-")
        assert f"(no reply: limit reached (3 acknowledgements to {VICTIM} in the last hour))" in row.outcome
    send_all_due()
    assert sum(VICTIM in m.rcpt_tos for m in desk_server.messages) == 3


def test_one_batch_counts_its_own_replies(app, desk_accounts):
    # Acted on together in batched writes, where queries do not see the batch's own rows yet.
    rows = acted_on([raw_mail(VICTIM, f"Log call: spam {n}", n) for n in range(5)]
                    + [raw_mail(VICTIM, f"Update call 9999 spam {n}", 10 + n) for n in range(5)])
    assert len(queued_to(VICTIM, catalogue.CALL_LOGGED)) == 3
    assert len(queued_to(VICTIM, catalogue.EMAIL_REJECTED)) == 3
    assert sum("no reply: limit reached" in r.outcome for r in rows) == 4
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AutoReply)) == 6


def test_summaries_are_limited_too(app, people, desk_accounts, receiver):
    log_call(people["anna"], "Laptop will not boot", customer=people["carol"])
    db.session.commit()
    rows = over_lmtp(receiver, [raw_mail("carol@example.org", "Summary calls", n) for n in range(5)])
    summaries = queued_to("carol@example.org", catalogue.SUMMARY_REPLY)
    assert len(summaries) == 3
    assert [r.outcome for r in rows[:3]] == ["Sent a summary of open calls."] * 3
    for row in rows[3:]:
        assert row.outcome == ("Summary of open calls not sent. (no reply: limit reached "
                               "(3 summaries to carol@example.org in the last hour))")


@pytest.mark.parametrize("from_line", ["me", '"junk"', "a@", "@b", "x@[192.0.2.1]", "<>"])
def test_a_sender_that_is_not_an_address_with_a_domain_is_never_answered(app, desk_accounts, receiver, from_line):
    [row] = over_lmtp(receiver, [raw_mail(from_line, "Update call 9999 hello")])
    db.session.expire_all()
    assert db.session.scalars(sa.select(OutboxMessage)).all() == []  # was: a rejection queued to "me"
    assert "rejection reply queued" not in row.outcome
    if from_line == "me":
        assert row.outcome.endswith("(no reply: 'me' is not an address with a domain)")


@pytest.mark.parametrize("own", [HELP, "printers@support.desk.test", DESK])
def test_mail_from_one_of_our_own_addresses_is_never_answered(app, desk_accounts, receiver, desk_server, own):
    # The incoming account's address, its catch-all domain, the outgoing server's From address.
    rows = over_lmtp(receiver, [raw_mail(own, "Log call: loop?", 1), raw_mail(own, "Update call 9999 loop", 2)])
    assert queued_to(own) == []
    for row in rows:
        assert f"no reply: {own} is one of the desk's own addresses" in row.outcome


def test_a_from_with_two_addresses_answers_neither(app, desk_accounts, receiver):
    rows = over_lmtp(receiver, [raw_mail(f"attacker@spam.example, {VICTIM}", "Log call: hello", 1),
                                raw_mail(f"attacker@spam.example, {VICTIM}", "Update call 9999 hi", 2)])
    db.session.expire_all()
    assert db.session.scalars(sa.select(OutboxMessage)).all() == []
    for row in rows:
        assert "no reply: the From line names 2 addresses" in row.outcome


# -- the periods and the desk-wide cap ----------------------------------------------------------

def test_the_daily_limit_holds_across_hours_and_lets_go_after_a_day(app, desk_accounts):
    start = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
    sent = []
    n = 0
    for hour in range(5):  # three an hour: 3, 6, 9, then 1 more (10 a day), then none
        with time_machine.travel(start + timedelta(minutes=61 * hour + 1), tick=False):
            rows = acted_on([raw_mail(VICTIM, f"Log call: hour {hour} mail {i}", n + i) for i in range(3)])
            n += 3
            sent.append(len(queued_to(VICTIM, catalogue.CALL_LOGGED)))
    assert sent == [3, 6, 9, 10, 10]
    assert f"(no reply: limit reached (10 acknowledgements to {VICTIM} in the last day))" in rows[-1].outcome
    # A day after the first hour's replies, those no longer count.
    with time_machine.travel(start + timedelta(days=1, minutes=2), tick=False):
        acted_on([raw_mail(VICTIM, "Log call: next day", 99)])
        assert len(queued_to(VICTIM, catalogue.CALL_LOGGED)) == 11


def test_the_desk_wide_hourly_cap_holds_for_many_different_senders(app, people, desk_accounts):
    limits.set_limits(people["admin"], desk_hour=4)
    db.session.commit()
    rows = acted_on([raw_mail(f"victim{n}@victims.example", "Log call: spam", n) for n in range(6)])
    db.session.expire_all()
    assert len(db.session.scalars(sa.select(OutboxMessage)
                                  .where(OutboxMessage.message_type == catalogue.CALL_LOGGED)).all()) == 4
    for row in rows[4:]:
        assert row.outcome.endswith("(no reply: limit reached (the desk sent 4 automatic replies in the last hour))")


def test_old_replies_are_pruned(app, desk_accounts):
    with time_machine.travel(datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc), tick=False):
        acted_on([raw_mail(VICTIM, "Log call: long ago", 1)])
    with time_machine.travel(datetime(2026, 3, 3, 8, 0, tzinfo=timezone.utc), tick=False):
        acted_on([raw_mail("someone@example.net", "Log call: today", 2)])
    db.session.expire_all()
    assert db.session.scalars(sa.select(AutoReply.address)).all() == ["someone@example.net"]


# -- the admin form -----------------------------------------------------------------------------

def _limits_form(**values) -> dict:
    form = {f"limits-{name}": str(value) for name, value in limits.limits().items()}
    form.update({f"limits-{name}": value for name, value in values.items()})
    return form


def test_admins_set_the_limits_on_the_notifications_page(app, people, desk_accounts, login):
    portal = login("admin")
    page = portal.get("/admin/mail/notifications").get_data(as_text=True)
    assert "Limits on automatic replies" in page
    assert 'name="limits-per_address_hour"' in page and 'value="3"' in page and 'value="200"' in page
    assert 'name="limits-staff_hour"' in page and 'value="500"' in page

    bad = [({"per_address_hour": "three"}, "limits-per_address_hour", "Not a valid integer value."),
           ({"per_address_hour": ""}, "limits-per_address_hour", "Give a whole number (0: none at all)."),
           ({"desk_hour": "-1"}, "limits-desk_hour",
            "Automatic replies from the whole desk, per hour: give a whole number from 0 to 100000."),
           ({"staff_hour": "100001"}, "limits-staff_hour",
            "Staff mail caused by incoming mail, from the whole desk, per hour: give a whole number from 0 to 100000."),
           ({"per_address_hour": "5", "per_address_day": "4"}, "limits-per_address_day",
            "The limit per day cannot be lower than the limit per hour.")]
    for values, field, message in bad:
        response = portal.post("/admin/mail/notifications/limits", _limits_form(**values))
        assert response.status_code == 422, values
        assert field_error(response.get_data(as_text=True), field) == message
        db.session.rollback()
        assert limits.limits() == {"per_address_hour": 3, "per_address_day": 10, "desk_hour": 200,
                                   "staff_hour": 500}

    # Without the CSRF token nothing changes either.
    response = portal.client.post("/admin/mail/notifications/limits", data=_limits_form(per_address_hour="1"))
    assert response.status_code == 400

    response = portal.post("/admin/mail/notifications/limits",
                           _limits_form(per_address_hour="1", per_address_day="2", desk_hour="50",
                                        staff_hour="60"))
    assert response.status_code == 303
    assert "Reply limits saved." in portal.get("/admin/mail/notifications").get_data(as_text=True)
    db.session.rollback()
    assert limits.limits() == {"per_address_hour": 1, "per_address_day": 2, "desk_hour": 50, "staff_hour": 60}

    # It takes effect: one acknowledgement an hour now.
    rows = acted_on([raw_mail(VICTIM, "Log call: one", 1), raw_mail(VICTIM, "Log call: two", 2)])
    assert len(queued_to(VICTIM, catalogue.CALL_LOGGED)) == 1
    assert rows[1].outcome.endswith(f"(no reply: limit reached (1 acknowledgement to {VICTIM} in the last hour))")


def test_only_admins_may_change_the_limits(app, people, login):
    portal = login("anna")
    response = portal.post("/admin/mail/notifications/limits", _limits_form(per_address_hour="100"))
    assert response.status_code == 403
    db.session.rollback()
    assert limits.limits()["per_address_hour"] == 3


def test_acting_on_one_message_at_a_time_counts_the_same(app, desk_accounts):
    # The fallback when a batch fails: each message alone, its acknowledgement queued inside
    # act() (no batched writes), yet limited by the same rule.
    from switchboard.inbound.process import _process_one

    account = db.session.scalar(sa.select(IncomingAccount).where(IncomingAccount.name == "help"))
    ids = [store_message(raw_mail(VICTIM, f"Log call: alone {n}", n), source="lmtp", account=account,
                         envelope_to=[HELP]).inbound_id for n in range(5)]
    db.session.commit()
    outcomes = [_process_one(i).outcome for i in ids]
    db.session.commit()
    assert len(queued_to(VICTIM, catalogue.CALL_LOGGED)) == 3
    assert [o.endswith(f"(no reply: limit reached (3 acknowledgements to {VICTIM} in the last hour))")
            for o in outcomes] == [False, False, False, True, True]


# -- mail that tells staff ----------------------------------------------------------------------

def test_a_customers_mail_tells_the_group_at_most_the_hourly_limit(app, desk_accounts, people):
    # Each note by mail on an unassigned call mails every member of its group: one mail in,
    # twenty out. A looping or forged customer address must not turn that into a mail bomb.
    from switchboard.history.models import HistoryEntry
    from switchboard.people.services import create_group, create_person

    members = [create_person(f"analyst{i}@desk.test", f"Analyst {i}", analyst=True, customer=False)
               for i in range(20)]
    group = create_group("Big", members=members)
    call = log_call(people["anna"], "Printer", customer=people["carol"], group=group)
    db.session.commit()
    # One at a time, as they arrive over a day's hour (a batch counts the same, but its
    # handlers run after the batch, so the note lands on the batch's first mail naming the call).
    rows = [acted_on([raw_mail(people["carol"].email, f"Update call {call.id}", n,
                                 body=f"Still broken, day {n}.")])[0]
            for n in range(5)]
    db.session.expire_all()
    told = db.session.scalars(sa.select(OutboxMessage)
                              .where(OutboxMessage.message_type == catalogue.CALL_UPDATED_BY_EMAIL)).all()
    assert len(told) == 3 * 20  # three mails' worth, each to the whole group
    assert all("staff not told" not in r.outcome for r in rows[:3])
    for row in rows[3:]:
        assert "Added as a note" in row.outcome
        assert "staff not told by mail: limit reached (3 mails that told staff from carol@example.org" \
            in row.outcome, row.outcome
    # Every mail is still on the call's timeline for the group to read.
    notes = db.session.scalars(sa.select(HistoryEntry).where(HistoryEntry.call_id == call.id)).all()
    assert sum("Still broken, day" in (n.body or "") for n in notes) == 5
    # Not a reply: the desk-wide cap on automatic replies does not count them.
    assert limits._desk_count(limits.limits()["desk_hour"]) == 0


# -- the desk-wide cap on staff mail --------------------------------------------------------------

def _big_group_told_of_calls_logged(admin, size: int = 20):
    """A `size`-analyst group that gets every call logged at help@ ("Call logged" set to mail
    the customer and the group, as an admin may)."""
    from switchboard.outbox import settings
    from switchboard.people.services import create_group, create_person

    members = [create_person(f"analyst{i}@desk.test", f"Analyst {i}", analyst=True, customer=False)
               for i in range(size)]
    group = create_group("Big", members=members)
    account = db.session.scalar(sa.select(IncomingAccount).where(IncomingAccount.name == "help"))
    account.default_group_id = group.id
    settings.set_notification(catalogue.CALL_LOGGED, admin, recipients=["customer", "group_members"])
    db.session.commit()
    return group, {m.email for m in members}


def _staff_told(addresses: set[str]) -> list[OutboxMessage]:
    db.session.expire_all()
    rows = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.message_type == catalogue.CALL_LOGGED)
                              .order_by(OutboxMessage.id)).all()
    return [r for r in rows if set(r.to or []) & addresses]


def test_the_desk_wide_cap_on_staff_mail_holds_for_fifty_forged_senders(app, people, desk_accounts, receiver,
                                                                       desk_server, login):
    # Each mail from a new (forged) sender logs a call that mails all 20 analysts: the
    # per-sender limit never trips, so only a desk-wide cap keeps 50 mails in from being
    # 1,000 mails out. Counted per mail out: 110 an hour lets 5 calls' worth (100) through;
    # a sixth would pass the cap, so its group is told nothing (never half a group).
    group, analysts = _big_group_told_of_calls_logged(people["admin"])
    limits.set_limits(people["admin"], staff_hour=110)
    db.session.commit()
    rows = over_lmtp(receiver, [raw_mail(f"forged{n}@spam{n}.example", f"Log call: you won {n}", n)
                                for n in range(50)])

    assert [r.status for r in rows] == [InboundStatus.PROCESSED] * 50
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Call)) == 50  # nothing sent is lost
    told = _staff_told(analysts)
    assert len(told) == 100
    told_of = sorted(r.call_id for r in told)
    assert len(set(told_of)) == 5 and all(told_of.count(c) == 20 for c in set(told_of))
    held = [r for r in rows if "staff not told by mail: desk-wide limit reached" in r.outcome]
    assert len(held) == 45
    assert all(r.outcome.startswith("Logged CALL-") for r in held)
    assert "(100 of 110 staff mails caused by incoming mail in the last hour; this one would send 20)" \
        in held[-1].outcome, held[-1].outcome
    # The senders' own acknowledgements are replies, under their own limits: all 50 go.
    assert sum(1 for r in rows if "(no reply" in r.outcome) == 0  # all 50 acknowledgements queued
    assert len(_staff_told({f"forged{n}@spam{n}.example" for n in range(50)})) == 50
    # What really leaves the desk: a real SMTP server gets 100 staff mails and 50 acknowledgements.
    send_all_due()
    staff_received = [m for m in desk_server.messages if set(m.rcpt_tos) & analysts]
    assert len(staff_received) == 100
    assert sum(1 for m in desk_server.messages if any(t.endswith(".example") for t in m.rcpt_tos)) == 50

    # The admins see it on the health page (one mark an hour, however many mails were held).
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AutoReply)
                             .where(AutoReply.kind == limits.STAFF_HELD)) == 1
    page = login("admin").get("/admin/health").get_data(as_text=True)
    assert "staff mail caused by incoming mail reached the desk-wide limit (110 an hour)" in page

    # An analyst's call logged in the portal is theirs, not the mail's: the group is mailed.
    portal = login("anna")
    response = portal.post("/calls/new", {"customer_email": "carol@example.org", "summary": "Printer on fire",
                                          "priority": "3", "group": str(group.id)})
    assert response.status_code in (302, 303), response.get_data(as_text=True)
    assert len(_staff_told(analysts)) == 120
    send_all_due()
    assert len([m for m in desk_server.messages if set(m.rcpt_tos) & analysts]) == 120


def test_the_staff_mail_cap_lets_go_after_an_hour_and_leaves_the_per_sender_limit_in_force(
        app, people, desk_accounts):
    _, analysts = _big_group_told_of_calls_logged(people["admin"], size=5)
    limits.set_limits(people["admin"], staff_hour=10)
    db.session.commit()
    start = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
    with time_machine.travel(start, tick=False):
        rows = acted_on([raw_mail(f"forged{n}@spam.example", f"Log call: spam {n}", n) for n in range(3)])
        assert len(_staff_told(analysts)) == 10  # two calls' worth in one batch; the third held
        assert "staff not told by mail: desk-wide limit reached (10 of 10" in rows[2].outcome
    with time_machine.travel(start + timedelta(minutes=61), tick=False):
        # The hour has passed: staff are told again. With the cap far away, one customer's own
        # mail still tells them at most 3 times an hour (the per-sender limit).
        limits.set_limits(people["admin"], staff_hour=100)
        db.session.commit()
        rows = [acted_on([raw_mail(people["carol"].email, f"Log call: mine {n}", 10 + n)])[0] for n in range(4)]
        assert len(_staff_told(analysts)) == 10 + 3 * 5
        assert all("staff not told" not in r.outcome for r in rows[:3])
        assert ("staff not told by mail: limit reached (3 mails that told staff from carol@example.org "
                "in the last hour)") in rows[3].outcome
    # The health page's mark is an hour old by now: nothing to show.
    with time_machine.travel(start + timedelta(minutes=62), tick=False):
        assert limits.staff_mail_held() is None
