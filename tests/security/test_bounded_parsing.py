"""Issue 9 item 3: one hostile message can no longer stall mail or exhaust memory. Deep HTML,
huge encoded-word headers and address floods are read in bounded time and memory, with what was
cut said on the message's admin page; the portal shows what was read when the message was acted
on and never parses it per page view; a message over its CPU budget fails alone in a real acting
process while the mail behind it goes through; `mail ingest` refuses oversized input."""

import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import sqlalchemy as sa

from switchboard.db import db
from switchboard.inbound import process as process_module
from switchboard.inbound.models import InboundMessage
from switchboard.inbound.parse import parse_message
from switchboard.inbound.process import process_batch, process_pending
from switchboard.inbound.store import store_message
from tests.receiver.conftest import make_mail, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _mail(head: str, body: str = "Hello.\n", content_type: str = "text/plain") -> bytes:
    return (f"{head}\nSubject: bounded\nMessage-ID: <{time.monotonic_ns()}@example.org>\n"
            f"Content-Type: {content_type}; charset=utf-8\n\n{body}").encode()


def _deep_html(levels: int = 100_000) -> bytes:
    return _mail("From: carol@example.org\nTo: help@desk.test",
                 "<div>" * levels + "deep text" + "</div>" * levels, "text/html")


def _row(inbound_id: int) -> InboundMessage:
    db.session.rollback()
    return db.session.get(InboundMessage, inbound_id)


def _store(raw: bytes) -> int:
    inbound_id = store_message(raw, source="lmtp", envelope_to=["help@desk.test"]).inbound_id
    db.session.commit()
    return inbound_id


def test_deep_html_is_acted_on_and_shown_in_the_inbound_log_quickly(app, login):
    inbound_id = _store(_deep_html())  # 100,000 nested divs, ~1.1 MB: minutes before
    # CPU time, not wall: the bound must hold on a loaded CI machine (measured: ~1 s, all of it
    # reading the message; the flattening is linear, 0.6 s per 100,000 tags).
    started, wall = time.process_time(), time.perf_counter()
    [result] = process_pending()
    acted_in = time.process_time() - started
    assert result.status == "processed" and acted_in < 2 and time.perf_counter() - wall < 20, acted_in
    portal = login("admin")
    for page in ("/admin/mail/inbound", f"/admin/mail/inbound/{inbound_id}"):
        started = time.process_time()
        response = portal.get(page)
        assert response.status_code == 200 and time.process_time() - started < 0.5, page
    html = response.get_data(as_text=True)
    assert "deep text" in html
    assert "HTML nested more than 100 levels deep" in html


def test_the_message_page_never_parses_the_message(app, login, monkeypatch):
    inbound_id = _store(_deep_html(2000))
    process_pending()
    calls = []
    real = parse_message
    monkeypatch.setattr("portal.mail.inbound.parse_message", lambda *a, **k: calls.append(1) or real(*a, **k))
    portal = login("admin")
    assert portal.get(f"/admin/mail/inbound/{inbound_id}").status_code == 200
    assert portal.get(f"/admin/mail/inbound/{inbound_id}/html").status_code == 200
    assert calls == []


def test_a_message_not_acted_on_yet_shows_its_headers_without_being_parsed(app, login):
    inbound_id = _store(_deep_html())
    portal = login("admin")
    started = time.process_time()
    html = portal.get(f"/admin/mail/inbound/{inbound_id}").get_data(as_text=True)
    assert time.process_time() - started < 0.5
    assert "Not read yet" in html and "carol@example.org" in html


