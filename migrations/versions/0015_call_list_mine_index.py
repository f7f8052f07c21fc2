"""call list "mine" index

The call list's "mine" scope (an analyst's calls of a status, newest update first) gets an
index in that order, (assigned_analyst_id, status, updated_at, id): a page is a walk of it
that the LIMIT stops, and the count of an analyst's calls of a status (the list's, My
work's) reads the index alone. Without it PostgreSQL combined ix_call_status (every call of
the status) with the analyst's calls and sorted them (issue 12, item 7).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 05:10:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_call_analyst_list_order", "call", ["assigned_analyst_id", "status", "updated_at", "id"])


def downgrade():
    op.drop_index("ix_call_analyst_list_order", table_name="call")
