"""`make run` as a newcomer runs it: started, stopped by Ctrl-C (SIGINT to the
terminal's foreground group) or by SIGTERM to make, and started again at once.
Every process it started must be gone within 10 s, every time, and the ports
free for the next start (issue 12: gunicorn's worker used to deadlock on the
two signals and keep the port)."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.servers.process import free_ports

ROOT = Path(__file__).resolve().parents[2]
STOPPED_WITHIN = 10.0


def _process_tree(root_pid: int) -> set[int]:
    """root_pid and every process descended from it, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = set(), [root_pid]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, []))
    return tree


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def desk_home(tmp_path):
    portal, lmtp = free_ports(2)
    env = dict(os.environ)
    env.update({
        "HOME": str(tmp_path / "home"),  # gunicorn's control socket would land here
        "SWITCHBOARD_CONFIG": str(tmp_path / "switchboard.toml"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'desk.db'}",
        "SECRET_KEY": "make-run-test",
        "PORTAL_PORT": str(portal),
        "LMTP_PORT": str(lmtp),
        "RECEIVER_PROCESSES": "1",
    })
    env.pop("MAKEFLAGS", None)
    env.pop("MFLAGS", None)
    (tmp_path / "home").mkdir()
    return env, portal, lmtp, tmp_path


def _start(env, log: Path) -> subprocess.Popen:
    # A session of its own: its process group stands for the terminal's foreground group.
    return subprocess.Popen(["make", "--no-print-directory", "run"], cwd=ROOT, env=env, start_new_session=True,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def _wait_until_running(make: subprocess.Popen, portal: int, lmtp: int, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if make.poll() is not None:
            pytest.fail(f"make run exited with {make.returncode}:\n{log.read_text()[-3000:]}")
        if _answers(portal) and _answers(lmtp) and "scheduler active" in log.read_text():
            return
        time.sleep(0.2)
    pytest.fail(f"make run did not come up within 90 s:\n{log.read_text()[-3000:]}")


def _stop_and_check(make, signal_it, portal, lmtp, log) -> float:
    tree = _process_tree(make.pid)
    assert len(tree) >= 6, f"expected make, the runner, gunicorn's master and worker, receiver, scheduler: {tree}"
    started = time.monotonic()
    signal_it(make)
    while time.monotonic() - started < STOPPED_WITHIN + 5:
        if not any(_alive(pid) for pid in tree):
            break
        time.sleep(0.05)
    took = time.monotonic() - started
    left = sorted(pid for pid in tree if _alive(pid))
    if left:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pytest.fail(f"still running {took:.1f} s after the signal: {left}\n{log.read_text()[-3000:]}")
    make.wait(5)
    assert took < STOPPED_WITHIN, f"stopping took {took:.1f} s"
    assert _port_free(portal) and _port_free(lmtp), "a port is still held after make run stopped"
    return took


def _ctrl_c(make):
    os.killpg(make.pid, signal.SIGINT)


def _sigterm_to_make(make):
    os.kill(make.pid, signal.SIGTERM)


def _make_killed(make):
    # make itself dies without a word: the runner notices its parent is gone.
    os.kill(make.pid, signal.SIGKILL)


def _run_and_stop(desk_home, how) -> float:
    """One `make run`: started, running, stopped by `how`; the seconds the stop took."""
    env, portal, lmtp, tmp = desk_home
    log = tmp / "make-run.log"
    make = _start(env, log)
    try:
        _wait_until_running(make, portal, lmtp, log)
        return _stop_and_check(make, how, portal, lmtp, log)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()


@pytest.mark.parametrize("how", [_ctrl_c, _sigterm_to_make], ids=["ctrl-c", "sigterm-to-make"])
def test_make_run_stops_everything_and_starts_again_five_times(desk_home, how):
    env, portal, lmtp, tmp = desk_home
    times = [_run_and_stop(desk_home, how) for _ in range(5)]
    print(f"stopped in {', '.join(f'{t:.1f}' for t in times)} s")
    assert "Switchboard stopped." in (tmp / "make-run.log").read_text()
    assert not (tmp / "home" / ".gunicorn").exists(), "gunicorn put its control socket in the user's home"
    # The first start wrote the config every later command reads.
    written = (tmp / "switchboard.toml").read_text()
    assert f"PORTAL_PORT = {portal}" in written
    assert f'DESK_URL = "http://127.0.0.1:{portal}"' in written
    assert (tmp / "switchboard.toml").stat().st_mode & 0o077 == 0, "the config file may hold a database password"


def test_the_runner_stops_everything_when_make_is_killed(desk_home):
    _run_and_stop(desk_home, _make_killed)
    assert "make is gone; stopping." in (desk_home[3] / "make-run.log").read_text()
