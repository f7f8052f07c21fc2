"""Requests in the portal: raising one with tasks, its page, approvals
decided only by the approver, tasks completed and forwarded."""

import re
from datetime import timedelta

import pytest

from switchboard.db import batched_writes, db, utcnow
from switchboard.history.models import EntryKind, HistoryEntry
from switchboard.history.services import record
from switchboard.requests.models import Request, RequestStatus, TaskKind, TaskStatus
from switchboard.requests.services import TaskSpec, create_request, get_request
from tests.portal.conftest import count, field_error, is_fragment


def _rows(*rows):
    """Form data for the task rows of the new-request form."""
    data = {}
    for i, row in enumerate(rows):
        for key, value in row.items():
            data[f"tasks-{i}-{key}"] = value
    return data


def test_raise_a_request_with_tasks(login, people):
    portal = login("anna")
    response = portal.post(
        "/requests/new",
        {
            "title": "New starter: Erin",
            "description": "Starts Monday",
            "requester_email": "carol@example.org",
            **_rows(
                {"kind": "approval", "title": "Manager approval", "stage": "1", "approver_email": "bob@desk.test"},
                {"kind": "action", "title": "Order laptop", "stage": "2", "group": str(people["service_desk"].id)},
                {"kind": "action", "title": "", "stage": "1"},
            ),
        },
    )
    assert response.status_code == 303
    request = db.session.scalars(db.select(Request)).one()
    page = portal.get(response.headers["Location"]).get_data(as_text=True)
    assert f"{request.ref} raised." in page and "New starter: Erin" in page and "Carol Customer" in page
    approval, laptop = request.tasks
    assert approval.approver == people["bob"] and approval.status is TaskStatus.AWAITING_DECISION
    assert laptop.stage == 2 and laptop.status is TaskStatus.PENDING
    assert "Awaiting decision" in page and "Pending" in page
    # Anna is not the approver: she sees no decision buttons.
    assert f"/requests/tasks/{approval.id}/approve" not in page


def test_task_rows_complain_beside_their_fields_and_nothing_is_created(login, people):
    portal = login("anna")
    response = portal.post(
        "/requests/new",
        {
            "title": "Firewall change",
            **_rows(
                {"kind": "approval", "title": "Security approval", "stage": "1", "approver_email": ""},
                {"kind": "action", "title": "", "stage": "1", "approver_email": "x@example.org"},
                {"kind": "approval", "title": "CAB", "stage": "0", "approver_email": "not an address"},
            ),
        },
    )
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "tasks-0-approver_email") == "An approval task needs an approver."
    assert field_error(page, "tasks-1-title") == "Give the task a title, or clear the row."
    assert field_error(page, "tasks-2-stage") == "Stages count from 1 to 99."
    assert "Not a valid email address" in field_error(page, "tasks-2-approver_email")
    response = portal.post("/requests/new", {"title": " ", "requester_email": "new@example.org"})
    assert field_error(response.get_data(as_text=True), "title") == "A request needs a title."
    assert count(Request) == 0


def _approval_request(people, approver="bob"):
    request = create_request(
        people["anna"],
        "Open a port",
        tasks=[
            TaskSpec(TaskKind.APPROVAL, "Security approval", approver=people[approver]),
            TaskSpec(TaskKind.ACTION, "Change the firewall", stage=2, analyst=people["anna"]),
        ],
    )
    db.session.commit()
    return request


