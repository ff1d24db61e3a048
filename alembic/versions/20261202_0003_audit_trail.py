"""audit trail: stored inputs, hash-chained audit records, their image index, checkpoints

Revision ID: 0003
Revises: 0005
Create Date: 2026-12-02 07:13:33.171674
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.base

revision: str = "0003"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=71), nullable=False),
        sa.Column("cutoff", app.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", app.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
    )
    with op.batch_alter_table("audit_checkpoints", schema=None) as batch_op:
        batch_op.create_index("ix_audit_checkpoints_kind_seq", ["kind", "seq"], unique=False)

    op.create_table(
        "stored_inputs",
        sa.Column("hash", sa.String(length=71), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", app.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_stored_inputs")),
    )
    with op.batch_alter_table("stored_inputs", schema=None) as batch_op:
        batch_op.create_index("ix_stored_inputs_created_at", ["created_at"], unique=False)

    op.create_table(
        "audit_records",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("time", app.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("namespace", sa.String(length=253), nullable=True),
        sa.Column("object", sa.String(length=512), nullable=True),
        sa.Column("images", sa.JSON(), nullable=False),
        sa.Column("digests", sa.JSON(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("policy_revision", sa.String(length=128), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("input_hash", sa.String(length=71), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=71), nullable=False),
        sa.Column("hash", sa.String(length=71), nullable=False),
        sa.ForeignKeyConstraint(
            ["input_hash"],
            ["stored_inputs.hash"],
            name=op.f("fk_audit_records_input_hash_stored_inputs"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_records")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_records_hash")),
    )
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.create_index("ix_audit_records_actor", ["actor"], unique=False)
        batch_op.create_index("ix_audit_records_input_hash", ["input_hash"], unique=False)
        batch_op.create_index("ix_audit_records_kind", ["kind"], unique=False)
        batch_op.create_index("ix_audit_records_namespace", ["namespace"], unique=False)
        batch_op.create_index("ix_audit_records_time", ["time"], unique=False)

    op.create_table(
        "audit_subjects",
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("field", sa.String(length=8), nullable=False),
        sa.Column("value", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(
            ["seq"], ["audit_records.seq"], name=op.f("fk_audit_subjects_seq_audit_records")
        ),
        sa.PrimaryKeyConstraint("seq", "field", "value", name=op.f("pk_audit_subjects")),
    )
    with op.batch_alter_table("audit_subjects", schema=None) as batch_op:
        batch_op.create_index(
            "ix_audit_subjects_field_value", ["field", "value", "seq"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_subjects", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_subjects_field_value")

    op.drop_table("audit_subjects")
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_records_time")
        batch_op.drop_index("ix_audit_records_namespace")
        batch_op.drop_index("ix_audit_records_kind")
        batch_op.drop_index("ix_audit_records_input_hash")
        batch_op.drop_index("ix_audit_records_actor")

    op.drop_table("audit_records")
    with op.batch_alter_table("stored_inputs", schema=None) as batch_op:
        batch_op.drop_index("ix_stored_inputs_created_at")

    op.drop_table("stored_inputs")
    with op.batch_alter_table("audit_checkpoints", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_checkpoints_kind_seq")

    op.drop_table("audit_checkpoints")
