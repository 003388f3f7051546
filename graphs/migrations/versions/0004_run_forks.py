"""run forks (time travel, retries) and the call hash a fork's ledger looks effects up by

Revision ID: 0004_forks
Revises: 0003_approval_inbox
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_forks"
down_revision: str | None = "0003_approval_inbox"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("effects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("call_hash", sa.String(length=64), nullable=True))
    op.create_table(
        "run_forks",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("origin_run_id", sa.String(length=36), nullable=False),
        sa.Column("checkpoint_id", sa.String(length=64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("edits", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["origin_run_id"], ["runs.run_id"]),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"]),
        sa.PrimaryKeyConstraint("run_id"),
    )
    with op.batch_alter_table("run_forks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_run_forks_origin_run_id"), ["origin_run_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_run_forks_workspace_id"), ["workspace_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("run_forks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_forks_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_run_forks_origin_run_id"))
    op.drop_table("run_forks")
    with op.batch_alter_table("effects", schema=None) as batch_op:
        batch_op.drop_column("call_hash")
