"""Every real message in the public corpus goes through `mail ingest` (the
operator's and the MTA pipe's way in) and ends processed, ignored or
rejected: none failed, none slow, and no automated mail answered."""

import hashlib
import json
import time

import sqlalchemy as sa

from switchboard.db import db
from switchboard.inbound.automated import is_never_answer_address
from switchboard.inbound.models import InboundMessage, InboundStatus
from switchboard.inbound.store import fingerprint, read_head
from switchboard.outbox.models import OutboxMessage
from tests.inbound import corpus_outcomes
from tests.inbound.test_corpus_parse import corpus_messages

SECONDS_PER_MESSAGE = 5.0


def test_whole_corpus_through_mail_ingest(app, corpus, tmp_path):
    runner = app.test_cli_runner()
    slow, crashed, outcomes = [], [], {}
    for index, (name, raw) in enumerate(corpus_messages(corpus)):
        path = tmp_path / f"{index}.eml"
        path.write_bytes(raw)
        started = time.perf_counter()
        result = runner.invoke(args=["mail", "ingest", str(path)])
        elapsed = time.perf_counter() - started
        outcomes[name] = corpus_outcomes.outcome_of(result.output)
        if result.exit_code != 0 or result.exception is not None:
            crashed.append(f"{name}: exit {result.exit_code}: {result.output.strip()[:200]}")
        messages = outcomes[name].count("+") + 1  # an mbox file is ingested message by message
        if elapsed > SECONDS_PER_MESSAGE * messages:
            slow.append(f"{name}: {elapsed:.1f} s for {messages} message(s)")
    assert not crashed, "\n".join(crashed)
    assert not slow, "\n".join(slow)
    corpus_outcomes.keep_if_asked(outcomes)
    # Issue 10: no message changes outcome for the worse. Every file ends as it did at the
    # baseline's commit unless the change is one of the fixes; all differences printed.
    changed = corpus_outcomes.differences(outcomes)
    print("\n".join(changed) or "every corpus message has its baseline outcome")
    assert not [line for line in changed if line.startswith("CHANGED")], "\n".join(changed)

    counts = dict(db.session.execute(
        sa.select(InboundMessage.status, sa.func.count()).group_by(InboundMessage.status)).all())
    print({status.value: n for status, n in counts.items()})
    failed = db.session.scalars(sa.select(InboundMessage).where(InboundMessage.status == InboundStatus.FAILED)).all()
    assert not failed, "\n".join(f"{m.subject!r}: {m.error[-300:]}" for m in failed)
    assert counts.get(InboundStatus.NEW, 0) == 0
    # Fewer rows than files: the dos/ and mac/ copies of bsd/ messages differ only in line
    # endings, so they are the same message, stored and acted on once.
    assert counts[InboundStatus.PROCESSED] > 100 and counts[InboundStatus.IGNORED] > 650

    # Nothing we queued goes to an address that must never be answered.
    for row in db.session.scalars(sa.select(OutboxMessage)):
        assert not any(is_never_answer_address(a) for a in row.to), (row.to, row.message_type)

    # Bounces, auto-replies and abuse reports: no reply of any kind (a reply could start a
    # mail loop with a mailer daemon or an autoresponder), and no call.
    root = corpus / "sisimai-set-of-emails"
    expected = json.loads((root / "EXPECTED-bounces.json").read_text())["files"]
    automated = {hashlib.sha256((root / n).read_bytes()).hexdigest(): n
                 for n, info in expected.items() if info["kind"] != "not_bounce"}
    # 829 files, fewer distinct messages: copies that differ only in line endings, and copies
    # of one message (its Message-ID, From, Date, Subject) with another body, are one message,
    # stored once (the first copy the corpus walk met, maybe from another folder). Every
    # distinct message must be there, each once.
    messages = {fingerprint(raw, read_head(raw)) for raw in ((root / n).read_bytes() for n in automated.values())}
    rows = db.session.execute(
        sa.select(InboundMessage.id, InboundMessage.raw_sha256, InboundMessage.status, InboundMessage.call_id)
        .where(InboundMessage.fingerprint.in_(messages))).all()
    assert len(rows) == len(messages) > 500, (len(rows), len(messages))
    ids = [r.id for r in rows]
    answered = set(db.session.scalars(sa.select(OutboxMessage.inbound_id).where(OutboxMessage.inbound_id.in_(ids))))
    logged = {r.id for r in rows if r.call_id is not None}
    name = {r.id: automated.get(r.raw_sha256, r.raw_sha256) for r in rows}
    # Two messages are people forwarding a bounce by hand (lhost-sendmail-14: "Fwd: Returned
    # mail"): those may log a call, and be told so; nothing else may log a call or be answered.
    assert len(logged) <= 2, [name[i] for i in logged]
    assert answered <= logged, [name[i] for i in answered - logged]
    assert sum(r.status is InboundStatus.IGNORED for r in rows) >= 0.99 * len(rows)

