"""A request in a real browser: the approver decides from the request's page, the next
stage's task is forwarded through a form that loads when its details open (opened from
the keyboard), a note is added, and the older half of a long timeline loads in place;
htmx swaps everything under the real CSP, the page is never reloaded.

Uses Debian's chromium as tests/portal/test_browser.py does (skipped without it, a
failure under CI=true)."""

import pytest

from tests.portal.live import served
from tests.portal.test_browser import CHROMIUM, CHROMIUM_ARGS, sync_api  # noqa: F401  (the fixture)


@pytest.fixture
def live_request(tmp_path):
    """Bob approves stage 1 of a request whose timeline has 70 entries; stage 2 is an
    action task of his."""
    from flask_migrate import upgrade

    from switchboard.db import batched_writes, db
    from switchboard.history.models import EntryKind
    from switchboard.history.services import record
    from switchboard.people.services import create_group, create_person
    from switchboard.requests.models import TaskKind
    from switchboard.requests.services import TaskSpec, create_request
    from tests.conftest import make_test_app

    app = make_test_app(f"sqlite:///{tmp_path / 'browser.db'}")
    with app.app_context():
        upgrade()
        admin = create_person("admin@desk.test", "Ada Admin", admin=True, customer=False, password="admin-password-1")
        bob = create_person("bob@desk.test", "Bob Analyst", analyst=True, customer=False, password="bob-password-1")
        create_group("Service Desk", members=[admin, bob])
        request = create_request(admin, "New starter: Erin", tasks=[
            TaskSpec(TaskKind.APPROVAL, "Manager approval", approver=bob),
            TaskSpec(TaskKind.ACTION, "Order a laptop", stage=2, analyst=bob),
        ])
        with batched_writes():
            for n in range(70):
                record(request, EntryKind.NOTE, admin, f"Step {n}")
        db.session.commit()
        ids = {"request": request.id, "approval": request.tasks[0].id, "action": request.tasks[1].id}
    try:
        with served(app) as base:
            yield base, ids
    finally:
        with app.app_context():
            db.engine.dispose()


def test_a_request_decided_forwarded_and_noted_in_place(sync_api, live_request):  # noqa: F811
    base, ids = live_request
    expect = sync_api.expect
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            problems = []
            page.on("console", lambda msg: msg.type == "error" and problems.append(msg.text))
            page.on("pageerror", lambda exc: problems.append(str(exc)))

            page.goto(f"{base}/requests/{ids['request']}")
            page.get_by_label("Email").fill("bob@desk.test")
            page.get_by_label("Password").fill("bob-password-1")
            page.get_by_role("button", name="Log in").click()
            expect(page.locator("h1")).to_contain_text("New starter: Erin")
            page.evaluate("window.stillTheSamePage = true")

            # The decision waiting for Bob is open on the page.
            approval = page.locator(f"#task-{ids['approval']}")
            approval.locator(f"#task{ids['approval']}-approve-reason").fill("Welcome aboard")
            approval.get_by_role("button", name="Approve").click()
            expect(page.locator("#messages")).to_have_text("Approved.")
            action = page.locator(f"#task-{ids['action']}")
            expect(action.locator(".status").first).to_have_text("In progress")

            # Forward's form is fetched when its details open: from the keyboard, Enter on
            # the summary, then Tab into the form.
            analyst = page.locator(f"#task{ids['action']}-forward-analyst")
            expect(analyst).to_have_count(0)
            action.locator("details.action-forward > summary").focus()
            page.keyboard.press("Enter")
            expect(analyst).to_be_visible()
            page.keyboard.press("Tab")
            expect(analyst).to_be_focused()
            analyst.select_option(label="Ada Admin")
            action.locator("details.action-forward button[type=submit]").click()
            expect(page.locator("#messages")).to_have_text("Task forwarded.")
            expect(page.locator(f"#task-{ids['action']}")).to_contain_text("Ada Admin")

            # A note on the task, through its fetched form.
            action = page.locator(f"#task-{ids['action']}")
            action.locator("details.action-note > summary").click()
            action.locator(f"#task{ids['action']}-note-note").fill("Laptop ordered")
            action.locator("details.action-note button[type=submit]").click()
            expect(page.locator("#messages")).to_have_text("Note added.")
            action = page.locator(f"#task-{ids['action']}")
            action.locator("details.task-timeline > summary").click()
            expect(action.locator("ol.timeline")).to_contain_text("Laptop ordered")

            # The request's timeline: the newest 50, then the rest in place.
            timeline = page.locator("section[aria-labelledby=timeline-h] ol.timeline > li.entry")
            expect(timeline).to_have_count(50)
            page.get_by_role("link", name="Older entries").click()
            expect(timeline).to_have_count(75)  # raised, 2 tasks added, 70 steps, the decision, the status
            expect(page.get_by_role("link", name="Older entries")).to_have_count(0)
            assert page.evaluate("window.stillTheSamePage") is True
            assert problems == []
        finally:
            browser.close()
