"""request list and task queue indexes

The request list's "mine" finds the requests an analyst owns by an index on owner_id
(issue 12, item 7: an index for every list filter), and a group's queue of tasks nobody
has picked up (My work) gets the index the call queue has (group, analyst, status).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 04:30:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_service_request_owner_id", "service_request", ["owner_id"])
    op.create_index("ix_task_group_queue", "task", ["assigned_group_id", "assigned_analyst_id", "status"])


def downgrade():
    op.drop_index("ix_task_group_queue", table_name="task")
    op.drop_index("ix_service_request_owner_id", table_name="service_request")
