"""The message-type catalogue: every type renders from its shipped templates, on sample data."""

import json
from html.parser import HTMLParser
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from switchboard.outbox import catalogue
from switchboard.outbox.catalogue import (
    ACCEPTED_SUBJECTS, CATALOGUE, MessageType, Recipient, TemplateSet, check_templates,
    render_message, sample_variables, snapshot, with_samples,
)
from switchboard.outbox.compose import compose_message, message_to_bytes, new_message_id
from switchboard.outbox.smtp import Outcome, SmtpSession
from switchboard.outbox.templates import TemplateError

ALL_TYPES = list(MessageType)


def test_the_catalogue_has_every_type_the_desk_sends():
    assert {t.name for t in MessageType} >= {
        "CALL_LOGGED", "CALL_UPDATED_BY_EMAIL", "CALL_FORWARDED", "CALL_RESOLVED", "CALL_CLOSED",
        "CALL_REOPENED", "TASK_FORWARDED", "APPROVAL_REQUESTED", "APPROVAL_DECIDED",
        "EMAIL_REJECTED", "SUMMARY_REPLY", "SLA_ESCALATION", "SLA_BREACH", "MANUAL_MESSAGE",
        "CALL_UPDATED_BY_DESK"}
    assert set(CATALOGUE) == set(MessageType)
    assert len({i.key for i in CATALOGUE.values()}) == len(CATALOGUE)
    assert catalogue.get("approval_requested") is catalogue.get(8) is catalogue.get("8")
    assert catalogue.APPROVAL_REQUESTED == 8
    with pytest.raises(KeyError):
        catalogue.get(99)


def test_who_gets_what_by_default():
    recipients = {info.key: set(info.recipients) for info in CATALOGUE.values()}
    assert recipients["call_logged"] == {Recipient.CUSTOMER}
    assert recipients["call_updated_by_email"] == {Recipient.ASSIGNED_ANALYST, Recipient.GROUP_MEMBERS}
    assert recipients["approval_requested"] == {Recipient.APPROVER}
    assert recipients["approval_decided"] == {Recipient.REQUEST_OWNER}
    assert recipients["email_rejected"] == {Recipient.SENDER}
    assert Recipient.ESCALATION_RECIPIENTS in recipients["sla_escalation"]


def test_only_mail_a_person_writes_is_not_automatic():
    assert [i.key for i in CATALOGUE.values() if not i.automatic] == ["manual_message"]
    assert catalogue.get("email_rejected").auto_submitted == "auto-replied"
    assert catalogue.get("summary_reply").auto_submitted == "auto-replied"
    assert catalogue.get("call_logged").auto_submitted == "auto-generated"


@pytest.mark.parametrize("message_type", ALL_TYPES, ids=lambda t: t.name.lower())
def test_every_type_renders_from_its_default_templates(message_type):
    info = catalogue.get(message_type)
    rendered = render_message(message_type, sample_variables(message_type))

    assert rendered.subject and "\n" not in rendered.subject and len(rendered.subject) < 120
    assert rendered.text.strip()
    assert "None" not in rendered.text and "namespace(" not in rendered.text
    # Short enough to read on a phone without scrolling through pages.
    assert len(rendered.text) < 1500 and max(len(line) for line in rendered.text.splitlines()) < 200
    if "call" in info.variable_names:
        assert "CALL-42" in rendered.subject
    if "task" in info.variable_names:
        assert "TASK-7" in rendered.subject
    if info.default_templates.html:
        _check_html(rendered.html)
    # The same from a stored (JSON) snapshot, as the sender job renders it.
    stored = json.loads(json.dumps(snapshot(sample_variables(message_type))))
    assert render_message(message_type, stored) == rendered


@pytest.mark.parametrize("message_type", ALL_TYPES, ids=lambda t: t.name.lower())
def test_default_templates_use_only_documented_variables(message_type):
    info = catalogue.get(message_type)
    assert check_templates(message_type, info.default_templates) == []
    for variable in with_samples(info):
        assert variable.description
        assert variable.sample is not None, f"{variable.name} has no sample value"


def test_sample_variables_are_shaped_like_the_domain():
    values = sample_variables(MessageType.APPROVAL_REQUESTED)
    assert values["task"].ref == "TASK-7" and values["request"].ref == "REQ-9"
    assert values["task"].approver.display_name == "Alex Approver"
    call = sample_variables(MessageType.CALL_LOGGED)["call"]
    assert (call.ref, call.status.value, call.priority.name) == ("CALL-42", "open", "High")
    assert call.customer.display_name == "Ann Customer" and str(call) == "CALL-42"
    assert sample_variables("sla_escalation")["level"] == 2


