"""scheduler heartbeats and housekeeping

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 00:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    # One row per scheduler job: its last run, for the admin's health page and `desk health`.
    op.create_table(
        'job_heartbeat',
        sa.Column('job', sa.String(length=60), nullable=False),
        sa.Column('interval_seconds', sa.Integer(), nullable=False),
        sa.Column('registered_at', sa.DateTime(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=True),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.Column('duration_seconds', sa.Float(), nullable=True),
        sa.Column('outcome', sa.String(length=10), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('last_ok_at', sa.DateTime(), nullable=True),
        sa.Column('runner', sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint('job', name=op.f('pk_job_heartbeat')),
    )
    # Since when an account's polls have failed without a success between (health alarms
    # after an hour); NULL while it works.
    with op.batch_alter_table('incoming_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failing_since', sa.DateTime(), nullable=True))
    # Housekeeping prunes the raw bytes of old messages and keeps the row (what it said, what it
    # did, its fingerprint, so a late copy is still known): the raw reference may be empty now.
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.alter_column('raw_sha256', existing_type=sa.String(length=64), nullable=True)


def downgrade():
    # A pruned message has no raw bytes to point at: an empty blob stands in for them.
    op.execute("INSERT INTO blob (sha256, size, data, created_at) SELECT "
               "'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 0, '', CURRENT_TIMESTAMP "
               "WHERE EXISTS (SELECT 1 FROM inbound_message WHERE raw_sha256 IS NULL) AND NOT EXISTS "
               "(SELECT 1 FROM blob WHERE sha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')")
    op.execute("UPDATE inbound_message SET raw_sha256 = "
               "'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' WHERE raw_sha256 IS NULL")
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.alter_column('raw_sha256', existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table('incoming_account', schema=None) as batch_op:
        batch_op.drop_column('failing_since')
    op.drop_table('job_heartbeat')
