"""Working a call through the portal's forms: log it, forward, update,
resolve, close and reopen it, and see every step in its timeline; bad
input and missing or closed calls answered clearly."""

import html as html_lib
import re

from switchboard.calls.models import Call, CallStatus
from switchboard.calls.services import get_call, log_call
from switchboard.db import db
from switchboard.history.models import HistoryEntry
from switchboard.people.models import Person
from tests.portal.conftest import count, field_error, is_fragment


def _timeline(html: str) -> list[str]:
    """The timeline's summary lines, oldest first (the page shows newest first)."""
    section = html.split('id="timeline-h"', 1)[1]
    return [html_lib.unescape(s) for s in re.findall(r'<p class="entry-summary">(.*?)</p>', section)][::-1]


def test_log_forward_resolve_close_reopen_through_the_forms(login, people):
    portal = login("anna")
    response = portal.post(
        "/calls/new",
        {
            "customer_email": "Erin@Example.org",
            "customer_name": "Erin Example",
            "summary": "Laptop will not boot",
            "description": "Black screen since this morning",
            "priority": "2",
            "group": str(people["service_desk"].id),
        },
    )
    assert response.status_code == 303
    call = db.session.scalars(db.select(Call)).one()
    assert response.headers["Location"] == f"/calls/{call.id}"
    assert call.customer.email == "erin@example.org" and call.customer.name == "Erin Example"
    page = portal.get(f"/calls/{call.id}").get_data(as_text=True)
    assert f"{call.ref} logged." in page
    assert "Laptop will not boot" in page and "P2 High" in page and "Black screen since this morning" in page

    steps = [
        ("forward", {"forward-analyst": str(people["bob"].id), "forward-group": str(people["service_desk"].id),
                     "forward-note": "Bob has the spare"}),
        ("update", {"update-note": "Swapped the disk", "update-internal": "y"}),
        ("resolve", {"resolve-resolution": "New disk fitted"}),
        ("close", {"close-note": "Customer confirmed"}),
        ("reopen", {"reopen-reason": "It failed again"}),
    ]
    for action, form in steps:
        response = portal.post(f"/calls/{call.id}/{action}", form)
        assert response.status_code == 303, (action, response.get_data(as_text=True))

    page = portal.get(f"/calls/{call.id}").get_data(as_text=True)
    assert _timeline(page) == [
        "Logged by Anna Analyst for Erin Example",
        "Forwarded to Service Desk",
        "Forwarded to Bob Analyst / Service Desk",
        "Internal note by Anna Analyst",
        "Status Open → Open/Resolved",
        "Status Open/Resolved → Closed",
        "Status Closed → Open",
    ]
    assert "Bob has the spare" in page and "New disk fitted" in page and "It failed again" in page
    assert page.count('<span class="tag tag-internal">Internal</span>') == 1
    db.session.expire_all()
    assert get_call(call.id).status is CallStatus.OPEN


def test_buttons_follow_the_calls_state(login, people):
    portal = login("anna")
    call = log_call(people["anna"], "Mail slow", customer=people["carol"])
    db.session.commit()
    page = portal.get(f"/calls/{call.id}").get_data(as_text=True)
    assert _offered(page) == {"update", "forward", "resolve", "hold", "priority", "close", "mail"}

    assert portal.post(f"/calls/{call.id}/hold", {"hold-reason": "Waiting for the vendor"}).status_code == 303
    page = portal.get(f"/calls/{call.id}").get_data(as_text=True)
    assert "resume" in _offered(page) and "hold" not in _offered(page)
    assert portal.post(f"/calls/{call.id}/resume", {"resume-note": ""}).status_code == 303
    assert portal.post(f"/calls/{call.id}/priority", {"priority-priority": "1", "priority-reason": "CEO"}).status_code == 303
    assert portal.post(f"/calls/{call.id}/close", {}).status_code == 303
    page = portal.get(f"/calls/{call.id}").get_data(as_text=True)
    assert _offered(page) == {"reopen", "mail"}
    assert "Priority P3 Medium → P1 Critical" in _timeline(page)


def _offered(page: str) -> set[str]:
    """The actions the call's page offers: one <details> each, open or to be opened."""
    return set(re.findall(r'<details class="action action-(\w+)"', page))


def _form_posting_to(page: str, call_id: int, action: str) -> bool:
    return f'action="/calls/{call_id}/{action}"' in page


