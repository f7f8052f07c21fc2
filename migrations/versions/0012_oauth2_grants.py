"""OAuth2 grants for incoming accounts and outgoing servers

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 01:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'oauth_grant',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('provider', sa.Enum('microsoft', 'google', 'generic', name='provider', native_enum=False, length=20), nullable=False),
        sa.Column('flow', sa.Enum('app', 'delegated', name='flow', native_enum=False, length=20), nullable=False),
        sa.Column('tenant_id', sa.String(length=100), nullable=True),
        sa.Column('client_id', sa.String(length=255), nullable=False),
        sa.Column('client_secret_encrypted', sa.Text(), nullable=True),
        sa.Column('token_endpoint', sa.String(length=500), nullable=True),
        sa.Column('authorization_endpoint', sa.String(length=500), nullable=True),
        sa.Column('scopes', sa.String(length=1000), nullable=True),
        sa.Column('refresh_token_encrypted', sa.Text(), nullable=True),
        sa.Column('access_token_encrypted', sa.Text(), nullable=True),
        sa.Column('access_token_expires_at', sa.DateTime(), nullable=True),
        sa.Column('state', sa.Enum('not_connected', 'connected', 'needs_reconnecting', name='grantstate', native_enum=False, length=30), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('last_error_at', sa.DateTime(), nullable=True),
        sa.Column('retry_after', sa.DateTime(), nullable=True),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('reconnect_notice_at', sa.DateTime(), nullable=True),
        sa.Column('refreshed_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_grant')),
    )
    with op.batch_alter_table('incoming_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('oauth_grant_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_incoming_account_oauth_grant_id_oauth_grant'),
                                    'oauth_grant', ['oauth_grant_id'], ['id'])
    with op.batch_alter_table('outgoing_server', schema=None) as batch_op:
        batch_op.add_column(sa.Column('oauth_grant_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_outgoing_server_oauth_grant_id_oauth_grant'),
                                    'oauth_grant', ['oauth_grant_id'], ['id'])


def downgrade():
    with op.batch_alter_table('outgoing_server', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_outgoing_server_oauth_grant_id_oauth_grant'), type_='foreignkey')
        batch_op.drop_column('oauth_grant_id')
    with op.batch_alter_table('incoming_account', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_incoming_account_oauth_grant_id_oauth_grant'), type_='foreignkey')
        batch_op.drop_column('oauth_grant_id')
    op.drop_table('oauth_grant')
