"""One page of a list query: the rows, the total, and the page numbers the
list templates (`_pager.html`) need. The page comes from `?page=`."""

from dataclasses import dataclass

import sqlalchemy as sa
from flask import abort, request

from portal.numbers import LARGEST
from switchboard.db import db


@dataclass(frozen=True)
class Page:
    items: list
    total: int
    page: int
    pages: int

    def template_args(self) -> dict:
        return {"total": self.total, "page": self.page, "pages": self.pages}


def count(query) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery()))


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
