"""The LMTP server through a real socket: what an MTA sees (its replies) and
what the desk then holds (stored messages, calls)."""

import os
import signal
import smtplib
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from switchboard.blobs import Blob
from switchboard.calls.models import Call
from switchboard.db import db
from switchboard.inbound.models import InboundMessage

from .conftest import make_mail, storage_fails, wait_for

ROOT = Path(__file__).resolve().parents[2]


def count(model) -> int:
    db.session.rollback()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def inbound_rows() -> list[InboundMessage]:
    db.session.rollback()
    return list(db.session.scalars(sa.select(InboundMessage).order_by(InboundMessage.id)))


def test_mail_for_a_desk_address_is_acknowledged_stored_and_logs_a_call(app, desk_accounts, receiver):
    lmtp = receiver()
    with lmtp.smtp() as client:
        refused = client.sendmail("carol@example.org", ["help@desk.test"], make_mail())
    assert refused == {}
    call = wait_for(lambda: db.session.scalar(sa.select(Call)))
    assert call is not None and call.summary == "printer jammed" and call.source == "email"
    [row] = inbound_rows()
    assert (row.source, row.status.value, row.account_id) == ("lmtp", "processed", desk_accounts["help"])
    assert row.envelope_from == "carol@example.org" and row.envelope_to == ["help@desk.test"]
    assert call.ref in row.outcome


def test_unknown_recipient_is_refused_with_550_and_nothing_is_stored(app, desk_accounts, receiver):
    lmtp = receiver()
    with lmtp.smtp() as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail("carol@example.org", ["nobody@desk.test"], make_mail())
    code, text = refused.value.recipients["nobody@desk.test"]
    assert code == 550 and text.startswith(b"5.1.1")
    assert count(InboundMessage) == 0


def test_a_deactivated_account_no_longer_receives(app, desk_accounts, receiver):
    from switchboard.inbound.accounts import deactivate_account, get_account

    deactivate_account(get_account("sales"))
    db.session.commit()
    raw = receiver().raw()
    rcpt, _ = raw.deliver("carol@example.org", ["sales@desk.test"], make_mail())
    raw.close()
    assert rcpt[0].code == 550
    assert count(InboundMessage) == 0


def test_catch_all_domain_takes_any_address_there(app, desk_accounts, receiver):
    lmtp = receiver()
    with lmtp.smtp() as client:
        assert client.sendmail("dave@example.org", ["Printers@Support.Desk.Test"], make_mail()) == {}
    [row] = inbound_rows()
    assert row.account_id == desk_accounts["help"]


def test_every_recipient_gets_its_own_reply_after_data(app, desk_accounts, receiver):
    raw = receiver().raw()
    rcpt, replies = raw.deliver(
        "carol@example.org",
        ["help@desk.test", "nobody@desk.test", "sales@desk.test", "laptops@support.desk.test"],
        make_mail(),
    )
    raw.close()
    assert [r.code for r in rcpt] == [250, 550, 250, 250]
    assert [r.code for r in replies] == [250, 250, 250]  # one per accepted recipient, no more
    rows = inbound_rows()
    # Recipients of the same account share one stored message; each account has its own.
    assert sorted((r.account_id, tuple(r.envelope_to)) for r in rows) == sorted([
        (desk_accounts["help"], ("help@desk.test", "laptops@support.desk.test")),
        (desk_accounts["sales"], ("sales@desk.test",)),
    ])
    assert all(r.deliveries == 1 for r in rows)


def test_storage_failure_answers_451_per_recipient_and_keeps_nothing_half_written(app, desk_accounts, receiver):
    raw = receiver().raw()
    with storage_fails():
        rcpt, replies = raw.deliver("carol@example.org", ["help@desk.test", "sales@desk.test"], make_mail())
    assert [r.code for r in rcpt] == [250, 250]
    assert [r.code for r in replies] == [451, 451]
    assert all(r.text.startswith("4.3.0") for r in replies)
    assert "disk" not in " ".join(r.text for r in replies)  # our internals stay in our log
    assert count(InboundMessage) == 0 and count(Blob) == 0  # the raw bytes were rolled back too
    # The MTA retries later, and then the mail is stored.
    rcpt, replies = raw.deliver("carol@example.org", ["help@desk.test", "sales@desk.test"], make_mail())
    raw.close()
    assert [r.code for r in replies] == [250, 250]
    assert count(InboundMessage) == 2


