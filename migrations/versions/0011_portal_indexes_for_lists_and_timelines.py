"""portal indexes for lists and timelines

Each list's sort and filter and each timeline's page order gets an index (issue 12, item
7): the call and request lists (newest update first), an analyst's own calls in My work's
order, a group's queue, and each owner's timeline by (created_at, id). The single column
indexes these lead with go: the new ones serve their look-ups too.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 00:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

TIMELINES = (("call", "call_id"), ("request", "request_id"), ("task", "task_id"))


def upgrade():
    for owner, column in TIMELINES:
        op.create_index(f"ix_history_entry_{owner}_timeline", "history_entry", [column, "created_at", "id"])
        op.drop_index(f"ix_history_entry_{column}", table_name="history_entry")
    op.create_index("ix_call_list_order", "call", ["updated_at", "id"])
    op.create_index("ix_call_analyst_work", "call", ["assigned_analyst_id", "priority_id", "logged_at", "id"])
    op.drop_index("ix_call_assigned_analyst_id", table_name="call")
    op.create_index("ix_call_group_queue", "call", ["assigned_group_id", "assigned_analyst_id", "status"])
    op.create_index("ix_service_request_list_order", "service_request", ["updated_at", "id"])


def downgrade():
    op.drop_index("ix_service_request_list_order", table_name="service_request")
    op.drop_index("ix_call_group_queue", table_name="call")
    op.create_index("ix_call_assigned_analyst_id", "call", ["assigned_analyst_id"])
    op.drop_index("ix_call_analyst_work", table_name="call")
    op.drop_index("ix_call_list_order", table_name="call")
    for owner, column in reversed(TIMELINES):
        op.create_index(f"ix_history_entry_{column}", "history_entry", [column])
        op.drop_index(f"ix_history_entry_{owner}_timeline", table_name="history_entry")
