"""Paging as a person meets it: a call's timeline newest first, 50 entries at a time,
with an "Older entries" control that loads the next page in place (htmx) or opens
the call's page from there (no JS); the call list paged by position with "Next" and
"Previous" links that can be bookmarked. Every entry and every call shows once, in
order, none missing; positions that are not ones are a 404."""

import re
from datetime import timedelta

import pytest

from switchboard.calls.services import log_call
from switchboard.db import batched_writes, db, utcnow
from switchboard.history.models import EntryKind, HistoryEntry
from switchboard.history.services import record

ENTRY_SUMMARY = re.compile(r'<p class="entry-summary">(Step \d+)</p>')
TICKET = re.compile(r"Ticket (\d{3})")


def _older_control(html: str) -> tuple[str, str] | None:
    """The "Older entries" control: its link (no JS) and its htmx URL."""
    match = re.search(r'<li class="timeline-more">\s*<a href="([^"]+)" hx-get="([^"]+)"', html)
    return (match.group(1).replace("&amp;", "&"), match.group(2).replace("&amp;", "&")) if match else None


@pytest.fixture
def long_call(people):
    """A call with 120 steps on its timeline after "Logged"; steps 60-79 share one instant
    (only the id orders them), so the first page boundary falls among equals."""
    call = log_call(people["anna"], "Long story", customer=people["carol"])
    start = utcnow() - timedelta(hours=2)
    logged = db.session.scalars(db.select(HistoryEntry).where(HistoryEntry.call_id == call.id)).one()
    logged.created_at = start - timedelta(hours=1)
    with batched_writes():
        entries = [record(call, EntryKind.NOTE, people["anna"], f"Step {n}") for n in range(120)]
    for n, entry in enumerate(entries):
        entry.created_at = start + timedelta(seconds=60 if 60 <= n < 80 else n)
    db.session.commit()
    return call


def test_older_entries_load_in_place_until_the_first_with_none_twice_and_none_missing(login, long_call):
    portal = login("anna")
    page = portal.get(f"/calls/{long_call.id}").get_data(as_text=True)
    seen = ENTRY_SUMMARY.findall(page)
    assert seen == [f"Step {n}" for n in range(119, 69, -1)]  # the newest 50, newest first
    control = _older_control(page)
    assert control is not None and "Older entries" in page
    while control is not None:
        fragment = portal.get(control[1], headers={"HX-Request": "true"}).get_data(as_text=True)
        assert "<html" not in fragment and fragment.lstrip().startswith("<li")  # list items, swapped in place
        seen += ENTRY_SUMMARY.findall(fragment)
        control = _older_control(fragment)
    # Then "Logged" closes the timeline: 121 entries in all.
    assert seen == [f"Step {n}" for n in range(119, -1, -1)]
    assert "Logged by Anna Analyst" in fragment


def test_older_entries_without_javascript_open_the_call_page_from_there(login, long_call):
    portal = login("anna")
    page = portal.get(f"/calls/{long_call.id}").get_data(as_text=True)
    link, fragment_url = _older_control(page)
    older = portal.get(link).get_data(as_text=True)
    assert ENTRY_SUMMARY.findall(older) == [f"Step {n}" for n in range(69, 19, -1)]
    assert "Newest entries" in older and "<html" in older
    # The fragment URL asked for without htmx sends the browser to that page too.
    response = portal.get(fragment_url)
    assert response.status_code == 303 and response.headers["Location"] == link.split("#")[0]


@pytest.mark.parametrize("position", ["x", "1-0", "12", "-5-3", "1-99999999999", "9" * 19 + "-1", "1-2-3"])
def test_a_timeline_position_that_is_not_one_is_a_404(login, long_call, position):
    portal = login("anna")
    assert portal.get(f"/calls/{long_call.id}?before={position}").status_code == 404
    assert portal.get(f"/calls/{long_call.id}/timeline?before={position}",
                      headers={"HX-Request": "true"}).status_code == 404


def _calls(people, n: int):
    calls = [log_call(people["anna"], f"Ticket {i:03d}", customer=people["carol"]) for i in range(n)]
    start = utcnow() - timedelta(days=1)
    for i, call in enumerate(calls):
        # Tickets 70-79 were updated at the same instant: the id decides their order (and
        # the first page ends among them).
        call.updated_at = start + timedelta(minutes=70 if 70 <= i < 80 else i)
    db.session.commit()
    return calls


