"""Requests in the portal: raising one with tasks, its page, approvals
decided only by the approver, tasks completed and forwarded."""

import re

from switchboard.db import db
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