def test_the_approver_approves_and_the_next_stage_starts(login, people):
    request = _approval_request(people)
    approval, change = request.tasks
    portal = login("bob")
    page = portal.get(f"/requests/{request.id}").get_data(as_text=True)
    assert "This task is waiting for your decision." in page
    assert f'action="/requests/tasks/{approval.id}/approve"' in page
    response = portal.post(
        f"/requests/tasks/{approval.id}/approve", {f"task{approval.id}-approve-reason": "Fine by me"}, htmx=True
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert is_fragment(page) and "Approved." in page and "Approved by Bob Analyst" in page
    db.session.expire_all()
    assert approval.status is TaskStatus.APPROVED and change.status is TaskStatus.IN_PROGRESS

    # Anna completes the action task; the request completes.
    portal.logout()
    portal = login("anna")
    response = portal.post(f"/requests/tasks/{change.id}/complete", {f"task{change.id}-complete-note": "Port 443 open"})
    assert response.status_code == 303
    db.session.expire_all()
    assert get_request(request.id).status is RequestStatus.COMPLETED
    assert "Completed" in portal.get(f"/requests/{request.id}").get_data(as_text=True)


def test_only_the_approver_can_decide(login, people):
    request = _approval_request(people)
    approval = request.tasks[0]
    portal = login("admin")
    page = portal.get(f"/requests/{request.id}").get_data(as_text=True)
    assert f"/requests/tasks/{approval.id}/approve" not in page
    assert f"/requests/tasks/{approval.id}/reject" not in page
    for action in ("approve", "reject"):
        response = portal.post(f"/requests/tasks/{approval.id}/{action}", {f"task{approval.id}-{action}-reason": "me"})
        assert response.status_code == 403
        assert "Only the task&#39;s approver can approve or reject it." in response.get_data(as_text=True)
    db.session.expire_all()
    assert approval.status is TaskStatus.AWAITING_DECISION


def test_the_approver_rejects_with_a_reason(login, people):
    request = _approval_request(people)
    approval, change = request.tasks
    portal = login("bob")
    response = portal.post(f"/requests/tasks/{approval.id}/reject", {f"task{approval.id}-reject-reason": ""})
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), f"task{approval.id}-reject-reason") == "Say why you reject it."
    response = portal.post(f"/requests/tasks/{approval.id}/reject", {f"task{approval.id}-reject-reason": "Too risky"})
    assert response.status_code == 303
    db.session.expire_all()
    assert approval.status is TaskStatus.REJECTED and change.status is TaskStatus.CANCELLED
    page = portal.get(f"/requests/{request.id}").get_data(as_text=True)
    assert "Rejected by Bob Analyst" in page and "Too risky" in page


def test_forward_a_task_and_add_notes(login, people):
    request = create_request(
        people["anna"], "Desk move", tasks=[TaskSpec(TaskKind.ACTION, "Move the phone", group=people["service_desk"])]
    )
    db.session.commit()
    task = request.tasks[0]
    portal = login("anna")
    response = portal.post(
        f"/requests/tasks/{task.id}/forward",
        {f"task{task.id}-forward-analyst": str(people["bob"].id), f"task{task.id}-forward-group": ""},
    )
    assert response.status_code == 303
    response = portal.post(f"/requests/tasks/{task.id}/note", {f"task{task.id}-note-note": "Phone is in box 3"})
    assert response.status_code == 303
    response = portal.post(f"/requests/{request.id}/note", {"request-note-note": "Move is on Friday"})
    assert response.status_code == 303
    page = portal.get(f"/requests/{request.id}").get_data(as_text=True)
    assert "Forwarded to Bob Analyst" in page and "Phone is in box 3" in page and "Move is on Friday" in page
    response = portal.post(f"/requests/{request.id}/note", {"request-note-note": ""})
    assert field_error(response.get_data(as_text=True), "request-note-note") == "Write a note or attach a file."
    assert portal.get("/requests/999").status_code == 404
    assert portal.post("/requests/tasks/999/complete", {}).status_code == 404


