"""Sending through real SMTP servers on loopback: TLS, AUTH, answers per recipient, failover, reuse."""

import logging
import time

import pytest

from switchboard.outbox.compose import compose_message, message_to_bytes, new_message_id
from switchboard.outbox.smtp import (
    Outcome, SmtpServerSettings, SmtpSession, Stage, Transport, send_with_failover,
)

from .conftest import SINK_PASSWORD, SINK_USER
from .smtp_sink import Blackhole, SmtpSink, free_port

ANN, SAM = "ann.customer@example.com", "sam.analyst@example.org"


def _mail(to=(ANN,), subject="CALL-42 logged") -> bytes:
    return message_to_bytes(compose_message(
        from_addr="servicedesk@example.org", from_name="Acme Service Desk", to=list(to), cc=[],
        subject=subject, text="Hello.\n", message_id=new_message_id("desk.example.org")))


def _send(sink, to=(ANN,), **settings):
    with SmtpSession(sink.settings(**settings)) as session:
        return session.send(None, list(to), _mail(to))


# -- TLS and AUTH -----------------------------------------------------------------------------

def test_starttls_and_auth_deliver_and_never_log_the_password(smtp_sink_starttls_auth, caplog):
    caplog.set_level(logging.DEBUG)
    result = _send(smtp_sink_starttls_auth)

    assert result.outcome is Outcome.SENT
    assert result.accepted == [ANN]
    [received] = smtp_sink_starttls_auth.messages
    assert received.tls and received.login == SINK_USER
    assert received.mail_from == "desk@example.org"
    assert SINK_PASSWORD not in caplog.text
    assert SINK_PASSWORD not in repr(smtp_sink_starttls_auth.settings())


def test_implicit_tls_delivers(smtp_sink_tls):
    assert _send(smtp_sink_tls).outcome is Outcome.SENT
    assert smtp_sink_tls.messages[0].tls


@pytest.mark.parametrize("sink_fixture", ["smtp_sink_starttls_auth", "smtp_sink_tls"])
def test_a_certificate_from_another_ca_is_refused_and_the_next_server_used(
        request, sink_fixture, test_pki, smtp_sink):
    secure = request.getfixturevalue(sink_fixture)
    servers = [secure.settings("main", ca_file=str(test_pki.other_ca_file)),
               smtp_sink.settings("backup")]

    result = send_with_failover(servers, None, [ANN], _mail())

    assert result.outcome is Outcome.SENT and result.server == "backup"
    assert result.attempts[0].startswith("main: tls failed:")
    assert "CERTIFICATE_VERIFY_FAILED" in result.attempts[0]
    assert secure.messages == [] and len(smtp_sink.messages) == 1
    assert secure.auth_failures == 0  # the password never went to the unverified server


def test_the_ca_can_be_given_as_pem_text(smtp_sink_tls, test_pki):
    result = _send(smtp_sink_tls, ca_file=None, ca_pem=test_pki.ca_file.read_text())
    assert result.outcome is Outcome.SENT


def test_starttls_required_but_not_offered_never_falls_back_to_plain_text(smtp_sink):
    result = _send(smtp_sink, security="starttls")
    assert result.outcome is Outcome.TEMPORARY
    assert result.stage is Stage.TLS and result.server_failed
    assert "does not offer STARTTLS" in result.message
    assert smtp_sink.messages == []


def test_a_wrong_password_is_a_server_problem_not_the_messages(smtp_sink_starttls_auth):
    result = _send(smtp_sink_starttls_auth, password="wrong")
    assert result.outcome is Outcome.TEMPORARY
    assert result.stage is Stage.AUTH and result.code == 535
    assert smtp_sink_starttls_auth.messages == []


def test_auth_required_at_mail_from_makes_it_try_the_next_server(smtp_sink_starttls_auth, smtp_sink):
    # Configured without credentials: the server answers 530 to MAIL FROM.
    servers = [smtp_sink_starttls_auth.settings("needs-login", username=None, password=None),
               smtp_sink.settings("backup")]
    result = send_with_failover(servers, None, [ANN], _mail())
    assert result.server == "backup" and result.outcome is Outcome.SENT
    assert result.attempts[0].startswith("needs-login: auth failed")


def test_settings_refuse_a_password_in_clear_text_over_the_network():
    with pytest.raises(ValueError, match="AUTH needs TLS"):
        SmtpServerSettings("relay", "smtp.example.org", 25, "none", username="u", password="p")
    SmtpServerSettings("local", "127.0.0.1", 25, "none", username="u", password="p")
    with pytest.raises(ValueError, match="security"):
        SmtpServerSettings("relay", "smtp.example.org", 25, "ssl")


