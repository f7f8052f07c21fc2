"""Every main screen in a real Chromium, as people on a phone meet it: the
bytes it costs on the wire (first visit, repeat visit, an htmx action) against
the page weight budget; axe-core's WCAG 2.1 A/AA rules at a phone's and a
desktop's size; Tab reaching every control with a visible focus ring; and the
phone-size screenshots the README shows (docs/screenshots/, made on every run
and written when a screen changed, so they never go stale; the clock and the
data are fixed, so an unchanged screen leaves the work tree clean).

One Chromium for the module (Debian's, as tests/portal/test_browser.py starts
it); the desk is the real app on a loopback port over the `app` fixture's
database, so each test runs on SQLite and on PostgreSQL."""

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine

from switchboard.db import db
from tests.portal.live import served
# sync_api: the playwright module, or the reason it cannot run (skipped locally, failed under CI=true).
from tests.portal.test_browser import CHROMIUM, CHROMIUM_ARGS, sync_api  # noqa: F401

HERE = Path(__file__).parent
AXE = HERE / "axe" / "axe.min.js"
AXE_VERSION = "4.14.1"  # from the npm registry; tests/portal/axe/README.md says how to upgrade
SCREENSHOTS = HERE.parent.parent / "docs" / "screenshots"

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

# The budget (issue 12), in bytes as Chromium counts them (transferSize: headers and compressed body).
FIRST_VISIT_BUDGET = 60 * 1024  # page, stylesheet and script from an empty cache
REPEAT_VISIT_BUDGET = 15 * 1024  # the same screen again: the files come from the cache
HTMX_PARTIAL_BUDGET = 5 * 1024  # one fragment an htmx action swaps in

# WCAG 2.1 A and AA, the tags axe-core gives those rules.
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

# A fixed clock for the data and the pages, so the screenshots change only when the screens do.
CLOCK = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
ADMIN_EMAIL, ADMIN_PASSWORD = "ada.admin@demo.switchboard.local", "admin-password-1"

MAIL = (
    b"From: Jo Baker <jo.baker@example.com>\r\nTo: help@desk.example.org\r\n"
    b"Subject: Log call: the scanner on floor 2 jams\r\nMessage-ID: <screens-1@example.com>\r\n"
    b"Date: Mon, 02 Mar 2026 09:12:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    b"Every third page since this morning.\r\n"
)


@pytest.fixture(scope="module")
def chromium(sync_api):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def desk(app):
    """The demo data set, an admin who is also an analyst of the Service Desk, a
    mail account, an outgoing server, a call logged by mail and its acknowledgement
    in the outbox; the app served on a free loopback port. The clock is fixed."""
    with time_machine.travel(CLOCK, tick=False):
        screens = _seed()
        with served(app) as base:
            yield base, screens