def test_the_page_builds_the_note_form_and_loads_the_others_when_opened(login, people):
    """Forms on demand: the page carries the note form; every other action is a closed
    <details> whose form htmx fetches when it is opened, and whose body without JS is a
    link to the page with that form open."""
    portal = login("anna")
    call = log_call(people["anna"], "Mail slow", customer=people["carol"], analyst=people["bob"],
                    group=people["service_desk"])
    db.session.commit()
    page = portal.get(f"/calls/{call.id}").get_data(as_text=True)
    assert re.search(r'<details class="action action-update" open id="action-update">', page)
    assert _form_posting_to(page, call.id, "update") and 'id="update-note"' in page
    # The "who will be told" hint stays on the note form.
    assert "Unticked, the note is mailed to Carol Customer &lt;carol@example.org&gt;" in page
    for action in ("forward", "resolve", "hold", "priority", "close", "mail"):
        details = re.search(rf'<details class="action action-{action}" id="action-{action}"([^>]*)>(.*?)</details>',
                            page, re.S)
        assert details, action
        attributes, body = details.groups()
        assert f'hx-get="/calls/{call.id}/{action}/form"' in attributes and 'hx-trigger="toggle once"' in attributes
        assert f'href="/calls/{call.id}?form={action}#action-{action}"' in body
        assert not _form_posting_to(page, call.id, action)

    def form(action):
        response = portal.get(f"/calls/{call.id}/{action}/form", headers={"HX-Request": "true"})
        assert response.status_code == 200, (action, response.status_code)
        html = response.get_data(as_text=True)
        assert is_fragment(html) and html.lstrip().startswith("<form") and _form_posting_to(html, call.id, action)
        assert 'name="csrf_token"' in html and 'hx-target="#call"' in html
        assert "HX-Request" in response.headers["Vary"]
        return html

    # The forward form starts from the current owner; the priority form from the priority.
    forward = form("forward")
    assert f'<option value="{people["bob"].id}" selected>Bob Analyst</option>' in forward
    assert f'<option value="{people["service_desk"].id}" selected>Service Desk</option>' in forward
    assert re.findall(r'<option (?:selected )?value="(\d+)"(?: selected)?>', form("priority"))  # a select
    assert re.findall(r'<option (?:selected value="(\d+)"|value="(\d+)" selected)>', form("priority")) == [("3", "")]
    mail = form("mail")
    assert 'value="carol@example.org"' in mail and f'value="{call.ref}: Mail slow"' in mail
    for action in ("update", "resolve", "hold", "close"):
        assert f'id="{action}-' in form(action)
    assert portal.post(f"/calls/{call.id}/hold", {"hold-reason": "the vendor"}).status_code == 303
    assert 'id="resume-note"' in form("resume")
    assert portal.post(f"/calls/{call.id}/close", {}).status_code == 303
    assert 'id="reopen-reason"' in form("reopen")

    # A form loaded on demand posts like the inline one did.
    response = portal.post(f"/calls/{call.id}/reopen", {"reopen-reason": "Again"}, htmx=True)
    assert response.status_code == 200 and "Status Closed → Open" in _timeline(response.get_data(as_text=True))


def test_a_form_is_refused_as_its_action_would_be(login, people, portal):
    """The form route answers as the action's POST does: 409 for an action that does not
    fit the call's state, 404 for a call that does not exist, the login page for a session
    that is not staff (any analyst may see any call)."""
    portal = login("anna")
    call = log_call(people["anna"], "Mail slow", customer=people["carol"])
    db.session.commit()
    assert portal.post(f"/calls/{call.id}/close", {}).status_code == 303
    for action, data in (("resolve", {"resolve-resolution": "Fixed"}), ("hold", {"hold-reason": "x"}),
                         ("update", {"update-note": "x"}), ("forward", {"forward-group": "1"})):
        posted = portal.post(f"/calls/{call.id}/{action}", data)
        loaded = portal.get(f"/calls/{call.id}/{action}/form", headers={"HX-Request": "true"})
        assert posted.status_code == loaded.status_code == 409, (action, posted.status_code, loaded.status_code)
        # As a message in the page's message area, the details left as they were.
        assert loaded.headers["HX-Retarget"] == "#messages" and "Not possible now" in loaded.get_data(as_text=True)
    # Without htmx too (no redirect to a page that would not show the form).
    assert portal.get(f"/calls/{call.id}/resolve/form").status_code == 409
    assert portal.get("/calls/999/forward/form", headers={"HX-Request": "true"}).status_code == 404
    assert portal.post("/calls/999/forward", {"forward-group": "1"}).status_code == 404

    # Bob, once an analyst, now a customer: his session opens no form (nor does the POST).
    portal.logout()
    bob = login("bob")
    people["bob"].is_analyst = False
    db.session.commit()
    for answer in (bob.get(f"/calls/{call.id}/reopen/form"), bob.post(f"/calls/{call.id}/reopen", {"reopen-reason": "x"})):
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/login?next=")
    # htmx is told to go to the login page; no form comes back.
    answer = bob.get(f"/calls/{call.id}/reopen/form", headers={"HX-Request": "true"})
    assert answer.status_code == 401 and answer.headers["HX-Redirect"] == "/login" and answer.data == b""


