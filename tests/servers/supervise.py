"""Runs one server command so that none of its processes outlive the test run or linger as zombies.

Started by `process.py` as `python supervise.py PARENT_PID [--pidfile PATH] [--grace SECONDS] -- CMD...`. It makes
itself a child subreaper (orphaned server workers are re-parented here and reaped, even where
PID 1 reaps nobody), asks the kernel for SIGTERM when the test process dies, and on SIGTERM stops
the server: SIGTERM to the process named in --pidfile (the real daemon, when CMD is a wrapper
script), else to CMD; then SIGKILL for every descendant left after --grace seconds (default 5). It exits once
no descendant is left. Standard library only.
"""

import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE_SECONDS = 5.0

_stop_requested = False


def _request_stop(signum, frame):
    global _stop_requested
    _stop_requested = True


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses; fields resume after the last ")".
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _pid_from(pidfile: str) -> int | None:
    try:
        with open(pidfile) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _reap(exits: dict[int, int]) -> bool:
    """Collect every finished child into `exits` (pid -> exit code); False once none is left."""
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True
        exits[pid] = os.waitstatus_to_exitcode(wait_status)


def main(argv: list[str]) -> int:
    parent = int(argv[0])
    split = argv.index("--")
    options = dict(zip(argv[1:split:2], argv[2:split:2]))
    pidfile = options.get("--pidfile")
    grace = float(options.get("--grace", GRACE_SECONDS))
    command = argv[split + 1:]

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    if os.getppid() != parent:  # the test process died before PDEATHSIG was armed
        return 1

    # Not subprocess.Popen: the reaping loop below collects its exit status with everyone else's.
    server = os.posix_spawnp(command[0], command, os.environ)
    exits: dict[int, int] = {}
    kill_at = None
    while True:
        status = exits.get(server)
        if _stop_requested and kill_at is None:
            kill_at = time.monotonic() + grace
            target = _pid_from(pidfile) if pidfile else None
            if target is None and status is None:
                target = server
            if target is not None:
                try:
                    os.kill(target, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        if kill_at is not None and time.monotonic() > kill_at:
            for pid in _descendants(os.getpid()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            kill_at = time.monotonic() + 1.0
        if not _reap(exits) and server in exits:
            status = exits[server]
            return status if status >= 0 else 128 - status
        time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
