"""service level management

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 00:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

CALL_COLUMNS = ('sla_id', 'sla_clock_started_at', 'sla_used_seconds', 'response_due_at', 'fix_due_at',
                'next_due_at', 'sla_level', 'sla_breached')


def upgrade():
    op.create_table('sla_calendar',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('time_zone', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sla_calendar')),
    sa.UniqueConstraint('name', name=op.f('uq_sla_calendar_name'))
    )
    op.create_table('sla_calendar_hours',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('calendar_id', sa.Integer(), nullable=False),
    sa.Column('weekday', sa.SmallInteger(), nullable=False),
    sa.Column('start_minute', sa.SmallInteger(), nullable=False),
    sa.Column('end_minute', sa.SmallInteger(), nullable=False),
    sa.CheckConstraint('start_minute >= 0 AND start_minute < end_minute AND end_minute <= 1440', name=op.f('ck_sla_calendar_hours_span_within_day')),
    sa.ForeignKeyConstraint(['calendar_id'], ['sla_calendar.id'], name=op.f('fk_sla_calendar_hours_calendar_id_sla_calendar'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sla_calendar_hours'))
    )
    op.create_index(op.f('ix_sla_calendar_hours_calendar_id'), 'sla_calendar_hours', ['calendar_id'], unique=False)
    op.create_table('sla_calendar_holiday',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('calendar_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('yearly', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['calendar_id'], ['sla_calendar.id'], name=op.f('fk_sla_calendar_holiday_calendar_id_sla_calendar'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sla_calendar_holiday')),
    sa.UniqueConstraint('calendar_id', 'day', name=op.f('uq_sla_calendar_holiday_calendar_id_day'))
    )
    op.create_table('sla',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('calendar_id', sa.Integer(), nullable=True),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['calendar_id'], ['sla_calendar.id'], name=op.f('fk_sla_calendar_id_sla_calendar')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sla')),
    sa.UniqueConstraint('name', name=op.f('uq_sla_name'))
    )
    op.create_table('sla_target',
    sa.Column('sla_id', sa.Integer(), nullable=False),
    sa.Column('priority_id', sa.Integer(), nullable=False),
    sa.Column('response_seconds', sa.Integer(), nullable=True),
    sa.Column('fix_seconds', sa.Integer(), nullable=True),
    sa.CheckConstraint('(response_seconds IS NULL OR response_seconds > 0) AND (fix_seconds IS NULL OR fix_seconds > 0)', name=op.f('ck_sla_target_positive')),
    sa.ForeignKeyConstraint(['priority_id'], ['priority.id'], name=op.f('fk_sla_target_priority_id_priority')),
    sa.ForeignKeyConstraint(['sla_id'], ['sla.id'], name=op.f('fk_sla_target_sla_id_sla'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sla_id', 'priority_id', name=op.f('pk_sla_target'))
    )
    op.create_table('sla_level',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sla_id', sa.Integer(), nullable=False),
    sa.Column('target', sa.Enum('response', 'fix', name='target', native_enum=False, length=10), nullable=False),
    sa.Column('number', sa.SmallInteger(), nullable=False),
    sa.Column('percent', sa.SmallInteger(), nullable=False),
    sa.Column('notify_assigned_analyst', sa.Boolean(), nullable=False),
    sa.Column('notify_group_members', sa.Boolean(), nullable=False),
    sa.Column('escalation_person_id', sa.Integer(), nullable=True),
    sa.Column('escalation_group_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('percent > 0 AND percent <= 100', name=op.f('ck_sla_level_percent_range')),
    sa.ForeignKeyConstraint(['escalation_group_id'], ['analyst_group.id'], name=op.f('fk_sla_level_escalation_group_id_analyst_group'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['escalation_person_id'], ['person.id'], name=op.f('fk_sla_level_escalation_person_id_person'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['sla_id'], ['sla.id'], name=op.f('fk_sla_level_sla_id_sla'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sla_level')),
    sa.UniqueConstraint('sla_id', 'target', 'number', name=op.f('uq_sla_level_sla_id_target_number')),
    sa.UniqueConstraint('sla_id', 'target', 'percent', name=op.f('uq_sla_level_sla_id_target_percent'))
    )
    op.create_table('sla_firing',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('target', sa.Enum('response', 'fix', name='target', native_enum=False, length=10), nullable=False),
    sa.Column('level', sa.SmallInteger(), nullable=False),
    sa.Column('percent', sa.SmallInteger(), nullable=False),
    sa.Column('fired_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['call.id'], name=op.f('fk_sla_firing_call_id_call'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sla_firing')),
    sa.UniqueConstraint('call_id', 'target', 'level', name=op.f('uq_sla_firing_call_id_target_level'))
    )
    with op.batch_alter_table('call', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sla_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('sla_clock_started_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('sla_used_seconds', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('response_due_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('fix_due_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('next_due_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('sla_level', sa.SmallInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('sla_breached', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_index(batch_op.f('ix_call_next_due_at'), ['next_due_at'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_call_sla_id_sla'), 'sla', ['sla_id'], ['id'])
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.add_column(sa.Column('default_sla_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_person_default_sla_id_sla'), 'sla', ['default_sla_id'], ['id'], ondelete='SET NULL')
    with op.batch_alter_table('analyst_group', schema=None) as batch_op:
        batch_op.add_column(sa.Column('default_sla_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_analyst_group_default_sla_id_sla'), 'sla', ['default_sla_id'], ['id'], ondelete='SET NULL')


def downgrade():
    with op.batch_alter_table('analyst_group', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_analyst_group_default_sla_id_sla'), type_='foreignkey')
        batch_op.drop_column('default_sla_id')
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_person_default_sla_id_sla'), type_='foreignkey')
        batch_op.drop_column('default_sla_id')
    with op.batch_alter_table('call', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_call_sla_id_sla'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_call_next_due_at'))
        for name in reversed(CALL_COLUMNS):
            batch_op.drop_column(name)
    op.drop_table('sla_firing')
    op.drop_table('sla_level')
    op.drop_table('sla_target')
    op.drop_table('sla')
    op.drop_table('sla_calendar_holiday')
    op.drop_index(op.f('ix_sla_calendar_hours_calendar_id'), table_name='sla_calendar_hours')
    op.drop_table('sla_calendar_hours')
    op.drop_table('sla_calendar')
