"""graph versions: draft or published, and the version an edit started from

Revision ID: 0002_drafts
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_drafts"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("graph_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("published", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(sa.Column("base_number", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("graph_versions", schema=None) as batch_op:
        batch_op.drop_column("base_number")
        batch_op.drop_column("published")
