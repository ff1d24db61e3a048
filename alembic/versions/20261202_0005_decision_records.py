"""decision records: revision, failure, who asked, where from, latency

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("policy_revision", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("failure", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("actor", sa.String(length=256), nullable=True))
        batch.add_column(sa.Column("actor_kind", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("source", sa.String(length=256), nullable=True))
        batch.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))
        batch.add_column(
            sa.Column("dry_run", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("latency_ms", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        for column in (
            "latency_ms",
            "dry_run",
            "request_id",
            "source",
            "actor_kind",
            "actor",
            "failure",
            "policy_revision",
        ):
            batch.drop_column(column)
