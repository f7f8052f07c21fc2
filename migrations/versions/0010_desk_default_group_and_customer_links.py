"""desk default group and customer links

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 00:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    # One row of desk-wide settings: the group that calls nothing else routes land in.
    # No row is written here: the group is named at first start (`users ensure-admin`,
    # which `make run` runs) or by an admin, and calls that already sit in no group are
    # gathered into it then (switchboard/desk/routing.py). Customer links need no table:
    # they are signed, not stored.
    op.create_table('desk_settings',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('default_group_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_desk_settings_one_row')),
    sa.ForeignKeyConstraint(['default_group_id'], ['analyst_group.id'], name=op.f('fk_desk_settings_default_group_id_analyst_group'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_desk_settings'))
    )


def downgrade():
    op.drop_table('desk_settings')
