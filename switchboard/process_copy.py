"""A copy of something read often and changed seldom (the mail settings, the SLAs), kept by
each process per database for a few seconds; dropped at a change made here.

The rules (switchboard.outbox.settings and switchboard.slm.plans keep theirs this way):
- a change made in this process is in force here as soon as its transaction commits: the
  writer calls written(), which drops the copy at the write and again when that transaction
  ends;
- every other process (portal worker, receiver, scheduler) sees it at most the copy's seconds
  after the commit (its copy expires);
- the transaction that made a change gets no copy until it ends (it reads the database), so
  it sees its own uncommitted change and no copy ever holds one."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from switchboard.db import db


@dataclass(frozen=True)
class _Held:
    generation: int
    loaded_at: float
    value: Any


class ProcessCopy:
    """One kind of copy. `key` marks, in the session, a transaction that changed what it
    copies."""

    def __init__(self, key: str):
        self._key = key
        # One copy per database (engine): a test process uses two, and a second app on the
        # same database stands for another process. The generation moves on at every change
        # made here.
        self._held: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._generations: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        sa.event.listen(Session, "after_transaction_end", self._transaction_ended)

    def get(self, load: Callable[[], Any], clock: Callable[[], float], seconds: float) -> Any:
        """This process's copy for the current database, loaded again by `load` when older
        than `seconds` by `clock` or after a change made here; None inside a transaction that
        changed what it copies."""
        if db.session().info.get(self._key):
            return None
        engine = db.engine
        generation = self._generations.get(engine, 0)
        now = clock()
        held = self._held.get(engine)
        if held is None or held.generation != generation or now - held.loaded_at >= seconds:
            # The generation and time are taken before reading: a change made here meanwhile
            # moves the generation, so the next read loads it again; one committed elsewhere
            # meanwhile is within the bound anyway.
            held = self._held[engine] = _Held(generation, now, load())
        return held.value

    def forget(self) -> None:
        """Drops this process's copy for the current database: the next read loads it again."""
        engine = db.engine
        self._generations[engine] = self._generations.get(engine, 0) + 1

    def written(self) -> None:
        """The current transaction changed what is copied: until it ends, get() answers None;
        the copy is dropped now and once more when the transaction ends."""
        db.session().info[self._key] = db.engine
        self.forget()

    def _transaction_ended(self, session, transaction) -> None:
        engine = session.info.pop(self._key, None) if transaction.parent is None else None
        if engine is not None:
            self._generations[engine] = self._generations.get(engine, 0) + 1
