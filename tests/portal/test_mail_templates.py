"""The template editor (live preview on sample data, refusals with their
line, save, reset, per account) and the notification settings."""

import re

from switchboard.db import db
from switchboard.inbound.accounts import create_account
from switchboard.outbox import settings
from switchboard.outbox.catalogue import MessageType, Recipient
from switchboard.outbox.models import TemplateOverride
from tests.portal.conftest import count, field_error, is_fragment

EDITOR = "/admin/mail/templates/1"  # Call logged


def test_the_live_preview_renders_sample_data_or_says_what_is_wrong(login, people):
    portal = login("admin")
    page = portal.get(EDITOR).get_data(as_text=True)
    # The shipped templates, rendered, and the documented variables with samples.
    assert "CALL-42 logged: Printer on floor 3 jams on every page" in page
    assert "{{ call.ref }}" in page and "the call&#39;s reference, e.g. CALL-42" in page
    assert 'hx-trigger="input changed delay:400ms"' in page and 'hx-post="/admin/mail/templates/1/preview"' in page

    response = portal.post(f"{EDITOR}/preview", {"subject": "{{ call.ref }} for {{ recipient.display_name }}",
                                                 "text": "Dear {{ call.customer.display_name }},\nline two"}, htmx=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and is_fragment(html)
    assert '<dd class="preview-subject">CALL-42 for Ann Customer</dd>' in html
    assert "Dear Ann Customer,\nline two" in html

    html = portal.post(f"{EDITOR}/preview", {"subject": "{{ ''.__class__ }}", "text": "x"}, htmx=True).get_data(as_text=True)
    assert "subject: line 1: &#39;__class__&#39; is not allowed in a template" in html and "preview-subject" not in html
    html = portal.post(f"{EDITOR}/preview", {"subject": "Hi", "text": "one\n{{ nope }}"}, htmx=True).get_data(as_text=True)
    assert "text: line 2: unknown variable &#39;nope&#39;" in html
    html = portal.post(f"{EDITOR}/preview", {"subject": "Hi", "text": "one\n\n{% if %}"}, htmx=True).get_data(as_text=True)
    assert "text: line 3:" in html
    # Without JS, the Preview button shows the whole editor with the preview.
    page = portal.post(f"{EDITOR}/preview", {"subject": "Plain {{ call.ref }}", "text": "x"}).get_data(as_text=True)
    assert "<h1>" in page and '<dd class="preview-subject">Plain CALL-42</dd>' in page
    assert count(TemplateOverride) == 0  # previews save nothing


def test_the_html_preview_is_sandboxed(login, people):
    portal = login("admin")
    response = portal.post("/admin/mail/templates/8/preview.html", {
        "subject": "Approve {{ task.ref }}", "text": "x",
        "html": '<p style="color:red">{{ task.title }}</p><script>alert(1)</script>'})
    csp = response.headers["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp and response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "Approve purchase of a laptop" in response.get_data(as_text=True)
    # When the editor opens, the frame shows the templates in force.
    page = portal.get("/admin/mail/templates/8").get_data(as_text=True)
    assert '<iframe name="html-preview" class="html-preview" sandbox=""' in page
    assert 'src="/admin/mail/templates/8/preview.html"' in page
    response = portal.get("/admin/mail/templates/8/preview.html")
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert "Approve purchase of a laptop" in response.get_data(as_text=True)
    response = portal.post("/admin/mail/templates/8/preview.html", {"subject": "x", "text": "{{ __import__ }}"})
    assert "not allowed" in response.get_data(as_text=True) and "sandbox" in response.headers["Content-Security-Policy"]


def test_save_is_refused_for_an_escape_and_accepted_for_a_good_template_then_reset(login, people):
    portal = login("admin")
    response = portal.post(EDITOR, {"subject": "{{ call.ref }}", "text": "{{ call.__class__.__mro__ }}"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert '<div class="form-errors" role="alert"><p class="error">The template cannot be used: ' in page
    assert "text: line 1: &#39;__class__&#39; is not allowed in a template" in page
    assert "{{ call.__class__.__mro__ }}" in page  # what was typed stays
    response = portal.post(EDITOR, {"subject": "", "text": "Hello"})
    assert field_error(response.get_data(as_text=True), "subject") == "Give both a subject and a text template (or neither)."
    assert count(TemplateOverride) == 0

    response = portal.post(EDITOR, {"subject": "Logged: {{ call.ref }}", "text": "We have {{ call.summary }}.",
                                    "signature": "The IT desk"})
    assert response.status_code == 303
    page = portal.get(response.headers["Location"]).get_data(as_text=True)
    assert "Template “Call logged” saved." in page and "the desk-wide templates" in page
    assert "We have Printer on floor 3 jams on every page.\n\n-- \nThe IT desk" in page
    assert settings.preview(MessageType.CALL_LOGGED).subject == "Logged: CALL-42"
    listing = portal.get("/admin/mail/templates").get_data(as_text=True)
    row = re.search(r"<td data-label=\"No.\">1</td>.*?</tr>", listing, re.S).group(0)
    assert "Changed" in row

    response = portal.post(f"{EDITOR}/reset")
    assert response.status_code == 303
    page = portal.get(response.headers["Location"]).get_data(as_text=True)
    assert "back to the shipped templates" in page and count(TemplateOverride) == 0
    assert settings.preview(MessageType.CALL_LOGGED).subject.startswith("CALL-42 logged:")


def test_templates_for_one_account(login, people):
    account = create_account("Help", "lmtp", addresses=["help@desk.test"])
    db.session.commit()
    portal = login("admin")
    portal.post(EDITOR, {"subject": "Desk: {{ call.ref }}", "text": "desk-wide"})
    page = portal.get(f"{EDITOR}?account={account.id}").get_data(as_text=True)
    assert "In force for Help:" in page and "the desk-wide templates" in page and "desk-wide</textarea>" in page
    response = portal.post(f"{EDITOR}?account={account.id}", {"account": str(account.id),
                                                               "subject": "Help: {{ call.ref }}", "text": "for help"})
    assert response.status_code == 303 and response.headers["Location"] == f"{EDITOR}?account={account.id}"
    rows = {(r.account_id, r.subject) for r in settings.list_template_overrides()}
    assert rows == {(None, "Desk: {{ call.ref }}"), (account.id, "Help: {{ call.ref }}")}
    assert "Own templates for Help" in portal.get("/admin/mail/templates").get_data(as_text=True)
    portal.post(f"{EDITOR}/reset", {"account": str(account.id)})
    assert {r.account_id for r in settings.list_template_overrides()} == {None}
    assert portal.get(f"{EDITOR}?account=999").status_code == 404
    assert portal.get("/admin/mail/templates/99").status_code == 404


def _notification_form(**changes) -> dict:
    """The page's form as it stands, with `changes` applied (the way a browser posts it)."""
    form = {f"switch-{name}": "y" for name, on in settings.switches().items() if on}
    for rule in settings.notification_rules():
        number = int(rule.type)
        if rule.enabled:
            form[f"t{number}-enabled"] = "y"
        form[f"t{number}-recipients"] = [r.value for r in rule.recipients]
    for key, value in changes.items():
        if value is None:
            form.pop(key, None)
        else:
            form[key] = value
    return form


def test_notification_settings_are_saved_all_or_nothing(login, people):
    portal = login("admin")
    page = portal.get("/admin/mail/notifications").get_data(as_text=True)
    assert "Email optional at forward" in page and "Escalation recipients" in page
    resolved, forwarded = int(MessageType.CALL_RESOLVED), int(MessageType.CALL_FORWARDED)

    # A message left on with nobody to send it to: refused beside its row, nothing saved.
    response = portal.post("/admin/mail/notifications", _notification_form(**{
        "switch-forward_email_optional": "y", f"t{forwarded}-recipients": None}))
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), f"t{forwarded}-recipients") == (
        "Choose at least one recipient, or turn the message off.")
    assert settings.switches()["forward_email_optional"] is False

    response = portal.post("/admin/mail/notifications", _notification_form(**{
        "switch-forward_email_optional": "y", "switch-email_on_escalation": None,
        f"t{resolved}-enabled": None, f"t{forwarded}-recipients": ["assigned_analyst"]}))
    assert response.status_code == 303
    assert "Notification settings saved." in portal.get("/admin/mail/notifications").get_data(as_text=True)
    assert settings.switches() == {"forward_email_optional": True, "email_on_update_via_email": True,
                                   "email_on_escalation": False, "email_customer_on_desk_note": True}
    assert settings.notification_rule(MessageType.CALL_RESOLVED).enabled is False
    assert settings.notification_rule(MessageType.CALL_FORWARDED).recipients == (Recipient.ASSIGNED_ANALYST,)
    # Rows nobody touched keep following the catalogue.
    assert not settings.notification_rule(MessageType.CALL_LOGGED).customised

    page = portal.get("/admin/mail/notifications").get_data(as_text=True)
    assert page.count("Back to the defaults") == 2
    response = portal.post(f"/admin/mail/notifications/{forwarded}/reset")
    assert response.status_code == 303
    assert settings.notification_rule(MessageType.CALL_FORWARDED).customised is False
