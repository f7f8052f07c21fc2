"""Acting on stored mail in the background, so an acknowledgement never waits
for it: workers take the ids the transports hand them, and a periodic sweep
acts on anything still new (left by a crash, a restart or a full queue).
The workers are threads of the receiver or, to use more than one core (the
receiver's own threads share one), processes forked from it."""

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import Counter


from switchboard.db import db

log = logging.getLogger(__name__)


def run_in_app(app, fn, *args, **kwargs):
    """Runs `fn` in a fresh app context with its own database session, removed after."""
    with app.app_context():
        try:
            return fn(*args, **kwargs)
        finally:
            db.session.remove()


_FORK = multiprocessing.get_context("fork")
_FINISH = "finish"  # handed to a worker: act on everything still new, report, stop


# Every wait on the gate's shared lock and semaphore ends after this long, to look whether the
# process on the other side still lives: a process killed (SIGKILL, an OOM kill) while it held
# the gate never releases it, and an acting process whose receiver is gone must not wait on.
WAIT_STEP = 0.25
_SLOTS = 32  # threads waiting on one gate at once, over all its processes; more look again every ms


class ParentGone(Exception):
    """Raised in an acting process that waits on (or enters) the gate after the process that
    made the gate, the receiver or `mail poll` that forked it, has gone."""


class _LockLost(ParentGone):
    """ParentGone while waiting to take the gate's lock back: it is not ours to release."""


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs (a killed child the parent has not reaped yet is a
    zombie: it exists, but it will never release what it held)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: existence is all we can learn
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True


