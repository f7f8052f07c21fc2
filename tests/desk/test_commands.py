"""The operator's commands, run the way a script runs them (Flask's CLI runner)."""

import json
import re

from switchboard.calls.services import close_call, log_call
from switchboard.db import db
from switchboard.people.models import Person
from switchboard.people.services import find_person


def test_stats_json_shape_counts_by_lower_case_status(app, people):
    call = log_call(people["anna"], "one", customer=people["carol"])
    log_call(people["anna"], "two", customer=people["carol"])
    close_call(call, people["anna"])
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["desk", "stats", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["calls"] == {"open": 1, "pending": 0, "resolved": 0, "closed": 1}
    assert data["requests"]["open"] == 0 and "in_progress" in data["requests"]
    assert set(data["tasks"]) >= {"pending", "in_progress", "done", "awaiting_decision", "approved", "rejected"}


def test_create_admin_reads_password_from_stdin_never_argv(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "create-admin", "--email", "Root@Desk.Test", "--name", "Root"],
                           input="correct-horse-battery\n")
    assert result.exit_code == 0, result.output
    admin = find_person("root@desk.test")
    assert admin.is_admin and admin.check_password("correct-horse-battery")
    assert "correct-horse" not in result.output
    again = runner.invoke(args=["users", "create-admin", "--email", "root@desk.test"], input="another-long-one\n")
    assert again.exit_code != 0 and "already exists" in again.output
    short = runner.invoke(args=["users", "create-admin", "--email", "x@desk.test"], input="short\n")
    assert short.exit_code != 0 and "10 characters" in short.output
    assert find_person("x@desk.test") is None


def test_ensure_admin_creates_one_once_and_prints_password(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["users", "ensure-admin"])
    assert first.exit_code == 0 and "password:" in first.output
    password = first.output.split("password:")[1].split()[0]
    admin = find_person("admin@switchboard.local")
    assert admin.check_password(password)
    second = runner.invoke(args=["users", "ensure-admin"])
    assert "exists already" in second.output and "password:" not in second.output
    assert db.session.query(Person).filter(Person.is_admin).count() == 1


def test_demo_loads_once(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["desk", "demo"])
    assert result.exit_code == 0, result.output
    data = json.loads(runner.invoke(args=["desk", "stats", "--json"]).output)
    assert sum(data["calls"].values()) == 3 and data["requests"]["in_progress"] == 1
    assert runner.invoke(args=["desk", "demo"]).exit_code != 0
    # What the output says to do, done as written: a newcomer can then log in as a demo analyst.
    addresses = re.search(r"Demo analysts \(([^)]*)\)", result.output).group(1).split(", ")
    assert len(addresses) == 3
    assert "`flask --app wsgi users set-password --email ADDRESS`" in result.output
    done = runner.invoke(args=["users", "set-password", "--email", addresses[0]], input="demo-password-1\n")
    assert done.exit_code == 0, done.output
    assert find_person(addresses[0]).is_analyst and find_person(addresses[0]).check_password("demo-password-1")