def _seed() -> dict[str, str]:
    from switchboard.calls.customer_link import make_token
    from switchboard.calls.models import Call
    from switchboard.demo import load_demo
    from switchboard.desk.routing import make_default
    from switchboard.inbound.accounts import create_account
    from switchboard.inbound.process import process_pending
    from switchboard.inbound.store import store_message
    from switchboard.outbox.models import OutboxMessage
    from switchboard.outbox.servers import add_server
    from switchboard.people.models import Group
    from switchboard.people.services import create_person
    from switchboard.requests.models import Request
    from switchboard.slm import admin as slm_admin

    admin = create_person(ADMIN_EMAIL, "Ada Admin", admin=True, customer=False, password=ADMIN_PASSWORD)
    # Office hours and a default SLA before the demo's calls, so their pages show SLA times.
    office = slm_admin.save_calendar(admin, "London office", "Europe/London", {d: "09:00-17:00" for d in range(5)})
    sla = slm_admin.save_sla(admin, "Standard", calendar_id=office.id, is_default=True,
                             targets={2: (2 * 3600, 8 * 3600), 3: (4 * 3600, 16 * 3600), 4: (8 * 3600, 40 * 3600)})
    load_demo()
    desk_group = db.session.scalar(sa.select(Group).where(Group.name == "Service Desk"))
    desk_group.members.append(admin)
    make_default(desk_group)  # as `make run`'s first start does: My work shows "Unassigned"
    account = create_account("help", "lmtp", addresses=["help@desk.example.org"])
    server = add_server("relay", "127.0.0.1", port=9, security="none", from_address="help@desk.example.org",
                        timeout_seconds=1)
    db.session.flush()
    inbound = store_message(MAIL, source="pipe", account=account)
    db.session.commit()
    process_pending()
    db.session.commit()
    call = db.session.scalar(sa.select(Call).where(Call.summary == "Cannot open shared mailbox"))
    request = db.session.scalar(sa.select(Request))
    outbox = db.session.scalar(sa.select(OutboxMessage.id).order_by(OutboxMessage.id))
    assert outbox is not None, "no acknowledgement queued: the outbox screens would go unseen"
    return {
        "login": "/login",
        # What a customer's mail links to: their call, read-only, no login.
        "customer-call": f"/follow/{make_token(call.id, call.customer_id)}",
        "my-work": "/",
        "calls": "/calls/",
        "call": f"/calls/{call.id}",
        "new-call": "/calls/new",
        "requests": "/requests/",
        "request": f"/requests/{request.id}",
        "new-request": "/requests/new",
        "settings": "/me/settings",
        "admin-people": "/admin/people",
        "admin-new-person": "/admin/people/new",
        "admin-groups": "/admin/groups",
        "admin-group": f"/admin/groups/{desk_group.id}",
        "admin-priorities": "/admin/priorities",
        "admin-health": "/admin/health",
        "admin-calendars": "/admin/calendars",
        "admin-calendar": f"/admin/calendars/{office.id}",
        "admin-new-calendar": "/admin/calendars/new",
        "admin-sla": f"/admin/slas/{sla.id}",
        "admin-new-sla": "/admin/slas/new",
        "mail-accounts": "/admin/mail/accounts",
        "mail-account": f"/admin/mail/accounts/{account.id}",
        "mail-new-account": "/admin/mail/accounts/new",
        "mail-account-oauth2": f"/admin/mail/accounts/{account.id}/oauth2",
        "mail-inbound": "/admin/mail/inbound",
        "mail-inbound-message": f"/admin/mail/inbound/{inbound.inbound_id}",
        "mail-servers": "/admin/mail/servers",
        "mail-server": f"/admin/mail/servers/{server.id}",
        "mail-new-server": "/admin/mail/servers/new",
        "mail-server-oauth2": f"/admin/mail/servers/{server.id}/oauth2",
        "mail-templates": "/admin/mail/templates",
        "mail-template": "/admin/mail/templates/1",
        "mail-notifications": "/admin/mail/notifications",
        "mail-outbox": "/admin/mail/outbox",
        "mail-outbox-message": f"/admin/mail/outbox/{outbox}",
    }


def _log_in(page, base: str):
    page.goto(base + "/login")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base + "/")
    return page


# What the page and everything it loaded cost on the wire since it was opened.
TRANSFERRED = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const files = performance.getEntriesByType('resource').map(r => [r.name, r.initiatorType, r.transferSize]);
  const decoded = [nav, ...performance.getEntriesByType('resource')].reduce((sum, r) => sum + r.decodedBodySize, 0);
  return {page: nav.transferSize, files, decoded};
}"""


NAVIGATION = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  return `${location.href} ${nav.type} ${document.readyState} ${nav.transferSize} bytes`;
}"""


def _linked_files(page) -> set[str]:
    """The kinds of file the page links (a customer's page has a stylesheet and no script)."""
    return {kind for kind, selector in (("link", "link[rel=stylesheet]"), ("script", "script[src]"))
            if page.locator(selector).count()}


def _weigh(page) -> tuple[int, list, int]:
    """Bytes transferred (headers and compressed bodies), what came, and the bodies' size unpacked."""
    seen = page.evaluate(TRANSFERRED)
    return seen["page"] + sum(size for _name, _kind, size in seen["files"]), seen["files"], seen["decoded"]


