"""inbound identity across accounts: one claim per message, desk-wide

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 00:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    # The stored copy the desk acts on, one per message whichever account brought it
    # (switchboard.inbound.models.MessageClaim). Rows stored before keep their per-account
    # fingerprints and are not claimed: only copies arriving from now on are compared.
    op.create_table(
        'message_claim',
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('inbound_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['inbound_id'], ['inbound_message.id'],
                                name=op.f('fk_message_claim_inbound_id_inbound_message'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('fingerprint', name=op.f('pk_message_claim')),
    )
    with op.batch_alter_table('message_claim', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_claim_inbound_id'), ['inbound_id'], unique=False)
    # A POP3 account added without --after was saved as "move" (issue 10, item 15), which
    # POP3 cannot do: such an account kept every message on the server. The README's
    # default, and what its admin asked for by giving no --after, is delete.
    op.execute("UPDATE incoming_account SET after_processing = 'delete' "
               "WHERE protocol = 'pop3' AND after_processing = 'move'")


def downgrade():
    with op.batch_alter_table('message_claim', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_claim_inbound_id'))
    op.drop_table('message_claim')
