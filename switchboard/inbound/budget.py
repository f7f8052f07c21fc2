"""The budget one incoming message is read and acted on under: CPU seconds and memory.

Where it can be enforced depends on where the work runs:
- In a process's main thread (the receiver's acting processes, `mail process`, `mail ingest`,
  a portal worker serving requests in its main thread) a CPU timer (ITIMER_PROF, SIGPROF)
  interrupts the message once it has used its seconds. Python runs the handler between
  bytecodes, so a single call into C code (nh3, a regular expression) finishes first: that is
  why bounds.py keeps every such call linear before the budget is ever needed.
- Memory is capped per process (RLIMIT_AS, `limit_memory`), set by the processes that only act
  on mail: the receiver's acting processes and `mail ingest`. Going over it raises MemoryError in
  the message that asked, which is then too costly like one over its CPU time.
- In any other thread (RECEIVER_PROCESSES=0, the scheduler's sweep) signals cannot reach the
  work: the thread's CPU time is checked when each step ends, so an over-budget message is still
  marked failed and never retried automatically, but it is not cut short.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import threading
import time

from flask import current_app

DEFAULT_CPU_SECONDS = 20.0
DEFAULT_MEMORY_MB = 1024
REASON = "too costly to process"


class TooCostly(BaseException):
    """One message went over its budget; `what` says which part of it. A BaseException, as
    KeyboardInterrupt is: the parser's defensive `except Exception` fallbacks must not swallow
    it and go on reading the same message another way."""

    def __init__(self, what: str, inbound_id: int | None = None):
        super().__init__(f"{REASON}: {what}")
        self.what = what
        self.inbound_id = inbound_id


def _setting(name: str, default: float) -> float:
    value = current_app.config.get(name)
    if value in (None, ""):
        value = os.environ.get(name) or default
    return float(value)


def cpu_seconds() -> float:
    """INBOUND_MESSAGE_CPU_SECONDS: per message, for reading it and again for acting on it."""
    return _setting("INBOUND_MESSAGE_CPU_SECONDS", DEFAULT_CPU_SECONDS)


def memory_mb() -> float:
    """INBOUND_MESSAGE_MEMORY_MB: address space an acting process may grow by; 0: no cap."""
    return _setting("INBOUND_MESSAGE_MEMORY_MB", DEFAULT_MEMORY_MB)


def limit_memory() -> None:
    """Caps this process's address space at what it uses now plus INBOUND_MESSAGE_MEMORY_MB.
    For processes that only act on mail: every allocation beyond fails, in whatever asks."""
    extra = memory_mb()
    if extra <= 0:
        return
    with open("/proc/self/statm") as statm:
        in_use = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = in_use + int(extra * 1024 * 1024)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft == resource.RLIM_INFINITY or wanted < soft:
        resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))


@contextlib.contextmanager
def spending(seconds: float | None = None):
    """Runs one step of one message within `seconds` of CPU (default: the setting); raises
    TooCostly when it takes more, or when it runs out of memory."""
    seconds = cpu_seconds() if seconds is None else seconds
    if seconds <= 0:
        yield
        return
    what = f"more than {seconds:g} s of CPU"
    if threading.current_thread() is not threading.main_thread():
        started = time.thread_time()
        try:
            yield
        except MemoryError:
            raise TooCostly("out of memory") from None
        if time.thread_time() - started > seconds:
            raise TooCostly(what)
        return
    armed = True

    def over(signum, frame):
        if armed:  # a signal already on its way when the step ended is ignored
            raise TooCostly(what)

    previous = signal.signal(signal.SIGPROF, over)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    except MemoryError:
        raise TooCostly(f"more than {memory_mb():g} MB of memory") from None
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