def test_htmx_actions_swap_in_fragments_under_the_partial_budget(chromium, desk):
    base, screens = desk
    context = chromium.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        _log_in(page, base)
        page.goto(base + screens["calls"])
        page.evaluate("performance.clearResourceTimings()")
        with page.expect_response(lambda r: r.request.headers.get("hx-request") == "true"):
            page.get_by_label("Search").fill("printer")
        page.locator("#results").get_by_text("Printer on floor 3").wait_for()
        search = _fragments(page)

        page.goto(base + screens["call"])
        page.evaluate("performance.clearResourceTimings(); window.stillTheSamePage = true")
        page.locator("#update-note").fill("Asked Mona to try the web client.")
        with page.expect_response(lambda r: r.request.headers.get("hx-request") == "true"):
            page.locator("details.action-update button[type=submit]").click()
        page.locator("ol.timeline").get_by_text("Asked Mona to try the web client.").wait_for()
        assert page.evaluate("window.stillTheSamePage") is True
        note = _fragments(page)
    finally:
        context.close()
    print("htmx fragments (bytes):", search, note)
    for what, sizes in (("search the calls", search), ("a note on a call", note)):
        assert sizes, f"{what}: no fragment was fetched"
        assert max(sizes) < HTMX_PARTIAL_BUDGET, f"{what}: {sizes} bytes"


def _fragments(page) -> list[int]:
    return [size for _name, kind, size in page.evaluate(TRANSFERRED)["files"] if kind in ("xmlhttprequest", "fetch")]


# Screens shown in the README (docs/screenshots/NAME.png, phone size).
SHOWN = ("login", "my-work", "calls", "call", "new-call", "request", "admin-people", "mail-inbound",
         "customer-call")

# Everything Tab should reach, marked with its place; each focus the walk lands on is
# recorded with whether it shows a focus ring (an outline or a box shadow).
MARK_CONTROLS = """() => {
  // Not frames: the only one is the template editor's sandboxed mail preview, whose links
  // are the mail's, not the desk's controls.
  const selector = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]';
  const controls = [...document.querySelectorAll(selector)].filter(el =>
    !el.disabled && el.tabIndex >= 0 && el.checkVisibility({visibilityProperty: true}));
  controls.forEach((el, i) => { el.dataset.control = i; });
  window.focusWalk = [];
  document.addEventListener('focusin', () => {
    const el = document.activeElement;
    const style = getComputedStyle(el);
    const ring = (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2) || style.boxShadow !== 'none';
    window.focusWalk.push([el.dataset.control ?? null, ring]);
  }, true);

  return controls.map(el => ({
    radio: el.type === 'radio' ? el.name : null,
    what: `${el.tagName.toLowerCase()} ${el.id ? '#' + el.id : ''} "${(el.labels?.[0]?.innerText || el.innerText || el.getAttribute('aria-label') || el.name || '').trim().slice(0, 40)}"`,
  }));
}"""


