"""One page of a list query: the rows, the total, and the page numbers the
list templates (`_pager.html`) need. The page comes from `?page=`."""

from dataclasses import dataclass

import sqlalchemy as sa
from flask import request

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
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    total = count(query)
    items = db.session.scalars(query.limit(page_size).offset((page - 1) * page_size)).all()
    return Page(items, total, page, max(1, -(-total // page_size)))