def test_without_js_the_link_opens_the_page_with_that_form(login, people):
    portal = login("anna")
    call = log_call(people["anna"], "Mail slow", customer=people["carol"])
    db.session.commit()
    # The form route, asked for without htmx, sends the browser to the page with the form open.
    response = portal.get(f"/calls/{call.id}/forward/form")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/calls/{call.id}?form=forward#action-forward"
    page = portal.get(f"/calls/{call.id}?form=forward").get_data(as_text=True)
    assert re.search(r'<details class="action action-forward" open id="action-forward">', page)
    assert _form_posting_to(page, call.id, "forward") and 'id="forward-analyst"' in page
    assert re.search(r'<details class="action action-update" open id="action-update">', page)  # still there
    assert not _form_posting_to(page, call.id, "hold")
    # A name that is no action, or one that does not fit the call: the page without it.
    for asked in ("nonsense", "reopen", "resume", "", "update%00"):
        response = portal.get(f"/calls/{call.id}?form={asked}")
        assert response.status_code == 200, asked
        page = response.get_data(as_text=True)
        assert page.count("<details class=\"action action-") == 7 and page.count("<form method=\"post\" action=\"/calls/") == 1
        assert not _form_posting_to(page, call.id, "reopen")


def test_bad_input_is_shown_beside_the_field_and_changes_nothing(login, people):
    portal = login("anna")
    response = portal.post(
        "/calls/new",
        {"customer_email": "not an address", "summary": "Printer jammed", "priority": "3"},
    )
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Not a valid email address" in field_error(page, "customer_email")
    assert 'value="Printer jammed"' in page  # what was typed stays
    response = portal.post(
        "/calls/new", {"customer_email": "new.person@example.org", "summary": "   ", "priority": "3"}
    )
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "summary") == "A call needs a summary."
    # The customer it would have created was rolled back with the call.
    assert count(Call) == 0
    assert db.session.scalar(db.select(Person).where(Person.email == "new.person@example.org")) is None
    response = portal.post("/calls/new", {"customer_email": "", "summary": "x", "priority": "9"})
    page = response.get_data(as_text=True)
    assert field_error(page, "customer_email") == "Give the customer&#39;s email address."
    assert field_error(page, "priority") == "Not a valid choice."

    call = log_call(people["anna"], "VPN drops", customer=people["carol"])
    db.session.commit()
    entries = count(HistoryEntry)
    response = portal.post(f"/calls/{call.id}/resolve", {"resolve-resolution": " "})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "resolve-resolution") == "Say how the call was resolved."
    assert re.search(r'<details class="action action-resolve" open id="action-resolve">', page)
    response = portal.post(f"/calls/{call.id}/forward", {"forward-analyst": "", "forward-group": ""})
    assert field_error(response.get_data(as_text=True), "forward-analyst") == "Choose an analyst or a group to forward to."
    response = portal.post(
        f"/calls/{call.id}/forward",
        {"forward-analyst": str(people["anna"].id), "forward-group": str(people["network"].id)},
    )
    assert field_error(response.get_data(as_text=True), "forward-analyst") == "Anna Analyst is not in Network."
    db.session.expire_all()
    assert count(HistoryEntry) == entries and get_call(call.id).status is CallStatus.OPEN


def test_missing_call_is_a_404_page_and_a_wrong_state_a_409_page(login, people):
    portal = login("anna")
    response = portal.get("/calls/999")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "<h1>Not found</h1>" in page and "There is no call 999." in page and "Traceback" not in page
    assert portal.post("/calls/999/close", {}).status_code == 404
    assert portal.get("/calls/nope").status_code == 404

    call = log_call(people["anna"], "Mail slow", customer=people["carol"])
    db.session.commit()
    response = portal.post(f"/calls/{call.id}/reopen", {})
    assert response.status_code == 409
    assert "only a resolved or closed call can be reopened" in response.get_data(as_text=True)


def test_htmx_note_returns_the_call_fragment_with_the_new_note(login, people):
    portal = login("anna")
    call = log_call(people["anna"], "Mail slow", customer=people["carol"])
    db.session.commit()
    response = portal.post(f"/calls/{call.id}/update", {"update-note": "Cleared the queue"}, htmx=True)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert is_fragment(page) and page.lstrip().startswith("<div id=\"call\"")
    assert "Note added." in page and "Update by Anna Analyst" in _timeline(page)
    assert "Cleared the queue" in page
    # A mistake comes back as the same fragment with the message beside the field.
    response = portal.post(f"/calls/{call.id}/update", {"update-note": ""}, htmx=True)
    assert response.status_code == 422 and is_fragment(response.get_data(as_text=True))
    assert field_error(response.get_data(as_text=True), "update-note") == "Write a note or attach a file."
    # Error pages become a message for the page's message area.
    response = portal.post("/calls/999/update", {"update-note": "x"}, htmx=True)
    assert response.status_code == 404 and response.headers["HX-Retarget"] == "#messages"
    assert is_fragment(response.get_data(as_text=True))
    # Without htmx the same URL gives the whole page.
    assert not is_fragment(portal.get(f"/calls/{call.id}").get_data(as_text=True))