# -- answers from the server ------------------------------------------------------------------

def test_451_at_rcpt_is_temporary(smtp_sink):
    smtp_sink.faults.rcpt_replies[ANN] = "451 4.3.0 Try again later"
    result = _send(smtp_sink)
    assert result.outcome is Outcome.TEMPORARY and result.stage is Stage.RCPT
    assert result.deferred == [ANN]
    assert (result.code, result.message) == (451, "4.3.0 Try again later")
    assert smtp_sink.messages == []


def test_550_at_rcpt_is_permanent(smtp_sink):
    smtp_sink.faults.rcpt_replies[ANN] = "550 5.1.1 No such user"
    result = _send(smtp_sink)
    assert result.outcome is Outcome.PERMANENT and result.stage is Stage.RCPT
    assert result.refused == [ANN] and result.recipients[0].code == 550
    assert smtp_sink.messages == []


def test_one_of_two_recipients_refused_is_reported_per_recipient(smtp_sink):
    smtp_sink.faults.rcpt_replies[SAM] = "550 5.1.1 No such user"
    result = _send(smtp_sink, to=(ANN, SAM))

    assert result.outcome is Outcome.SENT
    assert result.accepted == [ANN] and result.refused == [SAM]
    by_address = {r.address: r for r in result.recipients}
    assert by_address[ANN].code == 250
    assert (by_address[SAM].code, by_address[SAM].message) == (550, "5.1.1 No such user")
    assert smtp_sink.messages[0].rcpt_tos == [ANN]


def test_mixed_refusals_of_every_recipient_is_temporary_overall(smtp_sink):
    smtp_sink.faults.rcpt_replies.update({ANN: "550 5.1.1 No such user", SAM: "452 4.2.2 Full"})
    result = _send(smtp_sink, to=(ANN, SAM))
    assert result.outcome is Outcome.TEMPORARY
    assert result.refused == [ANN] and result.deferred == [SAM]


def test_421_at_rcpt_defers_everyone_and_the_next_mail_reconnects(smtp_sink):
    smtp_sink.faults.rcpt_replies[SAM] = "421 4.3.2 Closing"
    with SmtpSession(smtp_sink.settings()) as session:
        result = session.send(None, [ANN, SAM], _mail((ANN, SAM)))
        smtp_sink.faults.rcpt_replies.clear()
        after = session.send(None, [ANN], _mail())
    assert result.outcome is Outcome.TEMPORARY and result.deferred == [ANN, SAM]
    assert after.outcome is Outcome.SENT and smtp_sink.connections == 2


@pytest.mark.parametrize("reply, outcome", [
    ("451 4.7.1 Greylisted", Outcome.TEMPORARY),
    ("421 4.3.2 Shutting down", Outcome.TEMPORARY),
    ("501 5.1.7 Bad sender address syntax", Outcome.PERMANENT),
    ("503 5.5.1 Bad sequence", Outcome.PERMANENT),
    ("550 5.7.1 Sender rejected", Outcome.PERMANENT),
    ("553 5.1.8 Sender domain does not exist", Outcome.PERMANENT),
])
def test_answers_at_mail_from(smtp_sink, reply, outcome):
    smtp_sink.faults.mail_reply = reply
    result = _send(smtp_sink)
    assert result.outcome is outcome and result.stage is Stage.MAIL
    assert result.code == int(reply[:3]) and not result.server_failed
    assert [r.outcome for r in result.recipients] == [outcome]


@pytest.mark.parametrize("field, reply, outcome", [
    ("data_reply", "451 4.3.0 Queue full", Outcome.TEMPORARY),
    ("data_reply", "554 5.6.0 Message refused", Outcome.PERMANENT),
    ("data_command_reply", "451 4.3.0 Not now", Outcome.TEMPORARY),
    ("data_command_reply", "503 5.5.1 No valid recipients", Outcome.PERMANENT),
])
def test_answers_at_data(smtp_sink, field, reply, outcome):
    setattr(smtp_sink.faults, field, reply)
    result = _send(smtp_sink, to=(ANN, SAM))
    assert result.outcome is outcome and result.stage is Stage.DATA
    assert result.code == int(reply[:3])
    assert {r.outcome for r in result.recipients} == {outcome}
    assert smtp_sink.messages == []


# -- the network failing ----------------------------------------------------------------------

def test_first_server_down_second_used(smtp_sink):
    down = SmtpServerSettings("primary", "127.0.0.1", free_port(), "none", timeout=2)
    result = send_with_failover([down, smtp_sink.settings("secondary")], "desk@example.org",
                                [ANN], _mail())
    assert result.outcome is Outcome.SENT and result.server == "secondary"
    assert result.attempts == ("primary: connect failed: connection refused",)