def test_approval_mail_carries_reply_ready_links_for_approve_and_reject():
    values = sample_variables(MessageType.APPROVAL_REQUESTED)
    rendered = render_message(MessageType.APPROVAL_REQUESTED, values)
    token = values["token"]
    links = _Links()
    links.feed(rendered.html)
    mailtos = [href for href in links.hrefs if href.startswith("mailto:")]
    subjects = [parse_qs(urlsplit(h).query)["subject"][0] for h in mailtos]
    assert subjects == [f"Approve task 7 [SB-{token}]", f"Reject task 7 [SB-{token}]"]
    assert all(urlsplit(h).path == "servicedesk@example.org" for h in mailtos)
    assert unquote(values["approve_mailto"]) in unquote(rendered.text)
    assert 'Approve task 7' in rendered.text and 'Reject task 7' in rendered.text


def test_rejection_lists_every_accepted_subject():
    rendered = render_message("email_rejected", {
        "desk": sample_variables("email_rejected")["desk"], "recipient": None, "token": None,
        "original_subject": "Close call 41", "reason": "Call 41 is not yours."})
    for item in ACCEPTED_SUBJECTS:
        assert item["subject"] in rendered.text
    assert "Call 41 is not yours." in rendered.text
    assert rendered.subject == "Not processed: Close call 41"


def test_summary_reply_lists_items_or_says_there_are_none():
    values = sample_variables("summary_reply")
    assert "CALL-38 [Pending]" in render_message("summary_reply", values).text
    # Call and task views work as items as they are.
    call = sample_variables("call_logged")["call"]
    task = sample_variables("task_forwarded")["task"]
    values["items"] = [call, task]
    text = render_message("summary_reply", values).text
    assert "CALL-42 [Open]\nPrinter on floor 3 jams on every page" in text
    assert "TASK-7 [Open]\nApprove purchase of a laptop" in text
    values["items"] = []
    assert "You have no open calls." in render_message("summary_reply", values).text


def test_base_variables_complete_a_stored_snapshot():
    from types import SimpleNamespace

    stored = json.loads(json.dumps(snapshot({
        "original_subject": "Clsoe call 4", "reason": "We did not understand the subject."})))
    values = catalogue.base_variables(desk_name="IT Desk", desk_address="it@example.org",
                                      recipient="someone@example.net") | stored
    rendered = render_message("email_rejected", values)
    assert "(mail them to it@example.org)" in rendered.text and rendered.text.endswith("IT Desk\n")

    person = SimpleNamespace(email="ann@example.com", name="Ann", display_name="Ann C.")
    values = catalogue.base_variables(desk_name="IT Desk", desk_address="it@example.org",
                                      recipient=person, token="t" * 24)
    assert values["recipient"].display_name == "Ann C." and values["token"] == "t" * 24


def test_an_admins_broken_template_is_a_clear_error():
    broken = TemplateSet(subject="{{ call.ref }", text="x")
    assert check_templates("call_logged", broken)[0].startswith("subject: line 1:")
    with pytest.raises(TemplateError):
        render_message("call_logged", sample_variables("call_logged"), broken)
    typo = TemplateSet(subject="{{ cal.ref }}", text="{{ call.ref }}")
    assert check_templates("call_logged", typo) == ["subject: line 1: unknown variable 'cal'"]


def test_snapshots_refuse_what_they_cannot_store():
    with pytest.raises(TypeError, match="cannot go into mail template variables"):
        snapshot({"thing": object()})


def test_a_rendered_catalogue_mail_arrives_whole(smtp_sink):
    values = sample_variables(MessageType.APPROVAL_REQUESTED)
    rendered = render_message(MessageType.APPROVAL_REQUESTED, values)
    info = catalogue.get(MessageType.APPROVAL_REQUESTED)
    msg = compose_message(
        from_addr="servicedesk@example.org", from_name="Acme Service Desk",
        to=["alex.approver@example.org"], cc=[], subject=rendered.subject, text=rendered.text,
        html=rendered.html, message_id=new_message_id("desk.example.org"),
        reply_token=values["token"], automatic=info.auto_submitted or False)
    with SmtpSession(smtp_sink.settings()) as session:
        assert session.send(None, ["alex.approver@example.org"],
                            message_to_bytes(msg)).outcome is Outcome.SENT
    got = smtp_sink.messages[0].message
    assert got["Subject"] == (f"Approval needed: TASK-7 Approve purchase of a laptop (EUR 1,250) "
                              f"[SB-{values['token']}]")
    assert "Approve task 7" in got.get_body(("plain",)).get_content()
    assert "mailto:servicedesk@example.org?subject=Approve" in got.get_body(("html",)).get_content()


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"])


def _check_html(html: str) -> None:
    class Balance(HTMLParser):
        void = {"br", "meta", "img", "hr", "input", "link"}

        def __init__(self):
            super().__init__()
            self.stack = []

        def handle_starttag(self, tag, attrs):
            if tag not in self.void:
                self.stack.append(tag)

        def handle_endtag(self, tag):
            assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}>"
            self.stack.pop()

    checker = Balance()
    checker.feed(html)
    assert checker.stack == []