def test_huge_encoded_word_headers_stay_small_in_memory_and_are_cut_with_a_warning(app, login):
    words = "=?utf-8?q?caf=C3=A9?= " * 30_000  # 660 KB: 7 GB inside the stdlib parser before
    raw = _mail(f"From: {words}<carol@example.org>\nTo: {words}<help@desk.test>\nCc: {words}<x@example.org>")
    tracemalloc.start()
    try:
        started = time.process_time()
        parsed = parse_message(raw)
        cpu = time.process_time() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024 and cpu < 2, (peak, cpu)
    assert parsed.from_address == "carol@example.org" and parsed.to == ("help@desk.test",)
    assert len(parsed.from_name) < 16384
    assert any(w.startswith("From: an address of") for w in parsed.warnings)

    inbound_id = _store(raw)
    process_pending()
    row = _row(inbound_id)
    assert row.from_address == "carol@example.org"
    assert any(w.startswith("To: an address of") for w in row.warnings)
    html = login("admin").get(f"/admin/mail/inbound/{inbound_id}").get_data(as_text=True)
    assert "Reading it" in html and "its display name was cut" in html


def test_a_long_plain_header_keeps_its_start(app):
    parsed = parse_message(_mail("From: carol@example.org\nX-Junk: " + "junk " * 100_000))
    assert len(parsed.header("X-Junk")) <= 16384 and parsed.header("X-Junk").startswith("junk junk")
    assert "X-Junk: 500008 characters: only the first 16384 were read" in parsed.warnings


def test_a_header_of_many_lines_is_read_up_to_its_bound(app):
    parsed = parse_message(_mail("From: carol@example.org\n" + "".join(f"X-F{n}: v\n" for n in range(50_000))))
    assert parsed.from_address == "carol@example.org"
    assert any(w.startswith("the header has 50001 lines") for w in parsed.warnings), parsed.warnings


def test_at_most_100_addresses_per_address_header(app):
    many = ", ".join(f"user{n}@example.org" for n in range(5000))
    parsed = parse_message(_mail(f"From: carol@example.org\nTo: {many}\nTo: late@example.org"))
    assert len(parsed.to) == 100 and parsed.to[-1] == "user99@example.org"
    assert "late@example.org" not in parsed.to
    assert any(w.startswith("To: more than 100 addresses") for w in parsed.warnings)


def test_deeply_nested_comments_in_from_do_not_lose_the_sender(app):
    parsed = parse_message(_mail("From: " + "(" * 5000 + ")" * 5000 + " <carol@example.org>"))
    assert parsed.from_address == "carol@example.org"


def test_an_encoded_display_name_with_colon_or_comma_is_only_a_name(app):
    raw = _mail("From: =?utf-8?q?Name=0D=0ABcc:_x@y?= <real@evil.example>\nTo: help@desk.test")
    parsed = parse_message(raw)
    assert parsed.from_address == "real@evil.example"
    assert parsed.from_addresses == ("real@evil.example",) and parsed.from_groups == ()
    assert parsed.from_name == "Name Bcc: x@y"
    comma = parse_message(_mail("From: =?utf-8?q?Boss,_boss@corp.example?= <real@evil.example>"))
    assert comma.from_addresses == ("real@evil.example",)
    inbound_id = _store(raw)
    process_pending()
    assert _row(inbound_id).from_address == "real@evil.example"


def test_hostile_from_lines_are_stored_at_once_over_lmtp(app, desk_accounts, receiver):
    """Storing reads the From for the inbound log on the path that answers the MTA: nested
    comments there once raised RecursionError, so the delivery (and every delivery stored in
    the same group) got 451 and the MTA retried it for days; an encoded ':' read as a group."""
    froms = {
        "From: " + "(" * 20000 + " <carol@example.org>": "carol@example.org",
        "From: " + "(" * 5000 + ")" * 5000 + " <carol@example.org>": "carol@example.org",
        "From: =?utf-8?q?Name=0D=0ABcc:_x@y?= <real@evil.example>": "real@evil.example",
        "From: " + " ".join(["=?utf-8?q?a=2C_b?="] * 30000) + " <dave@example.org>": "dave@example.org",
        # 200,000 tiny fields took seconds to read (the From after them is past the bound).
        "".join(f"X-Filler-{n}: v\n" for n in range(200_000)) + "From: <erin@example.org>": None,
    }
    client = receiver().raw()
    for head, expected in froms.items():
        started = time.perf_counter()
        folded = "\n ".join(head[i:i + 900] for i in range(0, len(head), 900))  # SMTP lines <= 1000
        _, replies = client.deliver("carol@example.org", ["help@desk.test"],
                                    _mail(folded + "\nTo: help@desk.test").replace(b"\n", b"\r\n"))
        assert [r.code for r in replies] == [250], (head[:40], replies)
        assert time.perf_counter() - started < 10
        inbound_id = int(replies[0].text.rsplit(" ", 1)[1])
        assert _row(inbound_id).from_address == expected, head[:40]
    client.close()