class WriteGate:
    """Puts storing mail (someone waits for the answer) before acting on it
    (nobody does), within the receiver and the worker processes it forks.

    Acting on mail waits while mail is being stored, and until storing has
    been quiet for `quiet` seconds, though never more than `max_wait` between
    its transactions: during a burst the acknowledgements stay fast and the
    acting catches up after. On SQLite the gate also lets one writing
    transaction at a time through: SQLite has one write lock per file, and
    writers that collide on it wait in its busy handler, which sleeps in
    growing steps (up to 100 ms); queuing here wakes the next writer at once.
    Its state lives in shared memory, so forked workers obey it too.

    No wait on it is endless (a condition variable across processes is not: a process
    killed inside it leaves it locked, or leaves a notifier waiting for its wake-up): every
    wait ends after WAIT_STEP to look around. A forked process whose maker is gone gets
    ParentGone (at its next wait, or when it next asks for the gate), so it acts no further;
    a lock or a writer's turn left by a process that died is taken back from it."""

    def __init__(self, exclusive: bool, *, quiet: float = 0.02, max_wait: float = 0.25):
        self.exclusive = exclusive
        self.quiet = quiet
        self.max_wait = max_wait
        self._maker = os.getpid()  # the receiver or mail poll; the processes it forks obey it
        self._lock = _FORK.Lock()  # short holds only: guards the values below
        self._lock_holder = _FORK.RawValue("i", 0)  # pid inside _lock
        self._rescue = _FORK.Lock()  # one process at a time frees a lock left by a dead one
        # Each waiter sleeps on a bell of its own (a shared one lets a later sleeper take the
        # wake-up meant for an earlier one, which then sleeps its full time).
        self._slot_owner = _FORK.RawArray("i", _SLOTS)  # pid of the waiter at each bell, 0 free
        self._bells = [_FORK.Semaphore(0) for _ in range(_SLOTS)]
        self._busy = _FORK.RawValue("i", 0)  # pid of the writer holding the gate (exclusive), else 0
        self._urgent_waiting = _FORK.RawValue("i", 0)
        self._last_urgent = _FORK.RawValue("d", 0.0)  # time.monotonic() is the same clock in every process

    @classmethod
    def for_app(cls, app) -> "WriteGate":
        if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
            # A short quiet spell is enough: waiting for a longer one let acting fall behind a
            # steady 100 msg/s (measured: 88 acted on per second; with 5 ms, all 100).
            return cls(True, quiet=0.005, max_wait=0.25)
        # PostgreSQL: acting and storing touch different rows and never wait for each other.
        return cls(False, quiet=0)

    def quiet_for(self) -> float:
        """Seconds since mail was last stored (through this gate)."""
        return time.monotonic() - self._last_urgent.value

    def maker_gone(self) -> bool:
        """In a process forked from the gate's maker: whether the maker has gone."""
        return os.getpid() != self._maker and os.getppid() != self._maker

    @contextlib.contextmanager
    def urgent(self):
        """For storing mail a client waits to hear about."""
        with self._locked():
            self._last_urgent.value = time.monotonic()
            self._urgent_waiting.value += 1
            try:
                while self.exclusive and self._busy.value:
                    self._wait(WAIT_STEP)
            finally:
                self._urgent_waiting.value -= 1
            self._busy.value = os.getpid() if self.exclusive else 0
        try:
            yield
        finally:
            with self._locked(leaving=True):
                self._busy.value = 0
                self._last_urgent.value = time.monotonic()
                self._notify_all()

    @contextlib.contextmanager
    def background(self):
        """For work nobody waits on: goes after storing (see the class). In a forked
        process, raises ParentGone once the gate's maker has gone."""
        if self.maker_gone():
            raise ParentGone("the receiver that started this acting process has gone")
        with self._locked():
            give_up_waiting = time.monotonic() + self.max_wait
            while True:
                now = time.monotonic()
                blocked = self._urgent_waiting.value > 0 or (self.exclusive and self._busy.value)
                quiet_for = now - self._last_urgent.value
                if not blocked and (quiet_for >= self.quiet or now >= give_up_waiting):
                    break
                self._wait(WAIT_STEP if blocked else max(0.001, min(self.quiet - quiet_for, give_up_waiting - now)))
            self._busy.value = os.getpid() if self.exclusive else 0
        try:
            yield
        finally:
            with self._locked(leaving=True):
                self._busy.value = 0
                self._notify_all()

    # -- the parts of a condition variable, each wait bounded ------------------------------------

    def _free_turn_of_the_dead(self) -> None:
        """Called with the lock held, after a wait ran its full time: a writer that died
        holding the gate (killed mid-transaction) gives it back."""
        holder = self._busy.value
        if holder and holder != os.getpid() and not _alive(holder):
            log.warning("write gate: process %s died while writing; the gate is free again", holder)
            self._busy.value = 0

    @contextlib.contextmanager
    def _locked(self, *, leaving: bool = False):
        """The shared lock, waited for in steps. `leaving` gives the gate back: in a process
        whose maker has gone it then goes on without the lock (nobody is left to wait for
        this gate but the maker's other children, leaving too) rather than wait."""
        while not self._lock.acquire(timeout=WAIT_STEP):
            if self.maker_gone():
                if leaving:
                    yield
                    return
                raise ParentGone("the receiver that started this acting process has gone")
            self._free_lock_of_the_dead()
        self._lock_holder.value = os.getpid()
        try:
            yield
        except _LockLost:
            raise  # _wait could not take the lock back: nothing to release
        except BaseException:
            self._release()
            raise
        else:
            self._release()

    def _release(self) -> None:
        self._lock_holder.value = 0
        self._lock.release()

    def _free_lock_of_the_dead(self) -> None:
        holder = self._lock_holder.value
        if not holder or _alive(holder) or not self._rescue.acquire(timeout=WAIT_STEP):
            return
        try:
            if self._lock.acquire(block=False):
                self._lock.release()  # freed meanwhile
            elif self._lock_holder.value == holder:  # still held by the same dead process
                log.warning("write gate: process %s died holding the gate's lock; freed", holder)
                self._release()  # a plain multiprocessing Lock may be released by any process
        finally:
            self._rescue.release()

    def _wait(self, timeout: float) -> None:
        """Called with the lock held: lets it go, sleeps until notified or for `timeout`
        (at most WAIT_STEP), takes the lock again. Callers check their condition again."""
        timeout = min(timeout, WAIT_STEP)
        slot = self._take_slot()
        self._release()
        if slot is None:  # more waiters than bells: look again soon
            time.sleep(min(timeout, 0.001))
            woken = False
        else:
            woken = self._bells[slot].acquire(timeout=timeout)
        while not self._lock.acquire(timeout=WAIT_STEP):
            if self.maker_gone():
                raise _LockLost("the receiver that started this acting process has gone")
            self._free_lock_of_the_dead()
        self._lock_holder.value = os.getpid()
        if slot is not None:
            # Rung after we stopped listening, or twice: silence it for the next waiter. No
            # one rings while we hold the lock.
            while self._bells[slot].acquire(block=False):
                pass
            self._slot_owner[slot] = 0
        if not woken:
            self._free_turn_of_the_dead()
        if self.maker_gone():
            raise ParentGone("the receiver that started this acting process has gone")

    def _take_slot(self) -> int | None:
        """Called with the lock held: a free bell, or one left by a waiter that died asleep."""
        pid = os.getpid()
        owners = self._slot_owner[:]
        for slot, owner in enumerate(owners):
            if owner == 0:
                self._slot_owner[slot] = pid
                return slot
        for slot, owner in enumerate(owners):
            if owner != pid and not _alive(owner):
                while self._bells[slot].acquire(block=False):
                    pass
                self._slot_owner[slot] = pid
                return slot
        return None

    def _notify_all(self) -> None:
        """Called with the lock held: rings every waiter's bell. Never waits for the
        sleepers to wake (one may be dead)."""
        for slot, owner in enumerate(self._slot_owner[:]):
            if owner:
                self._bells[slot].release()


