"""graph schedules: a cron expression per graph, fired by the run manager's scheduler

Revision ID: 0005_schedules
Revises: 0004_forks
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_schedules"
down_revision: str | None = "0004_forks"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "graph_schedules",
        sa.Column("graph_id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("cron", sa.String(length=120), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("run_as", sa.String(length=64), nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_id", sa.String(length=36), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["graph_id"], ["graphs.graph_id"]),
        sa.PrimaryKeyConstraint("graph_id"),
    )
    with op.batch_alter_table("graph_schedules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_graph_schedules_next_fire_at"), ["next_fire_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_graph_schedules_workspace_id"), ["workspace_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("graph_schedules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_graph_schedules_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_graph_schedules_next_fire_at"))
    op.drop_table("graph_schedules")
