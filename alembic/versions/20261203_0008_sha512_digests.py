"""digest columns wide enough for sha512

Every digest column was ``VARCHAR(100)``, enough for ``sha256:<64 hex>`` (71 characters)
but not for ``sha512:<128 hex>`` (135), the other algorithm the OCI image spec registers and
Sealgate accepts: a Pod naming an image by a sha512 digest made the decision recorder's
batch fail on PostgreSQL, losing every record in it. Widening a ``VARCHAR`` is a catalog
change on PostgreSQL; SQLite does not enforce the length, so there only the declared type
changes (the table is rebuilt, as SQLite alters columns).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("signature_records", "digest", False),
    ("scans", "digest", False),
    ("scans", "referrer_digest", True),
    ("decisions", "digest", True),
    ("image_verdicts", "digest", False),
)


def _resize(length: int, before: int) -> None:
    for table, column, nullable in _COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                column,
                existing_type=sa.String(before),
                type_=sa.String(length),
                existing_nullable=nullable,
            )


def upgrade() -> None:
    _resize(135, 100)


def downgrade() -> None:
    _resize(100, 135)
