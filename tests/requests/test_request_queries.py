"""The task and request lists: my tasks, my groups' queue, the approvals
waiting for my word, and the request list's filters."""

from switchboard.db import db
from switchboard.requests.models import TaskKind
from switchboard.requests.queries import assigned_tasks, awaiting_decision, find_requests, group_queue_tasks
from switchboard.requests.services import TaskSpec, approve_task, complete_task, create_request, reject_task


def _titles(query):
    return [r.title for r in db.session.scalars(query)]


def test_tasks_for_me_my_groups_and_my_decisions(people):
    anna, bob, dave = people["anna"], people["bob"], people["dave"]
    request = create_request(
        anna,
        "New starter",
        requester=people["carol"],
        tasks=[
            TaskSpec(TaskKind.APPROVAL, "Manager approval", approver=dave),
            TaskSpec(TaskKind.ACTION, "Desk", analyst=anna),
            TaskSpec(TaskKind.ACTION, "Laptop", stage=2, group=people["service_desk"]),
            TaskSpec(TaskKind.ACTION, "Switch port", stage=2, group=people["network"]),
        ],
    )
    # Stage 2 has not started: nothing of it shows anywhere yet.
    assert _titles(assigned_tasks(anna)) == ["Desk"]
    assert _titles(group_queue_tasks(anna)) == []
    assert _titles(awaiting_decision(dave)) == ["Manager approval"]
    assert _titles(awaiting_decision(anna)) == []

    approve_task(request.tasks[0], dave)
    complete_task(request.tasks[1], anna)
    assert _titles(awaiting_decision(dave)) == []
    assert _titles(assigned_tasks(anna)) == []
    assert _titles(group_queue_tasks(anna)) == ["Laptop"]
    assert _titles(group_queue_tasks(bob)) == ["Laptop", "Switch port"]


def test_request_list_filters(people):
    anna, bob, dave = people["anna"], people["bob"], people["dave"]
    mine = create_request(anna, "Anna's request", tasks=[TaskSpec(TaskKind.ACTION, "Do it", analyst=anna)])
    approval = create_request(
        bob, "Needs Dave", tasks=[TaskSpec(TaskKind.APPROVAL, "Approve", approver=dave)]
    )
    create_request(bob, "Bob's request", tasks=[TaskSpec(TaskKind.ACTION, "Do it", analyst=anna)])
    reject_task(approval.tasks[0], dave, "No")

    assert set(_titles(find_requests(anna))) == {"Anna's request", "Bob's request"}
    assert _titles(find_requests(anna, status="rejected")) == ["Needs Dave"]
    assert set(_titles(find_requests(anna, scope="mine"))) == {"Anna's request", "Bob's request"}
    assert _titles(find_requests(bob, scope="mine")) == ["Bob's request"]
    assert _titles(find_requests(dave, scope="mine", status="all")) == ["Needs Dave"]
    assert _titles(find_requests(anna, text="anna")) == ["Anna's request"]
    assert _titles(find_requests(anna, text=f"REQ-{mine.id}")) == ["Anna's request"]