def test_request_list(login, people):
    _approval_request(people)
    create_request(people["bob"], "Bob's request", tasks=[TaskSpec(TaskKind.ACTION, "Do it", analyst=people["bob"])])
    db.session.commit()
    portal = login("anna")
    page = portal.get("/requests/").get_data(as_text=True)
    assert "2 requests" in page and "Open a port" in page and "Bob&#39;s request" in page
    page = portal.get("/requests/?scope=mine", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert is_fragment(page) and "Open a port" in page and "Bob&#39;s request" not in page
    assert re.search(r"1 request<", page)


# -- paging: the list by position, a request's and a task's timeline a page at a time ---------

TITLE = re.compile(r"Errand (\d{3})")
ENTRY_SUMMARY = re.compile(r'<p class="entry-summary">(Step \d+)</p>')


def _requests(people, n: int):
    requests = [create_request(people["anna"], f"Errand {i:03d}") for i in range(n)]
    start = utcnow() - timedelta(days=1)
    for i, request in enumerate(requests):
        # Errands 70-79 were updated at the same instant: the id decides their order (and
        # the first page ends among them).
        request.updated_at = start + timedelta(minutes=70 if 70 <= i < 80 else i)
    db.session.commit()
    return requests


def _link(html: str, rel: str) -> str | None:
    match = re.search(rf'<a href="([^"]+)" rel="{rel}"', html)
    return match.group(1).replace("&amp;", "&") if match else None


def test_the_request_list_pages_by_position_with_every_request_once_in_order(login, people):
    _requests(people, 123)
    portal = login("anna")
    url, pages, seen = "/requests/?status=all&q=Errand", [], []
    while url:
        html = portal.get(url).get_data(as_text=True)
        assert "123 requests" in html  # the total stays on every page
        pages.append((url, TITLE.findall(html)))
        seen += pages[-1][1]
        url = _link(html, "next")
    assert [len(p) for _, p in pages] == [50, 50, 23]
    assert seen == [f"{i:03d}" for i in range(122, -1, -1)]
    # "Previous" from the last page gives the middle page back, the filters kept.
    previous = _link(portal.get(pages[-1][0]).get_data(as_text=True), "prev")
    assert "q=Errand" in previous and "status=all" in previous
    assert TITLE.findall(portal.get(previous).get_data(as_text=True)) == pages[1][1]
    # A page bookmarked by number before lists paged by position is still that page.
    assert TITLE.findall(portal.get("/requests/?status=all&q=Errand&page=2").get_data(as_text=True)) == pages[1][1]
    # A line says how many tasks its request has (counted in the list's own statement).
    assert "0 tasks" in portal.get(pages[0][0]).get_data(as_text=True)


@pytest.mark.parametrize("query", ["after=x", "before=12", "after=1-1&before=1-1", "page=2&after=1-1"])
def test_a_request_list_position_that_is_not_one_is_a_404(login, query):
    assert login("anna").get(f"/requests/?{query}").status_code == 404


def test_a_reference_finds_its_request_by_number_alone(login, people):
    requests = _requests(people, 3)
    create_request(people["anna"], f"Follow-up to {requests[1].ref}")
    db.session.commit()
    portal = login("anna")
    for text in (requests[1].ref, requests[1].ref.lower(), f"#{requests[1].id}", f"req {requests[1].id}"):
        html = portal.get("/requests/", query_string={"status": "all", "q": text}).get_data(as_text=True)
        assert ">1 request<" in html and "Errand 001" in html and "Follow-up" not in html, text
    # A bare number is a reference or a title's text.
    html = portal.get("/requests/", query_string={"status": "all", "q": str(requests[1].id)}).get_data(as_text=True)
    assert "Errand 001" in html and "Follow-up" in html


def test_a_request_search_counts_up_to_its_bound_and_pages_through_every_match(login, people, monkeypatch):
    from portal.requests import views

    monkeypatch.setattr(views, "SEARCH_COUNTED", 60)
    _requests(people, 80)
    portal = login("anna")
    url, seen = "/requests/?status=all&q=Errand", []
    while url:
        html = portal.get(url).get_data(as_text=True)
        assert ">More than 60 requests<" in html
        seen += TITLE.findall(html)
        url = _link(html, "next")
    assert seen == [f"{i:03d}" for i in range(79, -1, -1)]
    assert ">80 requests<" in portal.get("/requests/?status=all").get_data(as_text=True)


def _older_control(html: str) -> tuple[str, str] | None:
    match = re.search(r'<li class="timeline-more">\s*<a href="([^"]+)" hx-get="([^"]+)"', html)
    return (match.group(1).replace("&amp;", "&"), match.group(2).replace("&amp;", "&")) if match else None


@pytest.fixture
def long_request(people):
    """A request whose timeline has 120 steps after "Raised" (steps 60-79 at one instant),
    with a task whose timeline has 45 steps after "Added"."""
    request = create_request(people["anna"], "Long errand",
                             tasks=[TaskSpec(TaskKind.ACTION, "Long task", analyst=people["anna"])])
    task = request.tasks[0]
    start = utcnow() - timedelta(hours=2)
    for entry in db.session.scalars(db.select(HistoryEntry).where(
            (HistoryEntry.request_id == request.id) | (HistoryEntry.task_id == task.id))):
        entry.created_at = start - timedelta(hours=1)
    with batched_writes():
        steps = [record(request, EntryKind.NOTE, people["anna"], f"Step {n}") for n in range(120)]
        task_steps = [record(task, EntryKind.NOTE, people["bob"], f"Step {n}") for n in range(45)]
    for n, entry in enumerate(steps):
        entry.created_at = start + timedelta(seconds=60 if 60 <= n < 80 else n)
    for n, entry in enumerate(task_steps):
        entry.created_at = start + timedelta(seconds=n)
    db.session.commit()
    return request


def _timeline_part(html: str) -> str:
    return html.split('id="timeline-h"', 1)[1]


def test_a_request_timeline_loads_older_entries_in_place_none_twice_none_missing(login, long_request):
    portal = login("anna")
    page = _timeline_part(portal.get(f"/requests/{long_request.id}").get_data(as_text=True))
    seen = ENTRY_SUMMARY.findall(page)
    assert seen == [f"Step {n}" for n in range(119, 69, -1)]  # the newest 50, newest first
    control = _older_control(page)
    while control is not None:
        fragment = portal.get(control[1], headers={"HX-Request": "true"}).get_data(as_text=True)
        assert "<html" not in fragment and fragment.lstrip().startswith("<li")
        seen += ENTRY_SUMMARY.findall(fragment)
        control = _older_control(fragment)
    assert seen == [f"Step {n}" for n in range(119, -1, -1)]
    assert "Raised by Anna Analyst" in fragment
    # Without JS the control is a link to the request's page from there.
    link, fragment_url = _older_control(page)
    older = portal.get(link).get_data(as_text=True)
    assert ENTRY_SUMMARY.findall(_timeline_part(older)) == [f"Step {n}" for n in range(69, 19, -1)]
    assert "Newest entries" in older
    response = portal.get(fragment_url)
    assert response.status_code == 303 and response.headers["Location"] == link.split("#")[0]


def test_a_task_timeline_shows_its_newest_entries_and_pages_to_the_oldest(login, long_request):
    portal = login("anna")
    task = long_request.tasks[0]
    html = portal.get(f"/requests/{long_request.id}").get_data(as_text=True)
    part = html.split(f'id="task-{task.id}"', 1)[1].split('id="tasks-h"', 1)[0].split("</details>\n      </li>", 1)[0]
    # 45 steps, "Added" and "Status Pending → In progress": 47 in all, the newest 20 shown.
    assert "Task timeline (47)" in part
    seen = ENTRY_SUMMARY.findall(part)
    assert seen == [f"Step {n}" for n in range(44, 24, -1)]
    control = _older_control(part)
    link = control[0]
    while control is not None:
        fragment = portal.get(control[1], headers={"HX-Request": "true"}).get_data(as_text=True)
        seen += ENTRY_SUMMARY.findall(fragment)
        control = _older_control(fragment)
    assert seen == [f"Step {n}" for n in range(44, -1, -1)]
    # Without JS: the request's page with this task's timeline open from there.
    older = portal.get(link).get_data(as_text=True)
    task_part = older.split(f'id="task-{task.id}"', 1)[1].split('id="note-h"', 1)[0]
    assert '<details class="task-timeline" open>' in task_part and "Newest entries" in task_part
    assert ENTRY_SUMMARY.findall(task_part) == [f"Step {n}" for n in range(24, 4, -1)]
    # The request's own timeline is its newest page meanwhile.
    assert ENTRY_SUMMARY.findall(_timeline_part(older))[0] == "Step 119"
    assert portal.get(f"/requests/{long_request.id}?task=x&task_before=1-1").status_code == 404
    assert portal.get(f"/requests/tasks/{task.id}/timeline?before=1-0",
                      headers={"HX-Request": "true"}).status_code == 404


# -- task forms on demand --------------------------------------------------------------------


def test_task_forms_load_when_opened_and_are_refused_as_their_action_would_be(login, people):
    request = _approval_request(people)
    approval, change = request.tasks
    portal = login("bob")
    page = portal.get(f"/requests/{request.id}").get_data(as_text=True)
    # The decision waiting for Bob is open on the page; the note form on his approval task
    # is a details that loads its form when opened, with a no-JS link.
    assert f'action="/requests/tasks/{approval.id}/approve"' in page
    assert f'action="/requests/tasks/{approval.id}/note"' not in page
    assert f'hx-get="/requests/tasks/{approval.id}/note/form"' in page
    assert f'href="/requests/{request.id}?form=task{approval.id}-note#action-task{approval.id}-note"' in page
    for action in ("approve", "reject", "note", "forward"):
        response = portal.get(f"/requests/tasks/{approval.id}/{action}/form", headers={"HX-Request": "true"})
        assert response.status_code == 200, action
        form = response.get_data(as_text=True)
        assert form.lstrip().startswith("<form") and f'hx-post="/requests/tasks/{approval.id}/{action}"' in form
        assert 'name="csrf_token"' in form and f'id="task{approval.id}-{action}-' in form
    # The forward form starts from the task's owner.
    form = portal.get(f"/requests/tasks/{change.id}/forward/form", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert re.search(rf'<option selected value="{people["anna"].id}">|<option value="{people["anna"].id}" selected>', form)
    # Refused as the POST would be: a pending task cannot be completed yet (409), only the
    # approver decides (403), no such task (404).
    assert portal.get(f"/requests/tasks/{change.id}/complete/form", headers={"HX-Request": "true"}).status_code == 409
    assert portal.get(f"/requests/tasks/{approval.id}/complete/form").status_code == 409
    portal.logout()
    portal = login("admin")
    assert portal.get(f"/requests/tasks/{approval.id}/approve/form", headers={"HX-Request": "true"}).status_code == 403
    assert portal.get("/requests/tasks/999/note/form", headers={"HX-Request": "true"}).status_code == 404


def test_without_javascript_a_task_form_opens_on_the_request_page(login, people):
    request = _approval_request(people)
    approval, change = request.tasks
    portal = login("bob")
    response = portal.get(f"/requests/tasks/{approval.id}/forward/form")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/requests/{request.id}?form=task{approval.id}-forward#action-task{approval.id}-forward"
    page = portal.get(response.headers["Location"]).get_data(as_text=True)
    assert f'<details class="action action-forward" open id="action-task{approval.id}-forward"' in page
    assert f'action="/requests/tasks/{approval.id}/forward"' in page
    assert f'id="task{approval.id}-forward-analyst"' in page
    # A form that is not offered (the pending task cannot be completed) or not a form at all:
    # the page as usual, no error.
    for asked in (f"task{change.id}-complete", "task0-note", "nonsense"):
        response = portal.get(f"/requests/{request.id}", query_string={"form": asked})
        assert response.status_code == 200
        assert 'action="/requests/tasks/' in response.get_data(as_text=True)  # the decision, open
        assert f"/requests/tasks/{change.id}/complete\"" not in response.get_data(as_text=True)
    # A failed post shows the posted form open with its error.
    response = portal.post(f"/requests/tasks/{approval.id}/note", {f"task{approval.id}-note-note": ""}, htmx=True)
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), f"task{approval.id}-note-note") == "Write a note or attach a file."
