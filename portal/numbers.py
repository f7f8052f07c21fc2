"""Whole numbers taken from URLs (`<int:...>` path parts and `?page=`), bounded
so that a huge one is a plain 404 instead of an OverflowError from the
database driver (SQLite's integers stop at 2**63 - 1) and a 500."""

from werkzeug.routing import IntegerConverter

# Our ids are INTEGER columns (PostgreSQL: 4 bytes); no row can have a larger id,
# and no list has more pages.
LARGEST = 2**31 - 1


class BoundedInt(IntegerConverter):
    """`<int:...>` for the whole portal: installed in place of Werkzeug's own,
    so every route (and every route added later) is bounded without a word."""

    def __init__(self, map, fixed_digits=0, min=None, max=LARGEST, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)
