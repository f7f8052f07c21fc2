"""My work: what an analyst sees first after logging in."""

import re

from switchboard.calls.services import close_call, log_call
from switchboard.db import db
from switchboard.requests.models import TaskKind
from switchboard.requests.services import TaskSpec, create_request


def _section(html, heading_id):
    part = html.split(f'id="{heading_id}"', 1)[1].split("</section>", 1)[0]
    total = int(re.search(r'<span class="count-badge">(\d+)</span>', part).group(1))
    return total, re.findall(r'<a class="item-title" [^>]*><span class="ref">[^<]+</span> ([^<]+)</a>', part)


def test_my_work_lists_my_calls_tasks_decisions_and_my_groups_queue(login, people):
    anna, bob, carol = people["anna"], people["bob"], people["carol"]
    log_call(anna, "Server down", customer=carol, priority_id=1, analyst=anna)
    log_call(anna, "Toner low", customer=carol, analyst=anna)
    done = log_call(anna, "Old one", customer=carol, analyst=anna)
    close_call(done, anna)
    log_call(anna, "Bob's call", customer=carol, analyst=bob)
    log_call(anna, "Nobody's yet", customer=carol, group=people["service_desk"])
    log_call(anna, "Network queue", customer=carol, group=people["network"])
    create_request(
        bob,
        "New starter",
        tasks=[
            TaskSpec(TaskKind.ACTION, "Create accounts", analyst=anna),
            TaskSpec(TaskKind.ACTION, "Order laptop", group=people["service_desk"]),
            TaskSpec(TaskKind.APPROVAL, "Approve budget", approver=anna),
        ],
    )
    db.session.commit()

    page = login("anna").get("/").get_data(as_text=True)
    assert "<h1>My work</h1>" in page
    assert _section(page, "my-calls") == (2, ["Server down", "Toner low"])
    assert _section(page, "my-tasks") == (1, ["Create accounts"])
    assert _section(page, "decisions") == (1, ["Approve budget"])
    assert _section(page, "group-calls") == (1, ["Nobody&#39;s yet"])
    assert _section(page, "group-tasks") == (1, ["Order laptop"])
    assert "2 unassigned in my groups" in page


def test_my_work_when_there_is_nothing(login, people):
    page = login("bob").get("/").get_data(as_text=True)
    assert "No open calls assigned to you." in page and "Waiting for my decision" not in page
