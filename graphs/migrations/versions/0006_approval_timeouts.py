"""approval timeouts: each row's deadline, warning time and action, and when each happened

Rows written before this migration get no deadline (their graphs had no timeouts).

Revision ID: 0006_approval_timeouts
Revises: 0005_schedules
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_approval_timeouts"
down_revision: str | None = "0005_schedules"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("warn_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("timeout_action", sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column("warned_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("timed_out_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_approvals_warn_due", ["status", "warn_at"], unique=False)
        batch_op.create_index("ix_approvals_expiry_due", ["status", "expires_at"], unique=False)
        batch_op.create_index(
            "ix_approvals_timed_out", ["workspace_id", "timed_out_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_approvals_timed_out")
        batch_op.drop_index("ix_approvals_expiry_due")
        batch_op.drop_index("ix_approvals_warn_due")
        batch_op.drop_column("timed_out_at")
        batch_op.drop_column("warned_at")
        batch_op.drop_column("timeout_action")
        batch_op.drop_column("warn_at")
        batch_op.drop_column("expires_at")
