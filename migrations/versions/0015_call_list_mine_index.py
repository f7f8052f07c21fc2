"""call list "mine" index; an analyst's indexes without the calls nobody has

The call list's "mine" scope (an analyst's calls of a status, newest update first) gets an
index in that order, (assigned_analyst_id, status, updated_at, id): a page is a walk of it
that the LIMIT stops, and the count of an analyst's calls of a status (the list's, My
work's) reads the index alone. Without it PostgreSQL combined ix_call_status (every call of
the status) with the analyst's calls and sorted them (issue 12, item 7).

Both it and ix_call_analyst_work leave out the calls nobody has (assigned_analyst_id IS
NULL): an analyst's own calls are all they serve, and SQLite, whose statistics cannot tell
that a tenth of all calls share that NULL, walked all of them through ix_call_analyst_work
for My work's queue of a group (its order is that index's) instead of reading the group's
few hundred through ix_call_group_queue.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 05:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

ASSIGNED = sa.text("assigned_analyst_id IS NOT NULL")


def _analyst_work(**where):
    op.create_index("ix_call_analyst_work", "call", ["assigned_analyst_id", "priority_id", "logged_at", "id"], **where)


def upgrade():
    op.create_index("ix_call_analyst_list_order", "call", ["assigned_analyst_id", "status", "updated_at", "id"],
                    sqlite_where=ASSIGNED, postgresql_where=ASSIGNED)
    op.drop_index("ix_call_analyst_work", table_name="call")
    _analyst_work(sqlite_where=ASSIGNED, postgresql_where=ASSIGNED)


def downgrade():
    op.drop_index("ix_call_analyst_work", table_name="call")
    _analyst_work()
    op.drop_index("ix_call_analyst_list_order", table_name="call")
