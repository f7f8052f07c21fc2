"""Requests and their workflow tasks: stages, approvals, who may decide."""

import pytest

from switchboard.errors import InvalidInput, InvalidTransition, PermissionDenied
from switchboard.requests.models import RequestStatus, TaskKind, TaskStatus
from switchboard.requests.services import (
    TaskSpec,
    add_task,
    approve_task,
    complete_task,
    create_request,
    forward_task,
    reject_task,
    update_task,
)


def _new_starter(people):
    return create_request(
        people["anna"],
        "New starter: Erin",
        "Laptop and accounts",
        requester=people["carol"],
        tasks=[
            TaskSpec(TaskKind.APPROVAL, "Manager approval", approver=people["dave"]),
            TaskSpec(TaskKind.ACTION, "Order laptop", stage=2, group=people["service_desk"]),
            TaskSpec(TaskKind.ACTION, "Create accounts", stage=2, analyst=people["bob"]),
        ],
    )


def test_stages_run_in_order_and_request_completes(people):
    request = _new_starter(people)
    approval, laptop, accounts = request.tasks
    assert request.ref.startswith("REQ-") and approval.ref == f"TASK-{approval.id}"
    assert approval.status is TaskStatus.AWAITING_DECISION
    assert laptop.status is TaskStatus.PENDING and accounts.status is TaskStatus.PENDING
    assert request.status is RequestStatus.IN_PROGRESS

    approve_task(approval, people["dave"], "Budget ok")
    assert approval.status is TaskStatus.APPROVED and approval.decision_reason == "Budget ok"
    assert laptop.status is TaskStatus.IN_PROGRESS and accounts.status is TaskStatus.IN_PROGRESS

    complete_task(laptop, people["anna"])
    assert request.status is RequestStatus.IN_PROGRESS
    complete_task(accounts, people["bob"], "Accounts made")
    assert request.status is RequestStatus.COMPLETED and request.completed_at is not None


def test_only_the_approver_decides(people):
    request = _new_starter(people)
    approval = request.tasks[0]
    for someone in ("anna", "admin", "carol"):
        with pytest.raises(PermissionDenied, match="approver"):
            approve_task(approval, people[someone])
    assert approval.status is TaskStatus.AWAITING_DECISION
    with pytest.raises(InvalidInput):
        reject_task(approval, people["dave"], "  ")
    reject_task(approval, people["dave"], "No budget this year")
    assert request.status is RequestStatus.REJECTED
    assert [t.status for t in request.tasks[1:]] == [TaskStatus.CANCELLED, TaskStatus.CANCELLED]
    with pytest.raises(InvalidTransition):
        approve_task(approval, people["dave"])
    with pytest.raises(InvalidTransition):
        add_task(request, people["anna"], TaskSpec(TaskKind.ACTION, "Too late"))


def test_task_rules(people):
    request = _new_starter(people)
    approval, laptop, _ = request.tasks
    with pytest.raises(InvalidTransition):
        complete_task(laptop, people["anna"])  # its stage has not started
    with pytest.raises(PermissionDenied):  # an action task has no approver at all
        approve_task(laptop, people["dave"])
    with pytest.raises(InvalidInput, match="approver"):
        add_task(request, people["anna"], TaskSpec(TaskKind.APPROVAL, "Who approves?"))
    with pytest.raises(PermissionDenied):
        forward_task(laptop, people["carol"], analyst=people["anna"])
    forward_task(laptop, people["anna"], analyst=people["bob"])
    assert laptop.assigned_analyst == people["bob"]
    update_task(approval, people["dave"], "Looking at it today")
    with pytest.raises(PermissionDenied):
        update_task(approval, people["carol"], "hello")
    with pytest.raises(PermissionDenied):
        create_request(people["carol"], "I want a pony")