def test_one_account_failing_to_store_does_not_fail_the_others(app, desk_accounts, receiver):
    raw = receiver().raw()
    with storage_fails(desk_accounts["sales"]):
        _, replies = raw.deliver("carol@example.org",
                                 ["sales@desk.test", "help@desk.test", "sales@desk.test"], make_mail())
    raw.close()
    assert [r.code for r in replies] == [451, 250, 451]
    [row] = inbound_rows()
    assert row.account_id == desk_accounts["help"]


def test_duplicate_delivery_is_stored_once_and_acted_on_once(app, desk_accounts, receiver):
    lmtp = receiver()
    mail = make_mail(message_id="<same-one@example.org>")
    with lmtp.smtp() as client:
        client.sendmail("carol@example.org", ["help@desk.test"], mail)
    wait_for(lambda: inbound_rows()[0].status.value != "new")
    with lmtp.smtp() as client:
        # The MTA never saw our first 250 (say) and delivers again.
        assert client.sendmail("carol@example.org", ["help@desk.test"], mail) == {}
    [row] = inbound_rows()
    assert row.deliveries == 2
    assert count(Call) == 1


def test_message_over_the_size_limit_is_refused_552(app, desk_accounts, receiver):
    lmtp = receiver(max_message_bytes=20_000)
    big = make_mail(size=40_000)
    # A client that announces the size (smtplib does, from the SIZE extension) is refused at MAIL.
    with lmtp.smtp() as client:
        client.ehlo()
        assert client.esmtp_features["size"] == "20000"
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("carol@example.org", ["help@desk.test"], big)
        assert refused.value.smtp_code == 552
    # One that does not is refused after DATA: one 552 per recipient.
    raw = lmtp.raw()
    _, replies = raw.deliver("carol@example.org", ["help@desk.test", "sales@desk.test"], big)
    assert [r.code for r in replies] == [552, 552]
    assert "20000" in replies[0].text
    # The session goes on: a message under the limit is accepted.
    _, replies = raw.deliver("carol@example.org", ["help@desk.test"], make_mail())
    raw.close()
    assert [r.code for r in replies] == [250]
    assert count(InboundMessage) == 1


def test_an_unexpected_error_answers_451_never_500_with_its_text(app, desk_accounts, receiver, monkeypatch):
    from receiver import lmtp as lmtp_module

    def broken(*args):
        raise RuntimeError("internal detail nobody outside should read")

    lmtp = receiver()
    monkeypatch.setattr(lmtp_module.StoreWriter, "_store_group", broken)
    raw = lmtp.raw()
    _, replies = raw.deliver("carol@example.org", ["help@desk.test", "sales@desk.test"], make_mail())
    assert [r.code for r in replies] == [451, 451]
    monkeypatch.setattr(lmtp_module, "_account_id_for", broken)
    rcpt, _ = raw.deliver("carol@example.org", ["printers@support.desk.test"], make_mail())
    assert rcpt[0].code == 451
    # The connection is still usable.
    assert raw.command("NOOP").code == 250
    raw.close()

    async def broken_hook(*args):
        raise RuntimeError("internal detail nobody outside should read")

    # Anything else that raises inside a session goes through handle_exception.
    monkeypatch.setattr(lmtp_module.DeliveryHandler, "handle_RCPT", broken_hook)
    raw = lmtp.raw()
    other, _ = raw.deliver("carol@example.org", ["help@desk.test"], make_mail())
    raw.close()
    assert other[0].code == 451
    assert "internal detail" not in " ".join(r.text for r in replies + rcpt + other)


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-folder/switchboard.db",
                                 "postgresql+psycopg://postgres@127.0.0.1:1/switchboard"])
def test_database_down_defers_the_mail_with_451(url):
    from receiver.lmtp import LMTPServer
    from tests.conftest import make_test_app

    down = make_test_app(url)
    server = LMTPServer(down, host="127.0.0.1", port=0)
    server.start()
    try:
        with smtplib.LMTP("127.0.0.1", server.port, timeout=15) as client:
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                client.sendmail("carol@example.org", ["help@desk.test"], make_mail())
    finally:
        server.stop()
    code, text = refused.value.recipients["help@desk.test"]
    assert code == 451 and text.startswith(b"4.3.0")  # temporary: the MTA keeps the mail


def test_acknowledgement_does_not_wait_for_processing(app, desk_accounts, receiver):
    lmtp = receiver()
    with lmtp.worker._busy:  # the processing thread is busy (a slow message, say)
        with lmtp.smtp() as client:
            assert client.sendmail("carol@example.org", ["help@desk.test"], make_mail()) == {}
        assert inbound_rows()[0].status.value == "new"
    assert wait_for(lambda: inbound_rows()[0].status.value == "processed")


