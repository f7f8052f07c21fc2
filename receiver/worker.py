"""Acting on stored mail in the background, so an acknowledgement never waits
for it: a thread takes the ids the transports hand it, and a periodic sweep
acts on anything still new (left by a crash, a restart or a full queue)."""

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


class ProcessingWorker:
    """One thread that runs `process_batch` for handed-in ids and
    `process_pending` every `sweep_seconds`. Processing claims messages in
    one statement, so a scheduler sweeping at the same time does no harm."""

    def __init__(self, app, *, batch: int = 20, sweep_seconds: float = 60.0):
        self.app = app
        self.batch = max(1, batch)
        self.sweep_seconds = sweep_seconds
        # Bounded: when the desk falls behind, ids beyond this wait for the sweep.
        self._queue: queue.Queue[int | None] = queue.Queue(maxsize=100_000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = threading.Lock()
        self.processed = 0  # for the benchmark and tests: messages acted on

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
        """Finishes the batch in hand; anything still queued stays new for the next sweep."""
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
            log.exception("processing stored mail failed; the next sweep retries")

    def _process(self, ids: list[int]) -> None:
        from switchboard.inbound.process import process_batch

        try:
            done = process_batch(ids, limit=len(ids))
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        self.processed += len(done)

    def _sweep(self) -> None:
        from switchboard.inbound.process import process_pending

        try:
            done = process_pending(batch=self.batch)
        except Exception:
            db.session.rollback()
            raise
        self.processed += len(done)
