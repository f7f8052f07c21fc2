"""One page of a list query: the rows, the total, and what the list templates'
pagers (`_pager.html`) need: page numbers (`?page=`) for short lists, positions
(`?after=`, `?before=`) for long ones."""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from flask import abort, request

from portal.numbers import LARGEST
from switchboard.db import after_in_order, before_in_order, db


@dataclass(frozen=True)
class Page:
    items: list
    total: int
    page: int
    pages: int

    def template_args(self) -> dict:
        return {"total": self.total, "page": self.page, "pages": self.pages}


def count(query, up_to: int | None = None) -> int:
    """The rows `query` gives; with `up_to`, stops counting past that many (a count of
    matches for a text search otherwise reads every row)."""
    query = query.order_by(None)
    if up_to is not None:
        query = query.limit(up_to + 1)
    return db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))


def paginate(query, page_size: int) -> Page:
    page = _page_number(request.args.get("page", ""))
    total = count(query)
    items = db.session.scalars(query.limit(page_size).offset((page - 1) * page_size)).all()
    return Page(items, total, page, max(1, -(-total // page_size)))


def _page_number(text: str) -> int:
    """`?page=`: absent or empty is the first page; anything but a whole number
    from 1 to LARGEST is a 404, as a bad number in a URL path is."""
    text = text.strip()
    if not text:
        return 1
    # The length first: int() of thousands of digits is slow, then refused.
    if len(text) > 10 or not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= LARGEST:
        abort(404)
    return int(text)


# -- keyset pages ------------------------------------------------------------------------------
# A long list sorted newest first (the call list: 100,000 calls) pages by where the last page
# ended, not by how many rows to skip: `?after=<position>` for the next page, `?before=` for
# the previous. A position is the sort key of a row, "<microseconds since 1970>-<id>", so a
# URL names the same place tomorrow (bookmarkable), and reading page 1,000 costs what reading
# page 2 does. Anything else in those parameters is a 404, as a bad page number is.

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_POSITION = re.compile(r"(\d{1,18})-(\d{1,10})")
# datetime's own range, so a position that parses is one a datetime can hold.
_LATEST_MICROS = (datetime(9999, 12, 31, tzinfo=timezone.utc) - _EPOCH) // timedelta(microseconds=1)


def encode_position(position: tuple[datetime, int]) -> str:
    moment, row_id = position
    return f"{(moment - _EPOCH) // timedelta(microseconds=1)}-{row_id}"


def decode_position(text: str) -> tuple[datetime, int]:
    """The position in `?after=` or `?before=`; a 404 for anything that is not one."""
    match = _POSITION.fullmatch(text)
    if match is None:
        abort(404)
    micros, row_id = int(match.group(1)), int(match.group(2))
    if micros > _LATEST_MICROS or not 1 <= row_id <= LARGEST:
        abort(404)
    return _EPOCH + timedelta(microseconds=micros), row_id


def position_arg(name: str) -> tuple[datetime, int] | None:
    text = request.args.get(name, "").strip()
    return decode_position(text) if text else None


@dataclass(frozen=True)
class KeysetPage:
    """One page of a list sorted by `columns` descending, with the positions its
    "Previous" and "Next" links carry (None where there is nothing that way)."""

    items: list
    total: int
    previous: str | None
    next: str | None
    # True when the count stopped at the bound: there are more than `total`.
    total_is_more: bool = False

    @property
    def first(self) -> bool:
        return self.previous is None

    def template_args(self) -> dict:
        return {"total": self.total, "total_is_more": self.total_is_more, "previous": self.previous,
                "next": self.next}


def keyset_paginate(
    query, columns: tuple, page_size: int, *, options=(), lines=None, count_up_to: int | None = None
) -> KeysetPage:
    """The page of `query` (without an ORDER BY) that `?after=` or `?before=` names, the
    first page without either, sorted by `columns` newest first. `options` are loader
    options for the shown rows (what the list template reads of each); or `lines` turns
    the page's statement (`query` ordered and limited) into one that reads its rows as a
    list's own line type. A `?page=` number (a bookmark from before) still gives that page,
    the slow way (OFFSET). `count_up_to` bounds the count (KeysetPage.total_is_more says
    it stopped)."""
    after, before = position_arg("after"), position_arg("before")
    # A page number from a link made before lists paged by position: still that page.
    page = _page_number(request.args.get("page", ""))
    if after and before or page > 1 and (after or before):
        abort(404)
    total = count(query, count_up_to)
    total_is_more = count_up_to is not None and total > count_up_to
    total = min(total, count_up_to) if total_is_more else total
    newest_first = [c.desc() for c in columns]
    shown = query.options(*options)

    def read(page_statement) -> list:
        return db.session.scalars(lines(page_statement) if lines else page_statement).all()

    if page > 1:
        rows = read(shown.order_by(*newest_first).offset((page - 1) * page_size).limit(page_size + 1))
        more_before, more_after = True, len(rows) > page_size
        items = rows[:page_size]
    elif before is not None:
        # The page just before: read backwards from the position, then put it in order.
        rows = read(shown.where(before_in_order(columns, before)).order_by(*columns).limit(page_size + 1))
        more_before = len(rows) > page_size
        items = rows[:page_size][::-1]
        more_after = _any(query.where(sa.not_(before_in_order(columns, before))))
    else:
        if after is not None:
            shown = shown.where(after_in_order(columns, after))
        rows = read(shown.order_by(*newest_first).limit(page_size + 1))
        more_after = len(rows) > page_size
        items = rows[:page_size]
        more_before = after is not None and _any(query.where(sa.not_(after_in_order(columns, after))))
    if not items:
        # Nothing on this side of the position (the rows moved or were never there):
        # "Previous"/"Next" from here would only lead to more empty pages.
        more_before = more_after = False

    def key(row):
        return encode_position(tuple(getattr(row, c.key) for c in columns))

    return KeysetPage(
        items,
        total,
        previous=key(items[0]) if items and more_before else None,
        next=key(items[-1]) if items and more_after else None,
        total_is_more=total_is_more,
    )


def _any(query) -> bool:
    return db.session.scalar(sa.select(sa.literal(True)).where(query.exists())) is not None
