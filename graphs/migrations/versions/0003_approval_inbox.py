"""approvals: inbox and history indexes, and whether the run had read untrusted content

Revision ID: 0003_approval_inbox
Revises: 0002_drafts
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_approval_inbox"
down_revision: str | None = "0002_drafts"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tainted", sa.Boolean(), nullable=True))
        batch_op.create_index(
            "ix_approvals_inbox",
            ["workspace_id", "status", "created_at", "approval_id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_approvals_history", ["workspace_id", "decided_at", "approval_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_approvals_history")
        batch_op.drop_index("ix_approvals_inbox")
        batch_op.drop_column("tainted")
