"""Starting and stopping a server under `supervise.py`, free loopback ports, waiting for listeners."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
_SUPERVISOR = Path(__file__).with_name("supervise.py")


class ServerFailed(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1, below Linux's ephemeral range (32768+).

    Below that range, so an outgoing connection made meanwhile by another test cannot take the
    port between this check and the server binding it. The random start keeps parallel
    pytest-xdist workers apart; callers still retry when a bind fails.
    """
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return port
    raise ServerFailed("no free port found on 127.0.0.1 in 20000-32000")


def free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def accepts(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def greets(port: int, prefix: bytes, host: str = HOST) -> bool:
    """True when a server on `port` accepts a connection and its first line starts with `prefix`."""
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            return conn.makefile("rb").readline().startswith(prefix)
    except OSError:
        return False


class Supervised:
    """One server process tree, run by supervise.py; output goes to `output_path`."""

    def __init__(self, command: list[str], *, output_path: Path, pidfile: Path | None = None,
                 grace: float = 5.0, cwd: Path | None = None):
        self.command = command
        self.grace = grace  # seconds between SIGTERM and SIGKILL for whatever is left
        self.pidfile = pidfile  # where the daemon to SIGTERM writes its pid, if not `command` itself
        self.output_path = output_path
        self.cwd = cwd
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [sys.executable, str(_SUPERVISOR), str(os.getpid())]
        if self.pidfile:
            argv += ["--pidfile", str(self.pidfile)]
        argv += ["--grace", str(self.grace)]
        argv += ["--", *self.command]
        with open(self.output_path, "ab") as output:
            # Own session: a Ctrl-C in the terminal reaches pytest, whose teardown stops us.
            self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output,
                                             stderr=subprocess.STDOUT, cwd=self.cwd,
                                             start_new_session=True)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait_until_listening(self, ports: list[int], timeout: float, log: Path | None = None,
                             greetings: dict[int, bytes] | None = None) -> None:
        """Return once every port accepts connections (and, for those in `greetings`, sends a
        greeting starting with the given bytes); raise ServerFailed if the server died."""
        deadline = time.monotonic() + timeout
        waiting = list(ports)
        greetings = greetings or {}
        while waiting:
            if not self.running:
                raise ServerFailed(f"{self.command[0]} exited while starting\n{self.diagnostics(log)}")
            port = waiting[0]
            if greets(port, greetings[port]) if port in greetings else accepts(port):
                waiting.pop(0)
                continue
            if time.monotonic() > deadline:
                self.stop()
                raise ServerFailed(f"{self.command[0]} not listening on {waiting} after {timeout}s\n"
                                   f"{self.diagnostics(log)}")
            time.sleep(0.01)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and wait until every one of its processes is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                # The supervisor kills every descendant within its grace time; this is the last resort.
                process.kill()
                process.wait()

    def diagnostics(self, log: Path | None) -> str:
        parts = []
        for path in (self.output_path, log):
            if path is not None and path.exists():
                lines = path.read_text(errors="replace").splitlines()[-30:]
                parts.append(f"--- {path} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(parts)
