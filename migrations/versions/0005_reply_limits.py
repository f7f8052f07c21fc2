"""limits on automatic replies

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 21:50:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    # The automatic replies counted against the limits (switchboard.outbox.limits), and the
    # limits an admin set. No rows: every limit starts at its default.
    op.create_table('auto_reply',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('inbound_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['inbound_id'], ['inbound_message.id'], name=op.f('fk_auto_reply_inbound_id_inbound_message'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auto_reply'))
    )
    with op.batch_alter_table('auto_reply', schema=None) as batch_op:
        batch_op.create_index('ix_auto_reply_address_kind_created_at', ['address', 'kind', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_auto_reply_created_at'), ['created_at'], unique=False)

    op.create_table('reply_limit',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_reply_limit'))
    )


def downgrade():
    op.drop_table('reply_limit')
    with op.batch_alter_table('auto_reply', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auto_reply_created_at'))
        batch_op.drop_index('ix_auto_reply_address_kind_created_at')

    op.drop_table('auto_reply')