def _next(html: str, rel: str) -> str | None:
    match = re.search(rf'<a href="([^"]+)" rel="{rel}"', html)
    return match.group(1).replace("&amp;", "&") if match else None


def test_the_call_list_pages_by_position_with_every_call_once_in_order(login, people):
    _calls(people, 123)
    portal = login("anna")
    url, pages, seen = "/calls/?status=all&q=Ticket", [], []
    while url:
        html = portal.get(url).get_data(as_text=True)
        assert "123 calls" in html  # the total stays on every page
        pages.append((url, TICKET.findall(html)))
        seen += pages[-1][1]
        url = _next(html, "next")
    assert [len(p) for _, p in pages] == [50, 50, 23]
    assert seen == [f"{i:03d}" for i in range(122, -1, -1)]
    # "Previous" from the last page gives the middle page back, and the filters stay in the URL.
    last = portal.get(pages[-1][0]).get_data(as_text=True)
    previous = _next(last, "prev")
    assert "q=Ticket" in previous and "status=all" in previous
    assert TICKET.findall(portal.get(previous).get_data(as_text=True)) == pages[1][1]
    # A bookmarked page is the same page later, and so is one bookmarked by number before.
    assert TICKET.findall(portal.get(pages[1][0]).get_data(as_text=True)) == pages[1][1]
    assert TICKET.findall(portal.get("/calls/?status=all&q=Ticket&page=2").get_data(as_text=True)) == pages[1][1]
    first = portal.get(pages[0][0]).get_data(as_text=True)
    assert _next(first, "prev") is None and "Newest" not in first.split('class="pager"', 1)[1]


def test_a_call_updated_while_paging_moves_to_the_top_and_is_not_shown_twice(login, people):
    calls = _calls(people, 80)
    portal = login("anna")
    first = portal.get("/calls/?status=all").get_data(as_text=True)
    # Ticket 20 sits on page 2; someone updates it before "Next" is followed.
    calls[20].updated_at = utcnow()
    db.session.commit()
    second = portal.get(_next(first, "next")).get_data(as_text=True)
    on_second = TICKET.findall(second)
    assert "020" not in on_second
    assert on_second == [f"{i:03d}" for i in range(29, -1, -1) if i != 20]


@pytest.mark.parametrize("query", ["after=x", "after=1-0", "before=12", "after=1-99999999999",
                                   "after=1-1&before=1-1", "after=" + "9" * 19 + "-1", "page=2&after=1-1"])
def test_a_list_position_that_is_not_one_is_a_404(login, query):
    assert login("anna").get(f"/calls/?{query}").status_code == 404


def test_a_reference_finds_its_call_by_number_alone(login, people):
    calls = _calls(people, 3)
    log_call(people["anna"], f"Follow-up to {calls[1].ref}", customer=people["carol"])
    db.session.commit()
    portal = login("anna")
    for text in (calls[1].ref, calls[1].ref.lower(), f"#{calls[1].id}", f"call {calls[1].id}"):
        html = portal.get("/calls/", query_string={"status": "all", "q": text}).get_data(as_text=True)
        assert ">1 call<" in html and "Ticket 001" in html and "Follow-up" not in html, text
    # A bare number is a reference or a summary's text.
    html = portal.get("/calls/", query_string={"status": "all", "q": str(calls[1].id)}).get_data(as_text=True)
    assert "Ticket 001" in html and "Follow-up" in html


def test_a_text_search_counts_up_to_its_bound_and_still_pages_through_every_match(login, people, monkeypatch):
    from portal.calls import views

    monkeypatch.setattr(views, "SEARCH_COUNTED", 60)
    _calls(people, 123)
    portal = login("anna")
    url, seen = "/calls/?status=all&q=Ticket", []
    while url:
        html = portal.get(url).get_data(as_text=True)
        assert ">More than 60 calls<" in html
        seen += TICKET.findall(html)
        url = _next(html, "next")
    assert seen == [f"{i:03d}" for i in range(122, -1, -1)]
    # Under the bound, the exact count; a list without a text search is counted in full.
    assert ">3 calls<" in portal.get("/calls/?status=all&q=Ticket 12").get_data(as_text=True)
    assert ">123 calls<" in portal.get("/calls/?status=all").get_data(as_text=True)
