"""sender trust: trusted-submission accounts, verified senders

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 21:50:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    # Existing accounts stay untrusted and existing timeline entries stay unmarked.
    with op.batch_alter_table('incoming_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trusted_submission', sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table('history_entry', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sender_unverified', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table('history_entry', schema=None) as batch_op:
        batch_op.drop_column('sender_unverified')

    with op.batch_alter_table('incoming_account', schema=None) as batch_op:
        batch_op.drop_column('trusted_submission')
