"""bounded parsing: stored parse results and warnings

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 21:50:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


COLUMNS = ("warnings", "from_name", "parsed_headers", "parsed_text", "parsed_html", "parsed_attachments")


def upgrade():
    # What reading a message gave, kept when it is acted on: the admin's pages show these and
    # never parse the message again. Rows from before stay NULL (see portal/mail/inbound.py).
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('warnings', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('from_name', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('parsed_headers', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('parsed_text', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('parsed_html', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('parsed_attachments', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)