def test_ingest_refuses_input_over_the_limit_with_65_and_stores_nothing(app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "LMTP_MAX_MESSAGE_BYTES", 5000)  # the app outlives the test
    big = make_mail(size=6000)
    result = app.test_cli_runner().invoke(args=["mail", "ingest", "-"], input=big)
    assert result.exit_code == 65, result.output
    assert "refused: larger than LMTP_MAX_MESSAGE_BYTES (5000 bytes); nothing stored (exit 65)" in result.output
    path = tmp_path / "big.eml"
    path.write_bytes(big)
    assert app.test_cli_runner().invoke(args=["mail", "ingest", str(path)]).exit_code == 65
    assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundMessage)) == 0
    small = app.test_cli_runner().invoke(args=["mail", "ingest", "-"], input=make_mail(size=3000))
    assert small.exit_code == 0, small.output


def _costly_html() -> bytes:
    # Linear, but about 1.5 s of CPU to sanitise and render: over a budget of 0.3 s.
    return _mail("From: carol@example.org\nTo: help@desk.test",
                 "<p>" + ("word " * 20 + "</p>\n<p>") * 40_000 + "</p>", "text/html")


def test_a_batch_with_a_costly_message_fails_it_alone_and_reads_it_once(app, monkeypatch):
    monkeypatch.setitem(app.config, "INBOUND_MESSAGE_CPU_SECONDS", 0.3)
    costly = _costly_html()
    ids = [_store(make_mail(subject="Log call: before")), _store(costly), _store(make_mail(subject="Log call: after"))]
    reads = []
    real = process_module.parse_message
    monkeypatch.setattr(process_module, "parse_message", lambda raw, *a: reads.append(raw) or real(raw, *a))
    results = process_batch(ids, limit=3)
    db.session.commit()
    assert [r.status for r in results] == ["processed", "failed", "processed"]
    assert reads.count(costly) == 1
    row = _row(ids[1])
    assert row.outcome.startswith("Failed: too costly to process: more than 0.3 s of CPU")
    assert row.parsed_headers and row.warnings == ["too costly to process: more than 0.3 s of CPU"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_message_over_its_cpu_budget_in_the_receiver_fails_and_the_next_goes_through(app, desk_accounts):
    port = _free_port()
    env = dict(os.environ, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], SECRET_KEY="test-secret",
               LMTP_PORT=str(port), LMTP_HOST="127.0.0.1", RECEIVER_PROCESSES="1",
               INBOUND_MESSAGE_CPU_SECONDS="0.3")
    proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "receiver", "run"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert f"127.0.0.1:{port}" in proc.stdout.readline()
        with smtplib.LMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("carol@example.org", ["help@desk.test"], _costly_html().replace(b"\n", b"\r\n"))
            sent = time.monotonic()
            client.sendmail("carol@example.org", ["help@desk.test"], make_mail(subject="Log call: behind it"))

        def rows():
            return list(db.session.scalars(sa.select(InboundMessage).order_by(InboundMessage.id)))

        assert wait_for(lambda: all(r.status.value != "new" for r in rows()) and len(rows()) == 2, timeout=30)
        took = time.monotonic() - sent
        costly, normal = rows()
        assert costly.status.value == "failed" and "too costly to process" in costly.outcome
        assert normal.status.value == "processed" and took < 5, took
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
