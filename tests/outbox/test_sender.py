"""The sender job against a real SMTP server on loopback: what recipients receive (headers,
threading, token), and what happens on every kind of failure."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from switchboard.calls.services import close_call, log_call, resolve_call
from switchboard.db import db, utcnow
from switchboard.history.models import EntryKind
from switchboard.history.services import timeline
from switchboard.outbox import catalogue, sender
from switchboard.outbox.models import OutboxMessage, OutboxStatus, OutgoingServer
from switchboard.outbox.queue import queue_mail
from switchboard.outbox.sender import send_due
from switchboard.outbox.servers import add_server
from switchboard.outbox.smtp import Transport

from .conftest import SINK_PASSWORD, SINK_USER
from .desk import DESK, DEFERRED, FAILED, SENT, desk_server, make_due, row, rows, send  # noqa: F401
from .smtp_sink import free_port

CAROL, DAVE = "carol@example.org", "dave@example.org"


def _plain_mail(to=(CAROL,), **kwargs) -> OutboxMessage:
    mail = queue_mail(catalogue.MANUAL_MESSAGE, list(to), subject="About your printer",
                      text="The engineer comes at nine.\n", automatic=False, **kwargs)
    db.session.commit()
    return mail


def _text(message) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


# -- what arrives ------------------------------------------------------------------------------

def test_mails_about_one_call_thread_under_each_other_with_stable_ids(desk_server, people):
    anna, carol = people["anna"], people["carol"]
    call = log_call(anna, "Printer on floor 3 jams", "Every page.", customer=carol)
    db.session.commit()
    assert send().sent == 1
    resolve_call(call, anna, "Replaced the fuser.")
    close_call(call, anna)
    db.session.commit()
    assert send().sent == 2

    logged, resolved, closed = rows()
    received = [m.message for m in desk_server.messages]
    assert [m["Message-ID"] for m in received] == [logged.message_id, resolved.message_id, closed.message_id]
    first, second, third = received
    assert first["In-Reply-To"] is None and first["References"] is None
    assert second["In-Reply-To"] == logged.message_id
    assert second["References"] == logged.message_id
    assert third["In-Reply-To"] == resolved.message_id
    assert third["References"].split() == [logged.message_id, resolved.message_id]
    for message, mail in zip(received, (logged, resolved, closed)):
        assert message["From"] == f"Acme Service Desk <{DESK}>"
        assert message["To"] == CAROL
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["X-Auto-Response-Suppress"] == "All"
        assert message["X-Switchboard-Origin"]
        assert message["Subject"].endswith(f"[SB-{mail.reply_token}]")
        assert f"[SB-{mail.reply_token}]" in _text(message)
    assert first["Subject"] == f"{call.ref} logged: Printer on floor 3 jams [SB-{logged.reply_token}]"
    assert "Hello Carol Customer" in _text(first)
    # The customer has no login: their link opens the call's read-only page (issue 12).
    assert "/follow/" in _text(first) and f"/calls/{call.id}" not in _text(first)
    assert f"Reopen call {call.id} [SB-{resolved.reply_token}]" in _text(second).replace("%20", " ").replace(
        "%5B", "[").replace("%5D", "]")
    assert all(m.mail_from == DESK and m.rcpt_tos == [CAROL] for m in desk_server.messages)
    assert [r.status for r in rows()] == [SENT, SENT, SENT]
    assert all(r.attempts == 1 and r.sent_at and r.server_name == "sink" for r in rows())


def test_sent_mail_shows_on_the_timeline_without_its_token(desk_server, people):
    call = log_call(people["anna"], "VPN drops", customer=people["carol"])
    db.session.commit()
    send()
    [mail] = rows()
    [entry] = [e for e in timeline(call) if e.kind is EntryKind.EMAIL_OUT]
    assert entry.summary == f"Mail sent to {CAROL}: {call.ref} logged: VPN drops"
    assert not entry.internal  # the customer may see what we sent them
    assert "We have logged your call" in entry.body
    assert mail.reply_token not in entry.summary + entry.body
    assert entry.details["message_id"] == mail.message_id


def test_manual_mail_carries_no_auto_submitted(desk_server, app):
    _plain_mail()
    send()
    [received] = desk_server.messages
    assert received.message["Auto-Submitted"] is None
    assert received.message["X-Auto-Response-Suppress"] is None
    assert received.message["X-Switchboard-Origin"]  # still ours, so it never loops back as a call


@pytest.mark.parametrize("message_type", list(catalogue.MessageType), ids=lambda t: t.name.lower())
def test_every_message_type_goes_out_from_its_default_template(desk_server, app, message_type):
    info = catalogue.get(message_type)
    sample = catalogue.sample_variables(message_type)
    stored = {k: v for k, v in sample.items() if k not in ("desk", "recipient", "token")}
    mail = queue_mail(message_type, [CAROL], template_key=info.key, context=catalogue.snapshot(stored),
                      automatic=info.automatic)
    db.session.commit()
    assert send().sent == 1

    expected = catalogue.render_message(message_type, stored | catalogue.base_variables(
        desk_name=app.config["DESK_NAME"], desk_address=DESK, desk_url="", recipient=CAROL,
        token=mail.reply_token))
    [received] = desk_server.messages
    message = received.message
    # .strip(): the email package folds a subject that fits one continuation line as
    # "Subject:<CRLF> <subject>", which unfolds with a leading space (RFC 5322 allows it).
    assert message["Subject"].strip() == f"{expected.subject} [SB-{mail.reply_token}]"
    assert _text(message).startswith(expected.text.rstrip())
    assert (message.get_body(("html",)) is not None) == (expected.html is not None)
    assert message["Auto-Submitted"] == info.auto_submitted
    assert message["Message-ID"] == mail.message_id


def test_a_template_that_cannot_render_fails_its_row_and_sends_nothing_broken(desk_server, people):
    broken = queue_mail(catalogue.CALL_LOGGED, [CAROL], template_key="call_logged", context={"token": "x"})
    fine = _plain_mail(to=[DAVE])
    report = send()
    assert (report.sent, report.failed) == (1, 1)
    assert row(broken.id).status is FAILED
    assert row(broken.id).last_message.startswith("template error:")
    assert "call" in row(broken.id).last_message
    assert [m.rcpt_tos for m in desk_server.messages] == [[DAVE]]
    assert row(fine.id).status is SENT


def test_attachments_and_tls_with_auth(smtp_sink_starttls_auth, test_pki, app):
    add_server("relay", "localhost", port=smtp_sink_starttls_auth.port, security="starttls",
               username=SINK_USER, password=SINK_PASSWORD, from_address=DESK,
               trusted_ca_pem=test_pki.ca_file.read_text())
    stored = db.session.scalar(sa.select(OutgoingServer.password_encrypted))
    assert SINK_PASSWORD not in stored
    from switchboard.blobs import store

    sha = store.put(b"%PDF-1.4 quote")
    _plain_mail(attachments=[{"sha256": sha, "filename": "quote.pdf", "content_type": "application/pdf"}])
    assert send().sent == 1
    [received] = smtp_sink_starttls_auth.messages
    assert received.tls and received.login == SINK_USER
    [part] = received.message.iter_attachments()
    assert part.get_filename() == "quote.pdf" and part.get_content() == b"%PDF-1.4 quote"


# -- when things go wrong ------------------------------------------------------------------------

def test_451_defers_and_the_mail_goes_out_once_its_time_has_come(desk_server, app):
    mail = _plain_mail()
    desk_server.faults.data_reply = "451 4.3.0 Try again later"
    report = send()
    assert (report.sent, report.deferred) == (0, 1)
    deferred = row(mail.id)
    assert deferred.status is DEFERRED and deferred.last_code == 451 and deferred.attempts == 1
    wait = deferred.next_attempt_at - utcnow()
    assert timedelta(seconds=50) < wait <= timedelta(seconds=60)

    desk_server.faults.data_reply = None
    assert send().claimed == 0  # not due yet
    make_due(mail.id)
    assert send().sent == 1
    [received] = desk_server.messages
    assert received.message["Message-ID"] == mail.message_id
    assert row(mail.id).status is SENT and row(mail.id).attempts == 2


def test_back_off_grows_then_the_mail_fails(desk_server, app, monkeypatch):
    mail = _plain_mail()
    desk_server.faults.rcpt_replies = {CAROL: "450 4.2.1 Mailbox busy"}
    waits = []
    for _ in range(5):
        send()
        deferred = row(mail.id)
        assert deferred.status is DEFERRED
        waits.append(round((deferred.next_attempt_at - utcnow()).total_seconds() / 60))
        make_due(mail.id)
    assert waits == [1, 5, 15, 60, 240]
    assert send().failed == 1
    failed = row(mail.id)
    assert failed.status is FAILED and failed.attempts == 6
    assert failed.last_message.startswith("gave up (6 attempts)")
    assert desk_server.messages == []


def test_the_attempt_limit_is_configurable(desk_server, app, monkeypatch):
    monkeypatch.setitem(app.config, "OUTBOX_MAX_ATTEMPTS", 2)
    mail = _plain_mail()
    desk_server.faults.data_reply = "421 4.3.2 Shutting down"
    send()
    make_due(mail.id)
    send()
    assert row(mail.id).status is FAILED and row(mail.id).attempts == 2


def test_550_fails_at_once_and_says_so_on_the_timeline(desk_server, people):
    call = log_call(people["anna"], "Printer", customer=people["carol"])
    db.session.commit()
    desk_server.faults.rcpt_replies = {CAROL: "550 5.1.1 No such user"}
    report = send()
    assert (report.sent, report.failed, report.deferred) == (0, 1, 0)
    [mail] = rows()
    assert mail.status is FAILED and mail.attempts == 1 and mail.last_code == 550
    assert "No such user" in mail.last_message
    assert mail.recipient_results[CAROL]["outcome"] == "permanent"
    [entry] = [e for e in timeline(call) if e.kind is EntryKind.EMAIL_OUT]
    assert entry.internal and entry.summary.startswith(f"Mail to {CAROL} not delivered")
    make_due(mail.id)
    assert send().claimed == 0  # failed stays failed until an admin requeues it


def test_one_of_two_recipients_refused_for_good(desk_server, app):
    mail = _plain_mail(to=[CAROL, DAVE])
    desk_server.faults.rcpt_replies = {DAVE: "550 5.1.1 No such user"}
    assert send().sent == 1
    [received] = desk_server.messages
    assert received.rcpt_tos == [CAROL]
    assert received.message["To"] == f"{CAROL}, {DAVE}"
    sent = row(mail.id)
    assert sent.status is SENT
    assert sent.recipient_results[CAROL]["outcome"] == "sent"
    assert sent.recipient_results[DAVE] == {"outcome": "permanent", "code": 550, "message": "5.1.1 No such user"}
    assert "refused for dave@example.org" in sent.last_message


def test_one_of_two_recipients_refused_for_now_gets_the_same_mail_later(desk_server, app):
    mail = _plain_mail(to=[CAROL, DAVE])
    desk_server.faults.rcpt_replies = {DAVE: "451 4.2.0 Mailbox busy"}
    assert send().deferred == 1
    assert row(mail.id).status is DEFERRED
    assert row(mail.id).sent_at is not None  # carol has it
    desk_server.faults.rcpt_replies = {}
    make_due(mail.id)
    assert send().sent == 1
    first, second = desk_server.messages
    assert first.rcpt_tos == [CAROL] and second.rcpt_tos == [DAVE]  # nobody gets it twice
    assert first.message["Message-ID"] == second.message["Message-ID"] == mail.message_id
    results = row(mail.id).recipient_results
    assert {a: r["outcome"] for a, r in results.items()} == {CAROL: "sent", DAVE: "sent"}


def test_first_server_down_the_second_is_used(desk_server, app):
    add_server("primary", "127.0.0.1", port=free_port(), security="none", from_address=DESK,
               priority=1, timeout_seconds=2)
    db.session.commit()
    mails = [_plain_mail(), _plain_mail(to=[DAVE])]
    assert send().sent == 2
    assert len(desk_server.messages) == 2 and desk_server.connections == 1
    assert [row(m.id).server_name for m in mails] == ["sink", "sink"]


def test_no_server_reachable_keeps_the_mail_without_using_its_attempts(app):
    add_server("down", "127.0.0.1", port=free_port(), security="none", from_address=DESK, timeout_seconds=2)
    mail = _plain_mail()
    report = send()
    assert report.unreachable and report.sent == 0 and report.deferred == 1
    waiting = row(mail.id)
    assert waiting.status is DEFERRED and waiting.attempts == 0
    assert "connection refused" in " ".join(report.problems)


def test_no_server_configured_reports_unreachable_and_claims_nothing(app):
    mail = _plain_mail()
    report = send_due()
    assert report.unreachable and report.claimed == 0
    assert row(mail.id).status is OutboxStatus.QUEUED


def test_connection_dropped_mid_data_defers_then_sends_the_same_message(desk_server, app):
    mail = _plain_mail()
    desk_server.faults.drop_in_data = True
    assert send().deferred == 1
    assert row(mail.id).status is DEFERRED and "connection lost" in row(mail.id).last_message
    desk_server.faults.drop_in_data = False
    make_due(mail.id)
    assert send().sent == 1
    [received] = desk_server.messages
    assert received.message["Message-ID"] == mail.message_id


class _Killed(BaseException):
    """The sender process dying (kill -9) at a chosen point."""


def test_a_killed_sender_leaves_rows_that_are_reclaimed_after_the_lease(desk_server, app, monkeypatch):
    first, second = _plain_mail(), _plain_mail(to=[DAVE])

    class DiesAfterOneMail(Transport):
        def send(self, *args):
            if desk_server.messages:
                raise _Killed()
            return super().send(*args)

    monkeypatch.setattr(sender, "Transport", DiesAfterOneMail)
    with pytest.raises(_Killed):
        send_due(lease_seconds=60)
    db.session.rollback()
    monkeypatch.undo()
    # The first mail went out and was marked at once; the sender died before the second.
    assert [r.status for r in rows()] == [SENT, OutboxStatus.SENDING]
    assert len(desk_server.messages) == 1
    assert send().claimed == 0  # the lease still holds

    db.session.execute(sa.update(OutboxMessage).values(lease_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert send().sent == 1
    ids = [m.message["Message-ID"] for m in desk_server.messages]
    assert ids == [first.message_id, second.message_id]  # nothing twice
    assert [(r.status, r.attempts) for r in rows()] == [(SENT, 1), (SENT, 2)]


def test_a_sender_killed_between_the_servers_250_and_its_mark_resends_only_that_mail(desk_server, app,
                                                                                      monkeypatch):
    mails = [_plain_mail(to=[f"customer{i}@example.org"]) for i in range(4)]
    real_flush = sender._Marks.flush

    def dies_at_the_third_mark(marks, **kwargs):
        if len(desk_server.messages) == 3:
            raise _Killed()
        real_flush(marks, **kwargs)

    monkeypatch.setattr(sender._Marks, "flush", dies_at_the_third_mark)
    with pytest.raises(_Killed):
        send_due(lease_seconds=60)
    db.session.rollback()
    monkeypatch.undo()
    assert [r.status for r in rows()] == [SENT, SENT, OutboxStatus.SENDING, OutboxStatus.SENDING]

    db.session.execute(sa.update(OutboxMessage).values(lease_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert send().sent == 2
    ids = [m.message["Message-ID"] for m in desk_server.messages]
    # The one in flight went twice (same Message-ID: mail clients show it once), no other.
    assert ids == [m.message_id for m in mails[:3]] + [mails[2].message_id, mails[3].message_id]
    assert {r.status for r in rows()} == {SENT}


def test_a_slow_batch_stops_before_its_lease_runs_out(desk_server, app, monkeypatch):
    for _ in range(3):
        _plain_mail()
    monkeypatch.setattr(sender, "LEASE_SAFETY", 0.0)  # the lease is "nearly gone" at once
    report = send_due()
    assert report.claimed == 3 and report.sent == 0
    # Handed back for the next batch at once, not counted as tries.
    assert [(r.status, r.attempts) for r in rows()] == [(OutboxStatus.QUEUED, 0)] * 3
    assert desk_server.messages == []
    monkeypatch.undo()
    assert send().sent == 3


def test_mail_too_old_fails_and_an_admins_requeue_starts_the_clock_again(desk_server, people, app):
    from switchboard.outbox.settings import requeue

    mail = _plain_mail()
    db.session.execute(sa.update(OutboxMessage).values(created_at=utcnow() - timedelta(hours=49)))
    db.session.commit()
    desk_server.faults.data_reply = "451 4.3.0 Try again later"
    send()
    assert row(mail.id).status is FAILED and row(mail.id).last_message.startswith("gave up (too old)")
    requeue(mail.id, people["admin"])
    db.session.commit()
    send()
    assert row(mail.id).status is DEFERRED  # young again: it gets its tries


def test_connections_are_reused_across_batches(desk_server, app):
    for i in range(25):
        _plain_mail(to=[f"customer{i}@example.org"])
    report = send(limit=10)
    assert report.sent == 25
    assert desk_server.connections == 1