def test_every_main_screen_is_light_accessible_and_pictured(chromium, desk, backend):
    """Per screen, on a phone: the first visit (the browser's cache off: the devtools
    switch, not a new profile per screen) and the repeat visit (cache on) within the
    budget, the files not asked for again; the README's screenshot; then, with every
    <details> open, axe-core clean at 390x844 and, the same page widened, at
    1280x800, and Tab reaching every control with a focus ring. All problems are
    reported together."""
    base, screens = desk
    context = chromium.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    context.add_init_script(path=str(AXE))  # through the devtools, so the CSP does not stop it
    problems, weights = [], {}
    try:
        page = context.new_page()
        devtools = context.new_cdp_session(page)
        devtools.send("Network.enable")
        for name, path in screens.items():
            if name == "my-work":
                _log_in(page, base)
            devtools.send("Network.setCacheDisabled", {"cacheDisabled": True})
            for _attempt in range(2):
                page.goto(base + path)
                assert page.url == base + path, f"{name}: sent to {page.url}"
                first, files, unpacked = _weigh(page)
                # Once in some fifteen runs on a loaded machine Chromium listed no file at all
                # for a first visit (an undercount, never an overcount): such a visit is measured
                # again, and reported below if it happens twice.
                if files:
                    break
            devtools.send("Network.setCacheDisabled", {"cacheDisabled": False})
            if name == "login":
                page.goto(base + path)  # fills the cache for every repeat visit
            page.goto(base + path)
            repeat, again, _unpacked = _weigh(page)
            weights[name] = (first, repeat, unpacked)
            if first > FIRST_VISIT_BUDGET:
                problems.append(f"{name}: first visit {first} bytes > {FIRST_VISIT_BUDGET} ({files})")
            if repeat >= REPEAT_VISIT_BUDGET:
                problems.append(f"{name}: repeat visit {repeat} bytes >= {REPEAT_VISIT_BUDGET} ({again})")
            # The stylesheet and script came on the first visit, and from the cache without
            # asking the desk on the repeat visit.
            if not {kind for _n, kind, size in files if size > 0} >= _linked_files(page):
                problems.append(f"{name}: the first visit did not fetch the stylesheet and the script: {files} "
                                f"({page.evaluate(NAVIGATION)})")
            if not all(size == 0 for _n, kind, size in again if kind in ("link", "script")):
                problems.append(f"{name}: the repeat visit fetched files again: {again}")

            if name in SHOWN and backend == "sqlite":  # one writer: xdist runs the backends at once
                _screenshot(page, name)
            # Every folded form open (a call's actions, a task's decision): their fields count too.
            page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
            # Forms on demand (a call's actions) arrive with htmx once their details open.
            page.wait_for_function(ALL_FORMS_LOADED)
            assert page.evaluate("axe.version") == AXE_VERSION
            problems += [f"phone {name}: {v}" for v in _axe_violations(page)]
            problems += [f"phone {name}: {p}" for p in _keyboard_problems(page)]
            page.set_viewport_size(DESKTOP)
            problems += [f"desktop {name}: {v}" for v in _axe_violations(page)]
            page.set_viewport_size(PHONE)
    finally:
        context.close()
    print("page weights (first visit, repeat visit, first visit unpacked; bytes):", json.dumps(weights))
    assert not problems, "\n".join(problems)


# Every <details> that fetches its form when opened (_forms.html on_demand) holds it.
ALL_FORMS_LOADED = "() => [...document.querySelectorAll('details[hx-get] > .on-demand')].every(b => b.querySelector('form'))"


def _axe_violations(page) -> list[str]:
    results = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        WCAG_21_AA,
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + "; ".join(" ".join(node["target"]) + " " + node["failureSummary"].replace("\n", " ") for node in v["nodes"][:5])
        for v in results["violations"]
    ]


def _keyboard_problems(page) -> list[str]:
    controls = page.evaluate(MARK_CONTROLS)
    # Tab until focus comes round to where it started (a date field has a stop per part,
    # the preview frame one per link in it), with a bound in case it never does.
    walk, presses = [], 0
    while presses < 3 * len(controls) + 30:
        for _ in range(10):
            page.keyboard.press("Tab")
        presses += 10
        walk = page.evaluate("window.focusWalk")
        stops = [index for index, _ring in walk if index is not None]
        if stops and stops[0] in stops[1:]:
            break
    reached = {int(index) for index, _ring in walk if index is not None}
    radios = {controls[i]["radio"] for i in reached if controls[i]["radio"]}
    problems = [
        f"Tab never reaches {c['what']}"
        for i, c in enumerate(controls)
        if i not in reached and not (c["radio"] and c["radio"] in radios)
    ]
    problems += sorted({f"no visible focus ring on {controls[int(index)]['what']}"
                        for index, ring in walk if index is not None and not ring})
    return problems


def _screenshot(page, name: str) -> None:
    """Written only when the picture changed, through a temporary file: a reader never
    sees half a file, and an unchanged screen leaves the work tree clean."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    picture = page.screenshot(full_page=True, animations="disabled", caret="hide")
    target = SCREENSHOTS / f"{name}.png"
    if target.exists() and target.read_bytes() == picture:
        return
    partial = target.with_suffix(".png.partial")
    partial.write_bytes(picture)
    partial.replace(target)
