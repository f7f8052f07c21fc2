"""`outbox send` when its database cannot be reached: exit 75 (cron's next run tries again)
with one line on stderr, never a traceback, as `mail ingest` does; run as operators run
them, in their own processes."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    # A port that was free a moment ago and that nothing listens on now.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _unreachable_databases(tmp_path) -> dict[str, tuple[str, Path | None]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    return {
        "postgresql, nothing listening": (
            f"postgresql+psycopg://switchboard@127.0.0.1:{_closed_port()}/switchboard", None),
        "sqlite, no such directory": (
            f"sqlite:///{tmp_path}/missing/desk.db", tmp_path / "missing"),
        "sqlite, path under a file": (f"sqlite:///{a_file}/desk.db", None),
    }


def _run(url: str, *args: str, input: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, DATABASE_URL=url, SECRET_KEY="test-secret")
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                          input=input, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", ["postgresql, nothing listening", "sqlite, no such directory",
                                  "sqlite, path under a file"])
def test_outbox_send_without_its_database_exits_75_with_one_line(tmp_path, case):
    url, must_not_appear = _unreachable_databases(tmp_path)[case]
    done = _run(url, "outbox", "send", "--limit", "5")
    assert done.returncode == 75, done.stdout + done.stderr
    assert done.stdout == ""  # no "sent 0, ..." line that a script could take for a success
    assert done.stderr == "outbox send: the database is not available (OperationalError); exit 75\n"
    if must_not_appear is not None:
        assert not must_not_appear.exists()  # nothing was created on the way


def test_mail_ingest_says_the_same_in_the_same_case(tmp_path):
    url, _ = _unreachable_databases(tmp_path)["sqlite, no such directory"]
    done = _run(url, "mail", "ingest", "--recipient", "help@desk.test", "-",
                input="From: carol@example.org\nSubject: hello\n\nhi\n")
    assert done.returncode == 75, done.stdout + done.stderr
    assert done.stderr == "mail ingest: the database is not available (OperationalError); exit 75\n"
