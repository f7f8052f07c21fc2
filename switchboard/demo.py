"""A small, realistic data set for trying the desk: `flask --app wsgi desk demo`."""

from switchboard.calls.services import forward_call, log_call, resolve_call, update_call
from switchboard.db import db
from switchboard.errors import InvalidInput
from switchboard.people.models import Group, Person
from switchboard.people.services import create_group, create_person, find_person
from switchboard.requests.models import TaskKind
from switchboard.requests.services import TaskSpec, approve_task, create_request

# Names the analysts: without their addresses a newcomer cannot log in as one.
DEMO_PASSWORD_NOTE = ("Demo analysts ({addresses}) have no password; set one with "
                      "`flask --app wsgi users set-password --email ADDRESS`.")


def load_demo() -> str:
    if find_person("sam.ortiz@demo.switchboard.local") is not None:
        raise InvalidInput("The demo data is loaded already.")
    analyst = lambda email, name: create_person(email, name, analyst=True, customer=False)  # noqa: E731
    sam = analyst("sam.ortiz@demo.switchboard.local", "Sam Ortiz")
    priya = analyst("priya.nair@demo.switchboard.local", "Priya Nair")
    lee = analyst("lee.chen@demo.switchboard.local", "Lee Chen")
    desk = _group("Service Desk", [sam, priya])
    network = _group("Network", [lee])
    jo = create_person("jo.baker@example.com", "Jo Baker")
    ravi = create_person("ravi.patel@example.com", "Ravi Patel")
    mona = create_person("mona.field@example.com", "Mona Field")

    vpn = log_call(jo, "VPN disconnects every few minutes", "Since this morning, on home Wi-Fi.", source="email")
    forward_call(vpn, sam, group=network, note="Looks like the new VPN profile.")
    update_call(vpn, lee, "Pushed the old profile back to Jo's laptop.", internal=True)

    printer = log_call(sam, "Printer on floor 3 prints blank pages", customer=ravi, priority_id=4, group=desk)
    resolve_call(printer, sam, "Replaced the toner cartridge.")

    mail = log_call(priya, "Cannot open shared mailbox", "Outlook says: access denied.", customer=mona,
                    priority_id=2, analyst=priya, group=desk)
    update_call(mail, mona, "It worked on Friday.")

    starter = create_request(
        sam,
        "New starter: Alex Kim",
        "Laptop, accounts and a desk phone from Monday.",
        requester=mona,
        tasks=[
            TaskSpec(TaskKind.APPROVAL, "Manager approval", approver=mona),
            TaskSpec(TaskKind.ACTION, "Order laptop", stage=2, group=desk),
            TaskSpec(TaskKind.ACTION, "Create accounts", stage=2, analyst=lee, group=network),
        ],
    )
    approve_task(starter.tasks[0], mona, "Approved, budget code 4410.")
    db.session.flush()
    people = db.session.query(Person).count()
    return (
        f"Loaded demo data: {people} people, groups {desk.name} and {network.name}, "
        f"calls {vpn.ref}, {printer.ref}, {mail.ref}, request {starter.ref}. "
        + DEMO_PASSWORD_NOTE.format(addresses=", ".join(p.email for p in (sam, priya, lee)))
    )


def _group(name: str, members) -> Group:
    # `make run` may have made "Service Desk" already (the desk's default group): join it.
    group = db.session.scalar(db.select(Group).where(Group.name == name))
    if group is None:
        return create_group(name, members=members)
    group.members.extend(m for m in members if m not in group.members)
    return group
