"""Acting on stored mail in the background, so an acknowledgement never waits
for it: a thread takes the ids the transports hand it, and a periodic sweep
acts on anything still new (left by a crash, a restart or a full queue)."""

import contextlib
import logging
import queue
import threading
import time

from switchboard.db import db

log = logging.getLogger(__name__)


def run_in_app(app, fn, *args, **kwargs):
    """Runs `fn` in a fresh app context with its own database session, removed after."""
    with app.app_context():
        try:
            return fn(*args, **kwargs)
        finally:
            db.session.remove()


class WriteGate:
    """Puts storing mail (someone waits for the answer) before acting on it
    (nobody does), within this process.

    Acting on mail waits while mail is being stored, and until storing has
    been quiet for `quiet` seconds, though never more than `max_wait` between
    its transactions: during a burst the acknowledgements stay fast and the
    acting catches up after. On SQLite the gate also lets one writing
    transaction at a time through: SQLite has one write lock per file, and
    threads that collide on it wait in its busy handler, which sleeps in
    growing steps (up to 100 ms); queuing here wakes the next writer at once."""

    def __init__(self, exclusive: bool, *, quiet: float = 0.02, max_wait: float = 0.25):
        self.exclusive = exclusive
        self.quiet = quiet
        self.max_wait = max_wait
        self._cond = threading.Condition()
        self._busy = False
        self._urgent_waiting = 0
        self._last_urgent = 0.0

    @classmethod
    def for_app(cls, app) -> "WriteGate":
        return cls(app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"))

    @contextlib.contextmanager
    def urgent(self):
        """For storing mail a client waits to hear about."""
        with self._cond:
            self._last_urgent = time.monotonic()
            self._urgent_waiting += 1
            while self.exclusive and self._busy:
                self._cond.wait()
            self._urgent_waiting -= 1
            self._busy = self.exclusive
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._last_urgent = time.monotonic()
                self._cond.notify_all()

    @contextlib.contextmanager
    def background(self):
        """For work nobody waits on: goes after storing (see the class)."""
        with self._cond:
            give_up_waiting = time.monotonic() + self.max_wait
            while True:
                now = time.monotonic()
                blocked = self._urgent_waiting > 0 or (self.exclusive and self._busy)
                quiet_for = now - self._last_urgent
                if not blocked and (quiet_for >= self.quiet or now >= give_up_waiting):
                    break
                self._cond.wait(None if blocked else max(0.001, min(self.quiet - quiet_for, give_up_waiting - now)))
            self._busy = self.exclusive
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


class ProcessingWorker:
    """One thread that acts on handed-in ids and, every `sweep_seconds`, on
    anything still new. Each transaction takes at most `batch` messages, so on
    SQLite storing never waits long behind it. Processing claims messages in
    one statement, so a scheduler sweeping at the same time does no harm."""

    def __init__(self, app, *, batch: int = 5, sweep_seconds: float = 60.0, gate: WriteGate | None = None):
        self.app = app
        self.batch = max(1, batch)
        self.sweep_seconds = sweep_seconds
        self.gate = gate or WriteGate(False, quiet=0)
        # Bounded: when the desk falls behind, ids beyond this wait for the sweep.
        self._queue: queue.Queue[int | None] = queue.Queue(maxsize=100_000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = threading.Lock()
        self.processed = 0  # messages acted on, for tests and benchmarks

    def submit(self, ids) -> None:
        for inbound_id in ids:
            try:
                self._queue.put_nowait(inbound_id)
            except queue.Full:
                return  # still new in the database: the sweep takes it

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="inbound-processing", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finishes the transaction in hand; anything still queued stays new for the next sweep."""
        self._stop.set()
        try:
            self._queue.put_nowait(None)  # wakes the thread now
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        next_sweep = time.monotonic()  # sweep at once: mail left from before a restart
        while not self._stop.is_set():
            if time.monotonic() >= next_sweep:
                self._guarded(self._sweep)
                next_sweep = time.monotonic() + self.sweep_seconds
            try:
                first = self._queue.get(timeout=max(0.0, min(0.5, next_sweep - time.monotonic())))
            except queue.Empty:
                continue
            ids = [first]
            while len(ids) < self.batch:
                try:
                    ids.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            ids = [i for i in ids if i is not None]
            if ids and not self._stop.is_set():
                self._guarded(self._process, ids)

    def _guarded(self, fn, *args) -> None:
        # A failure here (database down) leaves the messages new: the sweep retries them.
        try:
            with self._busy:
                run_in_app(self.app, fn, *args)
        except Exception:
            log.exception("acting on stored mail failed; the next sweep retries")

    def _process(self, ids: list[int] | None) -> int:
        from switchboard.inbound.process import process_batch

        with self.gate.background():
            try:
                done = process_batch(ids, limit=len(ids) if ids else self.batch)
                db.session.commit()
            except Exception:
                db.session.rollback()
                raise
        self.processed += len(done)
        return len(done)

    def _sweep(self) -> None:
        # process_pending's loop, one gated transaction per batch.
        while not self._stop.is_set() and self._process(None):
            pass