class _Flag:
    """The workers' stop flag, in shared memory, read and set without a lock: an Event's lock
    left held by a killed process would leave the others waiting on it for ever, and so would a
    SIGTERM handler setting an Event while the code it interrupted holds its lock."""

    def __init__(self):
        self._value = _FORK.RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def clear(self) -> None:
        self._value.value = 0

    def is_set(self) -> bool:
        return bool(self._value.value)


class ProcessingWorker:
    """Acts on handed-in ids and, every `sweep_seconds`, on anything still
    new: in one thread of this process, or in `processes` processes forked
    from it (start it before any other thread, as forking copies only the
    calling thread). Each transaction takes at most `batch` messages, so on
    SQLite storing never waits long behind it. Processing claims messages in
    one statement, so several workers, and a scheduler sweeping at the same
    time, never act on the same message twice."""

    def __init__(self, app, *, batch: int = 5, sweep_seconds: float = 60.0, gate: WriteGate | None = None,
                 processes: int = 0):
        self.app = app
        self.batch = max(1, batch)
        self.sweep_seconds = sweep_seconds
        self.gate = gate or WriteGate(False, quiet=0)
        self.processes = max(0, processes)
        shared = _FORK if self.processes else None
        # Lists of ids. Bounded: when the desk falls behind, ids beyond this wait for the sweep.
        self._queue = shared.Queue(maxsize=10_000) if shared else queue.Queue(maxsize=10_000)
        self._stop = _Flag()
        self._processed = _FORK.Value("q", 0)  # messages acted on, for tests and benchmarks
        # What each worker acted on, by outcome, and why acting failed: sent by `finish`.
        self._reports = shared.Queue() if shared else queue.Queue()
        self._outcomes: Counter = Counter()
        self._failures: list[str] = []
        self._thread: threading.Thread | None = None
        self._children: list = []
        self._busy = threading.Lock()

    @property
    def processed(self) -> int:
        return self._processed.value

    def submit(self, ids) -> None:
        try:
            self._queue.put_nowait(list(ids))
        except queue.Full:
            pass  # still new in the database: the sweep takes them

    def start(self) -> None:
        self._stop.clear()
        if self.processes:
            for number in range(self.processes):
                child = _FORK.Process(target=self._child, name=f"inbound-processing-{number}", daemon=True)
                child.start()
                self._children.append(child)
            return
        self._thread = threading.Thread(target=self._run, name="inbound-processing", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finishes the transactions in hand; anything still queued stays new for the next sweep."""
        self._stop.set()
        for _ in range(max(1, len(self._children))):
            try:
                self._queue.put_nowait(None)  # wakes a worker now
            except queue.Full:
                pass
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for child in self._children:
            child.join(timeout)
            if child.is_alive():
                child.terminate()
                child.join()
        self._children = []

    def finish(self, timeout: float | None = None) -> tuple[Counter, list[str]]:
        """Acts on everything handed in and everything still new, then stops.
        Returns how many messages ended how (processed, rejected...), and the
        errors that kept acting from going on (say, the database went away)."""
        workers = max(1, len(self._children))
        for _ in range(workers):
            self._queue.put(_FINISH)
        outcomes: Counter = Counter()
        failures: list[str] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        reports = missing = 0
        while reports < workers:
            try:
                counted, failed = self._reports.get(timeout=1.0)
            except queue.Empty:
                running = [c for c in self._children if c.is_alive()] if self._children else [self._thread]
                # Twice in a row: a report sent just before its worker ended may still be on its way.
                missing = missing + 1 if reports + len(running) < workers else 0
                if missing >= 2 or (deadline is not None and time.monotonic() > deadline):
                    # A worker died without reporting (killed, out of memory): say so, never hang.
                    failures.append(f"{workers - reports} acting worker(s) ended without finishing")
                    break
                continue
            reports += 1
            outcomes.update(counted)
            failures.extend(failed)
        self.stop()
        return outcomes, failures

    def _child(self) -> None:
        parent = os.getppid()
        # Ctrl-C reaches the whole process group: the receiver stops its workers itself,
        # letting each finish its transaction. A SIGTERM (a service manager stopping the
        # group) asks the same of every worker.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        if not self.gate.exclusive:
            # Acting is the work nobody waits on: on busy cores the kernel serves the process
            # answering the MTA first. (Not on SQLite: an acting process holds the one write
            # lock while it writes, and slowing it would hold up storing all the more.)
            os.nice(10)
        with self.app.app_context():
            # The parent's pooled connections must not be shared with it.
            db.engine.dispose(close=False)
            # This process only acts on mail: a message that needs more memory than its budget
            # fails alone (MemoryError -> too costly), not the host. Its CPU budget is set per
            # message by process_batch (inbound.budget), which runs in this main thread.
            from switchboard.inbound.budget import limit_memory

            limit_memory()
        self._run(parent)

    def _run(self, parent: int | None = None) -> None:
        next_sweep = time.monotonic()  # sweep at once: mail left from before a restart
        while not self._stop.is_set():
            if parent is not None and os.getppid() != parent:
                return  # the receiver is gone; what is new waits for the next one's sweep
            if time.monotonic() >= next_sweep:
                self._guarded(self._sweep)
                next_sweep = time.monotonic() + self.sweep_seconds
            try:
                first = self._queue.get(timeout=max(0.0, min(0.5, next_sweep - time.monotonic())))
            except queue.Empty:
                continue
            if first is None:
                continue
            finishing = first == _FINISH
            ids = [] if finishing else list(first)
            batch = self._batch_now()
            while len(ids) < batch and not finishing:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    break
                if more == _FINISH:
                    finishing = True
                    break
                ids.extend(more)
            while ids and not self._stop.is_set():
                self._guarded(self._process, ids[:batch])
                ids = ids[batch:]
            if finishing:
                self._guarded(self._sweep)
                self._reports.put((dict(self._outcomes), list(self._failures)))
                return

    def _batch_now(self) -> int:
        # While mail arrives, small transactions, so storing never waits long behind one;
        # once it has stopped for a second, larger ones: a batch costs less per message.
        return self.batch if self.gate.quiet_for() < 1.0 else self.batch * 5

    def _guarded(self, fn, *args) -> None:
        # A failure here (database down) leaves the messages new: the sweep retries them.
        try:
            with self._busy:
                run_in_app(self.app, fn, *args)
        except ParentGone:
            self._stop.set()  # the receiver is gone, and so are we: nothing more is acted on
        except Exception as exc:
            log.exception("acting on stored mail failed; the next sweep retries")
            self._failures.append(f"{type(exc).__name__}: {str(exc)[:300]}")

    def _process(self, ids: list[int] | None) -> int:
        from switchboard.inbound.process import process_batch, read_and_parse

        limit = len(ids) if ids else self._batch_now()
        # Reading and parsing first, outside the gate: on SQLite several workers
        # parse at once and queue only for the writing.
        parsed = read_and_parse(ids, limit=limit)
        db.session.rollback()  # ends the read; nothing was written
        if ids is None:
            ids = list(parsed) or None
        with self.gate.background():
            try:
                done = process_batch(ids, limit=limit, parsed=parsed)
                db.session.commit()
            except Exception:
                db.session.rollback()
                raise
        with self._processed.get_lock():
            self._processed.value += len(done)
        self._outcomes.update(result.status for result in done)
        return len(done)

    def _sweep(self) -> None:
        # process_pending's loop, one gated transaction per batch.
        while not self._stop.is_set() and self._process(None):
            pass
