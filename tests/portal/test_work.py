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


def _badge_on_call_page(html):
    # The call page's SLA facts: "<dd>{sla name} {badge}" (calls/_sla.html sla_badge).
    return re.search(r"<dt>SLA</dt><dd>Standard (.*?)(?: <span class=\"hint\">|</dd>)", html).group(1)


def _line(html, call):
    return html.split(f'<span class="ref">{call.ref}</span>', 1)[1].split("</li>", 1)[0]


def test_a_call_line_shows_the_sla_badge_the_call_page_shows(login, people):
    # call_items writes sla_badge's markup out (a macro call per line cost time): a line in
    # My work and in the call list must still say what the call's page says.
    from datetime import timedelta

    from switchboard.calls.services import hold_call
    from switchboard.db import utcnow
    from switchboard.slm import admin
    from switchboard.slm.models import Target
    from switchboard.slm.sweep import run_sweep

    anna, carol = people["anna"], people["carol"]
    admin.save_sla(people["admin"], "Standard", targets={1: (300, 600), 2: (None, 1200), 3: (None, 3600)},
                   is_default=True, levels={Target.FIX: [admin.LevelSpec(50)]})
    db.session.commit()
    breached = log_call(anna, "Past due", customer=carol, analyst=anna, priority_id=1)
    escalated = log_call(anna, "Half used", customer=carol, analyst=anna, priority_id=2)
    due = log_call(anna, "Just due", customer=carol, analyst=anna, priority_id=3)
    held = log_call(anna, "On hold", customer=carol, analyst=anna, priority_id=3)
    hold_call(held, anna, "Waiting for the customer")
    db.session.commit()
    run_sweep(utcnow() + timedelta(minutes=11))

    portal = login("anna")
    pages = [portal.get("/").get_data(as_text=True), portal.get("/calls/?scope=mine").get_data(as_text=True)]
    badges = {}
    for call in (breached, escalated, due, held):
        badges[call.summary] = badge = _badge_on_call_page(portal.get(f"/calls/{call.id}").get_data(as_text=True))
        for page in pages:
            assert f"\n    {badge}\n    <span>updated" in _line(page, call), call.summary
    assert "SLA breached" in badges["Past due"] and "SLA level 1" in badges["Half used"]
    assert 'class="sla-due"' in badges["Just due"] and badges["On hold"] == ""


def test_a_call_line_names_its_customer_analyst_and_group(login, people):
    # Lines are read as plain values (switchboard.calls.queries.CallLine), not as the people
    # and groups themselves: a person without a name is still shown by their address.
    from switchboard.people.services import create_person

    anna, carol = people["anna"], people["carol"]
    nameless = create_person("no.name@example.org", "")
    calls = {
        "Both": log_call(anna, "Both", customer=carol, analyst=anna, group=people["network"]),
        "Analyst": log_call(anna, "Analyst", customer=nameless, analyst=anna),
        "Group": log_call(anna, "Group", customer=carol, group=people["network"], priority_id=1),
        "Nobody": log_call(anna, "Nobody", customer=nameless, priority_id=4),
    }
    db.session.commit()
    page = login("anna").get("/calls/").get_data(as_text=True)
    meta = {name: re.findall(r"<span[^>]*>([^<]+)</span>", _line(page, call).split('class="item-meta">')[1])
            for name, call in calls.items()}
    assert meta["Both"] == ["Open", "P3 Medium", "Carol Customer", "→ Anna Analyst / Network"]
    assert meta["Analyst"] == ["Open", "P3 Medium", "no.name@example.org", "→ Anna Analyst"]
    assert meta["Group"] == ["Open", "P1 Critical", "Carol Customer", "→ Network"]
    assert meta["Nobody"] == ["Open", "P4 Low", "no.name@example.org", "Unassigned"]
