"""A long timeline in a real browser at a phone's size: the call's page shows the
newest 50 entries, and "Older entries" loads the next 50 below them in place
(htmx, under the real CSP), until the first entry, each entry once. Chromium as
tests/portal/test_browser.py starts it (same fixture)."""

from datetime import timedelta

import pytest

from tests.portal.live import served
from tests.portal.test_browser import CHROMIUM, CHROMIUM_ARGS, PHONE, sync_api  # noqa: F401  (fixture)


@pytest.fixture
def long_call_portal(tmp_path):
    """The real app on a loopback port; a call with 120 notes after "Logged"."""
    from flask_migrate import upgrade

    from switchboard.calls.services import log_call
    from switchboard.db import batched_writes, db, utcnow
    from switchboard.history.models import EntryKind
    from switchboard.history.services import record
    from switchboard.people.services import create_person
    from tests.conftest import make_test_app

    app = make_test_app(f"sqlite:///{tmp_path / 'browser.db'}")
    with app.app_context():
        upgrade()
        anna = create_person("anna@desk.test", "Anna Analyst", analyst=True, customer=False,
                             password="anna-password-1")
        call = log_call(anna, "Long story", customer=create_person("carol@example.org", "Carol Customer"))
        start = utcnow() + timedelta(seconds=1)
        with batched_writes():
            notes = [record(call, EntryKind.NOTE, anna, f"Step {n}") for n in range(120)]
        for n, note in enumerate(notes):
            note.created_at = start + timedelta(seconds=n)
        db.session.commit()
        call_id = call.id
    try:
        with served(app) as base:
            yield base, call_id
    finally:
        with app.app_context():
            db.engine.dispose()


def test_older_entries_load_in_place_on_a_phone(sync_api, long_call_portal):  # noqa: F811
    expect = sync_api.expect
    base, call_id = long_call_portal
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
            problems = []
            page.on("console", lambda msg: msg.type == "error" and problems.append(msg.text))
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(f"{base}/calls/{call_id}")
            page.get_by_label("Email").fill("anna@desk.test")
            page.get_by_label("Password").fill("anna-password-1")
            page.get_by_role("button", name="Log in").click()
            entries = page.locator("ol.timeline > li.entry .entry-summary")
            expect(entries).to_have_count(50)
            expect(entries.first).to_have_text("Step 119")
            page.evaluate("window.stillTheSamePage = true")

            older = page.get_by_role("link", name="Older entries")
            older.click()
            expect(entries).to_have_count(100)
            older.click()
            expect(entries).to_have_count(121)  # the 120 notes and "Logged"
            expect(older).to_have_count(0)  # nothing older: the control is gone
            shown = entries.all_inner_texts()
            assert shown[:120] == [f"Step {n}" for n in range(119, -1, -1)]
            assert shown[120].startswith("Logged by Anna Analyst")
            assert page.evaluate("window.stillTheSamePage") is True
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            assert problems == []
        finally:
            browser.close()
