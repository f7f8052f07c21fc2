"""The portal in a real browser at a phone's size: an admin logs in, logs a
call, forwards it, adds a note, resolves and closes it, and sees each step
in the timeline, with htmx doing the partial updates under the real CSP.

Uses Debian's chromium (`apt-get install chromium`), never a downloaded
browser. Under CI=true a missing browser fails the run; elsewhere the test
is skipped with the reason."""

import os
import re
import shutil

import pytest

from tests.portal.live import served

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"width": 390, "height": 844}
SCREENSHOT = "/tmp/switchboard-phone.png"


def _need(condition: bool, message: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(message + " (CI=true: the browser test must run)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def sync_api():
    try:
        from playwright import sync_api
    except ImportError:
        sync_api = None
    _need(sync_api is not None, "playwright is not installed (pip install -r requirements-test.txt)")
    _need(
        os.path.exists(CHROMIUM) or shutil.which(CHROMIUM) is not None,
        f"no chromium at {CHROMIUM} (apt-get install chromium)",
    )
    return sync_api


@pytest.fixture
def live_portal(tmp_path):
    """The real app on a free loopback port, on a migrated SQLite file."""
    from flask_migrate import upgrade

    from switchboard.db import db
    from switchboard.people.services import create_group, create_person
    from tests.conftest import make_test_app

    app = make_test_app(f"sqlite:///{tmp_path / 'browser.db'}")
    with app.app_context():
        upgrade()
        admin = create_person("admin@desk.test", "Ada Admin", admin=True, customer=False, password="admin-password-1")
        bob = create_person("bob@desk.test", "Bob Analyst", analyst=True, customer=False, password="bob-password-1")
        create_group("Service Desk", members=[admin, bob])
        db.session.commit()
    try:
        with served(app) as base:
            yield base
    finally:
        with app.app_context():
            db.engine.dispose()


def test_a_call_from_log_to_close_on_a_phone(sync_api, live_portal):
    expect = sync_api.expect
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
            problems = []
            # Script errors and CSP refusals; a refused request (the 422 below) is expected.
            page.on(
                "console",
                lambda msg: msg.type == "error"
                and not msg.text.startswith("Failed to load resource")
                and problems.append(msg.text),
            )
            page.on("pageerror", lambda exc: problems.append(str(exc)))

            page.goto(live_portal + "/calls/")  # a private page: sent to log in first
            page.get_by_label("Email").fill("admin@desk.test")
            page.get_by_label("Password").fill("admin-password-1")
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("heading", name="Calls", exact=True)).to_be_visible()

            page.get_by_role("navigation", name="Main").get_by_role("link", name="Log a call").click()
            page.get_by_label("Customer email").fill("carol@example.org")
            page.get_by_label("Summary").fill("Printer on floor 3 jams")
            page.get_by_label("Description").fill("Every second page, tray 2.")
            page.get_by_label("Priority").select_option(label="P2 High")
            page.get_by_label("Group").select_option(label="Service Desk")
            page.get_by_role("button", name="Log the call").click()
            expect(page.locator("h1")).to_contain_text("Printer on floor 3 jams")
            expect(page.locator("#messages")).to_contain_text("logged.")

            # From here on htmx swaps the call in place: a full reload would lose this mark.
            page.evaluate("window.stillTheSamePage = true")
            timeline = page.locator("ol.timeline")

            # Only the note form comes with the page; Forward's is fetched when its details
            # open. A keyboard user opens it with Enter on the summary; Tab goes on into it.
            forward = page.locator("details.action-forward")
            expect(page.locator("#forward-analyst")).to_have_count(0)
            forward.locator("summary").focus()
            page.keyboard.press("Enter")
            expect(page.locator("#forward-analyst")).to_be_visible()
            page.keyboard.press("Tab")
            expect(page.locator("#forward-analyst")).to_be_focused()
            page.locator("#forward-analyst").select_option(label="Bob Analyst")
            forward.locator("button[type=submit]").click()
            expect(timeline).to_contain_text("Forwarded to Bob Analyst / Service Desk")
            expect(page.locator("#messages")).to_have_text("Forwarded.")  # older messages gone

            page.locator("#update-note").fill("Ordered a new pickup roller.")
            page.locator("details.action-update button[type=submit]").click()
            expect(timeline).to_contain_text("Ordered a new pickup roller.")

            # A mistake: the message appears beside the field, nothing else changes. (The
            # locators wait for the form that opening the details fetches.)
            page.locator("details.action-resolve > summary").click()
            page.locator("details.action-resolve button[type=submit]").click()
            expect(page.locator("#resolve-resolution-error")).to_have_text("Say how the call was resolved.")
            expect(page.locator("#resolve-resolution")).to_have_attribute("aria-invalid", "true")

            page.locator("#resolve-resolution").fill("Roller replaced, test pages fine.")
            page.locator("details.action-resolve button[type=submit]").click()
            expect(timeline).to_contain_text("Status Open → Open/Resolved")

            page.locator("details.action-close > summary").click()
            page.locator("details.action-close button[type=submit]").click()
            expect(timeline).to_contain_text("Status Open/Resolved → Closed")
            expect(page.locator(".record-head .status")).to_have_text("Closed")
            assert page.evaluate("window.stillTheSamePage") is True

            for step in ("Logged by Ada Admin for carol@example.org", "Forwarded to Service Desk",
                         "Update by Ada Admin", "Roller replaced"):
                expect(timeline).to_contain_text(step)
            # Readable on a phone: nothing wider than the screen.
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            page.screenshot(path=SCREENSHOT, full_page=True)

            # The call list filters as you type, without a reload, and the URL follows.
            page.get_by_role("navigation", name="Main").get_by_role("link", name="Calls").click()
            page.get_by_label("Status").select_option(label="Any")
            expect(page.locator("#results")).to_contain_text("1 call")
            page.evaluate("window.stillTheSamePage = true")
            page.get_by_label("Search").fill("no such thing")
            expect(page.locator("#results")).to_contain_text("No calls match.")
            expect(page).to_have_url(re.compile(r"q=no(%20|\+)such(%20|\+)thing"))
            assert page.evaluate("window.stillTheSamePage") is True
            # No CSP violation, no script error along the way.
            assert problems == []
        finally:
            browser.close()


def test_the_template_editor_previews_as_you_type_on_a_phone(sync_api, live_portal):
    expect = sync_api.expect
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
            problems = []
            page.on("console", lambda msg: msg.type == "error" and problems.append(msg.text))
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(live_portal + "/admin/mail/templates/8")
            page.get_by_label("Email").fill("admin@desk.test")
            page.get_by_label("Password").fill("admin-password-1")
            page.get_by_role("button", name="Log in").click()
            preview = page.locator("#preview")
            expect(preview).to_contain_text("Approval needed: TASK-7")
            # The HTML part, with its inline styles, in its sandboxed frame.
            expect(page.frame_locator("iframe.html-preview").get_by_text("Approve", exact=True)).to_be_visible()
            page.evaluate("window.stillTheSamePage = true")

            page.get_by_label("Subject").fill("Please decide on {{ task.ref }} for {{ request.requester.display_name }}")
            expect(preview.locator(".preview-subject")).to_have_text("Please decide on TASK-7 for Rita Requester")
            page.get_by_label("Subject").fill("{{ ''.__class__ }}")
            expect(preview).to_contain_text("subject: line 1: '__class__' is not allowed in a template")
            page.get_by_label("Subject").fill("Decide {{ task.ref }}")
            expect(preview.locator(".preview-subject")).to_have_text("Decide TASK-7")
            assert page.evaluate("window.stillTheSamePage") is True

            page.get_by_role("button", name="Save").click()
            expect(page.locator("#messages")).to_contain_text("Template “Approval requested” saved.")
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            assert problems == []
        finally:
            browser.close()