def test_mail_left_new_by_a_crash_is_acted_on_when_the_receiver_starts(app, desk_accounts, receiver):
    from switchboard.inbound.models import IncomingAccount
    from switchboard.inbound.store import store_message

    store_message(make_mail(), source="lmtp", account=db.session.get(IncomingAccount, desk_accounts["help"]))
    db.session.commit()
    receiver()
    assert wait_for(lambda: inbound_rows()[0].status.value == "processed")
    assert count(Call) == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_receiver_run_command_serves_lmtp_until_sigterm(app, desk_accounts):
    port = _free_port()
    env = dict(os.environ, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], SECRET_KEY="test-secret",
               LMTP_PORT=str(port), LMTP_HOST="127.0.0.1")
    proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "receiver", "run"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in banner, banner
        # Its two acting processes share the work: every message acted on once, none twice.
        with smtplib.LMTP("127.0.0.1", port, timeout=10) as client:
            for n in range(40):
                assert client.sendmail("carol@example.org", ["help@desk.test"],
                                       make_mail(subject=f"Log call: problem {n}")) == {}
        assert wait_for(lambda: count(Call) >= 40, timeout=60)
        assert count(Call) == 40
        rows = inbound_rows()
        assert len(rows) == 40 and {(r.status.value, r.attempts) for r in rows} == {("processed", 1)}
        assert sorted(db.session.scalars(sa.select(Call.summary))) == sorted(f"problem {n}" for n in range(40))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Receiver stopped." in out


def test_a_client_hanging_up_after_data_does_not_stop_the_receiver(app, desk_accounts, receiver):
    lmtp = receiver()
    for _ in range(5):  # an MTA that times out and drops the connection before our reply
        raw = lmtp.raw()
        raw.command("LHLO client.test")
        raw.command("MAIL FROM:<carol@example.org>")
        raw.command("RCPT TO:<help@desk.test>")
        raw.command("DATA")
        raw.sock.sendall(make_mail(message_id="<dropped@example.org>") + b".\r\n")
        raw.sock.close()
    # It retries later: the message is stored once, and the receiver still answers.
    again = lmtp.raw()
    _, replies = again.deliver("carol@example.org", ["help@desk.test"], make_mail(message_id="<dropped@example.org>"))
    again.close()
    assert [r.code for r in replies] == [250]
    [row] = inbound_rows()
    assert row.message_id == "dropped@example.org"


def test_deliveries_stored_together_still_fail_or_succeed_on_their_own(app, desk_accounts, receiver):
    from concurrent.futures import ThreadPoolExecutor

    lmtp = receiver()

    def deliver(i):
        raw = lmtp.raw()
        try:
            to = "sales@desk.test" if i % 2 else "help@desk.test"
            _, replies = raw.deliver("carol@example.org", [to], make_mail(subject=f"Log call: number {i}"))
            return to, replies[0].code
        finally:
            raw.close()

    with storage_fails(desk_accounts["sales"]):
        with ThreadPoolExecutor(12) as pool:
            outcomes = list(pool.map(deliver, range(12)))
    assert sorted(set(outcomes)) == [("help@desk.test", 250), ("sales@desk.test", 451)]
    assert [r.account_id for r in inbound_rows()] == [desk_accounts["help"]] * 6


def test_envelope_paths_plain_quoted_null_and_with_parameters(app, desk_accounts, receiver):
    lmtp = receiver()
    client = lmtp.raw()
    client.command("LHLO client.test")
    # A null sender (bounces), parameters after the path, a quoted local part, and garbage.
    assert client.command("MAIL FROM:<> BODY=8BITMIME").code == 250
    assert client.command("RSET").code == 250
    assert client.command('MAIL FROM:<"carol smith"@example.org>').code == 250
    assert client.command("RCPT TO:<HELP@desk.test>").code == 250
    assert client.command("RCPT TO:<nobody@desk.test>").code == 550
    assert client.command("RSET").code == 250
    assert client.command("MAIL FROM:<carol@example.org> SIZE=1000 BODY=8BITMIME").code == 250
    assert client.command("RCPT TO:<help@desk.test>").code == 250
    assert client.command("RSET").code == 250
    assert client.command("MAIL FROM:<carol@@example.org>").code == 553
    client.close()
    _, replies = lmtp.raw().deliver("", ["help@desk.test"], make_mail())
    assert [r.code for r in replies] == [250]
    [row] = inbound_rows()
    assert row.envelope_from == "<>" and row.envelope_to == ["help@desk.test"]  # the null sender, as kept