def test_call_list_filters_and_htmx_results(login, people):
    portal = login("bob")
    log_call(people["anna"], "Printer jammed", customer=people["carol"], analyst=people["bob"])
    log_call(people["anna"], "VPN drops", customer=people["carol"], group=people["network"])
    log_call(people["anna"], "Mail slow", customer=people["carol"], analyst=people["anna"])
    db.session.commit()

    page = portal.get("/calls/").get_data(as_text=True)
    assert "3 calls" in page and all(s in page for s in ("Printer jammed", "VPN drops", "Mail slow"))
    page = portal.get("/calls/?scope=mine").get_data(as_text=True)
    assert "1 call<" in page and "Printer jammed" in page and "Mail slow" not in page
    page = portal.get("/calls/?scope=groups").get_data(as_text=True)
    assert "VPN drops" in page and "Printer jammed" not in page
    response = portal.get("/calls/?q=vpn", headers={"HX-Request": "true"})
    page = response.get_data(as_text=True)
    assert is_fragment(page) and "VPN drops" in page and "Mail slow" not in page
    assert "HX-Request" in response.headers["Vary"]
    assert "No calls match." in portal.get("/calls/?status=closed").get_data(as_text=True)


def test_call_list_pages_through_more_calls_than_fit_one_page(login, people):
    from portal.calls.views import PAGE_SIZE

    for n in range(PAGE_SIZE + 3):
        log_call(people["anna"], f"Ticket number {n:03d}", customer=people["carol"])
    db.session.commit()
    portal = login("anna")
    first = portal.get("/calls/?status=all").get_data(as_text=True)
    # The list pages by position (?after=): follow "Next" as a person would.
    next_link = re.search(r'<a href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    second = portal.get(next_link).get_data(as_text=True)
    on_first = set(re.findall(r"Ticket number (\d{3})", first))
    on_second = set(re.findall(r"Ticket number (\d{3})", second))
    assert len(on_first) == PAGE_SIZE and len(on_second) == 3
    assert not on_first & on_second
    assert f"{PAGE_SIZE + 3}" in first  # the total is shown


def test_a_timeline_entry_shows_who_when_and_its_files(login, people):
    """Each entry on the call's page: its kind, who wrote it (by name, by address when they
    have no name, 'The desk' when nobody did), when, whether it is internal, and its files as
    download links with their sizes, newest first."""
    from datetime import datetime, timezone

    from switchboard.history.models import EntryKind
    from switchboard.history.services import NewAttachment, record
    from switchboard.people.services import create_person

    nameless = create_person("nameless@desk.test", "", analyst=True, customer=False)
    call = log_call(people["anna"], "Scanner offline", customer=people["carol"])
    by_anna = record(call, EntryKind.NOTE, people["anna"], "Checked the cable", internal=True,
                     attachments=[NewAttachment("cable.jpg", "image/jpeg", b"j" * 2048)])
    by_nameless = record(call, EntryKind.FORWARD, nameless, "Forwarded to Network")
    by_desk = record(call, EntryKind.ESCALATION, None, "Response target missed")
    logged = db.session.query(HistoryEntry).filter_by(call_id=call.id, kind=EntryKind.LOGGED).one()
    for minute, entry in enumerate((logged, by_anna, by_nameless, by_desk)):
        entry.created_at = datetime(2026, 3, 4, 9, 4 + minute, 30, tzinfo=timezone.utc)
    db.session.commit()
    page = login("anna").get(f"/calls/{call.id}").get_data(as_text=True)
    entries = re.findall(r'<li class="entry (.*?)</li>\n', page.split('id="timeline-h"', 1)[1], re.S)
    assert len(entries) == 4  # the three, and the call's logging (the oldest)
    desk, forward, note = entries[:3]
    assert 'tag-escalation">Escalation</span>' in desk and '<span class="author">The desk</span>' in desk
    assert '<time datetime="2026-03-04T09:07:30+00:00">2026-03-04 09:07 UTC</time>' in desk
    assert 'tag-forward">Forwarded</span>' in forward and '<span class="author">nameless@desk.test</span>' in forward
    assert "entry-internal" not in forward and "Internal" not in forward
    assert '<span class="tag tag-internal">Internal</span>' in note and "Anna Analyst" in note
    file_id = by_anna.attachments[0].id
    assert f'<a href="/attachments/{file_id}" download>cable.jpg</a> <span class="hint">2.0 KB</span>' in note
    assert "Logged" in entries[3]
