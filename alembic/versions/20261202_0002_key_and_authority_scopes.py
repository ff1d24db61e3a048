"""key scopes and authority signed-identity rules

Adds ``signing_keys.scopes`` (image globs a key may sign) and ``authorities.signed_identity``
(what repository a signature must name). Both are nullable: rows written before this revision
keep today's behaviour (a key signs everywhere, an authority accepts any signed identity) and
the service names them in a warning at start-up.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scopes", sa.JSON(), nullable=True))
    with op.batch_alter_table("authorities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signed_identity", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("authorities", schema=None) as batch_op:
        batch_op.drop_column("signed_identity")
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_column("scopes")