def test_a_server_that_never_answers_times_out_and_the_next_is_used(smtp_sink):
    with Blackhole() as silent:
        mute = SmtpServerSettings("mute", silent.host, silent.port, "none", timeout=0.5)
        started = time.monotonic()
        result = send_with_failover([mute, smtp_sink.settings("backup")], "desk@example.org",
                                    [ANN], _mail())
    assert result.server == "backup" and result.outcome is Outcome.SENT
    assert "timed out" in result.attempts[0]
    assert time.monotonic() - started < 3


def test_all_servers_down_is_temporary_and_says_why():
    servers = [SmtpServerSettings(n, "127.0.0.1", free_port(), "none", timeout=1) for n in "ab"]
    result = send_with_failover(servers, "desk@example.org", [ANN], _mail())
    assert result.outcome is Outcome.TEMPORARY and result.server is None
    assert result.server_failed and result.deferred == [ANN]
    assert [a.split(":")[0] for a in result.attempts] == ["a", "b"]


def test_connection_dropped_mid_data_is_temporary_and_the_next_mail_reconnects(smtp_sink):
    smtp_sink.faults.drop_in_data = True
    with SmtpSession(smtp_sink.settings()) as session:
        dropped = session.send(None, [ANN], _mail())
        smtp_sink.faults.drop_in_data = False
        after = session.send(None, [ANN], _mail())

    assert dropped.outcome is Outcome.TEMPORARY and dropped.stage is Stage.DATA
    assert dropped.code is None and "connection lost" in dropped.message
    assert not dropped.server_failed  # possibly half-delivered: retry later, no failover now
    assert after.outcome is Outcome.SENT
    assert smtp_sink.connections == 2 and len(smtp_sink.messages) == 1


def test_no_final_answer_after_data_is_temporary_even_if_the_server_kept_it(smtp_sink):
    smtp_sink.faults.drop_after_data = True
    result = _send(smtp_sink)
    assert result.outcome is Outcome.TEMPORARY and result.stage is Stage.DATA
    assert len(smtp_sink.messages) == 1  # why a retry can deliver twice: say so in the report


def test_a_slow_answer_to_data_times_out_as_temporary(smtp_sink):
    smtp_sink.faults.data_delay = 2
    result = _send(smtp_sink, timeout=0.5)
    assert result.outcome is Outcome.TEMPORARY and result.stage is Stage.DATA
    assert "timed out" in result.message


# -- connection reuse -------------------------------------------------------------------------

@pytest.mark.parametrize("sink_fixture", ["smtp_sink", "smtp_sink_starttls_auth", "smtp_sink_tls"])
def test_fifty_mails_over_one_connection(request, sink_fixture):
    sink = request.getfixturevalue(sink_fixture)
    with Transport([sink.settings()]) as transport:
        results = [transport.send(None, [ANN], _mail(subject=f"mail {i}")) for i in range(50)]

    assert all(r.outcome is Outcome.SENT for r in results)
    assert sink.connections == 1
    assert [m.message["Subject"] for m in sink.messages] == [f"mail {i}" for i in range(50)]


def test_a_connection_the_server_closed_is_reopened_transparently(smtp_sink):
    with SmtpSession(smtp_sink.settings()) as session:
        assert session.send(None, [ANN], _mail()).outcome is Outcome.SENT
        smtp_sink.drop_connections()  # e.g. the server's idle timeout
        assert session.send(None, [ANN], _mail()).outcome is Outcome.SENT
    assert smtp_sink.connections == 2 and len(smtp_sink.messages) == 2


def test_a_failed_server_is_not_retried_for_every_mail_of_the_batch(smtp_sink_starttls_auth,
                                                                    smtp_sink):
    servers = [smtp_sink_starttls_auth.settings("main", password="wrong"),
               smtp_sink.settings("backup")]
    with Transport(servers) as transport:
        results = [transport.send(None, [ANN], _mail()) for _ in range(5)]
    assert {r.server for r in results} == {"backup"}
    assert smtp_sink_starttls_auth.connections == 1  # one failed login, then skipped
    assert "skipped" in results[-1].attempts[0]
    assert smtp_sink.connections == 1 and len(smtp_sink.messages) == 5


def test_a_transport_uses_the_first_server_when_it_works(test_pki):
    with SmtpSink() as first, SmtpSink() as second:
        with Transport([first.settings("first"), second.settings("second")]) as transport:
            result = transport.send(None, [ANN], _mail())
        assert result.server == "first" and result.attempts == ()
        assert len(first.messages) == 1 and second.connections == 0
