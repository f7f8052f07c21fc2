"""Microsoft Graph as a transport

Incoming accounts of protocol "graph" keep the folder's delta link (the next poll reads
only what changed since); outgoing servers say which protocol they speak (smtp, graph).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 01:05:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('incoming_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('graph_delta_link', sa.Text(), nullable=True))
    with op.batch_alter_table('outgoing_server', schema=None) as batch_op:
        batch_op.add_column(sa.Column('protocol', sa.String(length=10), server_default='smtp', nullable=False))


def downgrade():
    with op.batch_alter_table('outgoing_server', schema=None) as batch_op:
        batch_op.drop_column('protocol')
    with op.batch_alter_table('incoming_account', schema=None) as batch_op:
        batch_op.drop_column('graph_delta_link')
