"""decision records: the input by its hash, stored once in the audit trail's input table

Each decision row kept its whole input (findings included) in ``decisions.input``, while its
audit record already named the same content in ``stored_inputs`` by hash. Upgrading moves
every row's input there (the canonical JSON of ``app.audit``, so an input the audit trail
already holds is the same row) and leaves ``decisions.input_hash`` in its place; from now
on an input may name its findings, stored apart once per scan (``stored_inputs.
findings_hash``). Downgrading copies each decision's input back whole; inputs stored with
their findings apart keep them apart.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql, sqlite

import app.db.base
from app.audit.canonical import canonical_json, content_hash

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Rows moved per round trip.
_BATCH = 500
_DECISIONS_FK = "fk_decisions_input_hash_stored_inputs"
_DECISIONS_INDEX = "ix_decisions_input_hash"
_FINDINGS_INDEX = "ix_stored_inputs_findings_hash"
_FINDINGS_KEY = "$findings"

# The tables as this revision knows them (never the application's current models).
_decisions = sa.table(
    "decisions",
    sa.column("id", sa.Integer),
    sa.column("input", sa.JSON),
    sa.column("input_hash", sa.String),
    sa.column("created_at", app.db.base.UTCDateTime()),
)
_stored_inputs = sa.table(
    "stored_inputs",
    sa.column("hash", sa.String),
    sa.column("body", sa.LargeBinary),
    sa.column("size", sa.Integer),
    sa.column("created_at", app.db.base.UTCDateTime()),
    sa.column("findings_hash", sa.String),
)


def _batches(bind: sa.Connection, query: sa.Select[Any]) -> Iterator[Sequence[sa.Row[Any]]]:
    """Rows of ``query`` (whose first column is ``decisions.id``) ``_BATCH`` at a time."""
    last = 0
    while True:
        rows = bind.execute(
            query.where(_decisions.c.id > last).order_by(_decisions.c.id).limit(_BATCH)
        ).all()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _store_ignoring_duplicates(bind: sa.Connection, values: list[dict[str, Any]]) -> None:
    dialect = postgresql if bind.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(_stored_inputs).on_conflict_do_nothing(index_elements=["hash"])
    bind.execute(statement, values)


def upgrade() -> None:
    # A plain column (see StoredInput.findings_hash): no table is recreated, which on
    # SQLite the foreign keys naming stored_inputs would refuse.
    op.add_column("stored_inputs", sa.Column("findings_hash", sa.String(length=71), nullable=True))
    op.create_index(_FINDINGS_INDEX, "stored_inputs", ["findings_hash"], unique=False)
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("input_hash", sa.String(length=71), nullable=True))
    bind = op.get_bind()
    query = sa.select(_decisions.c.id, _decisions.c.input, _decisions.c.created_at)
    for rows in _batches(bind, query):
        inputs: dict[str, dict[str, Any]] = {}
        names: list[dict[str, Any]] = []
        for row in rows:
            body = canonical_json(row.input)
            name = content_hash(body)
            inputs.setdefault(
                name,
                {
                    "hash": name,
                    "body": body,
                    "size": len(body),
                    "created_at": row.created_at,
                    "findings_hash": None,
                },
            )
            names.append({"row_id": row.id, "row_hash": name})
        _store_ignoring_duplicates(bind, list(inputs.values()))
        bind.execute(
            _decisions.update()
            .where(_decisions.c.id == sa.bindparam("row_id"))
            .values(input_hash=sa.bindparam("row_hash")),
            names,
        )
    with op.batch_alter_table("decisions") as batch:
        batch.alter_column("input_hash", existing_type=sa.String(length=71), nullable=False)
        batch.create_foreign_key(_DECISIONS_FK, "stored_inputs", ["input_hash"], ["hash"])
        batch.create_index(_DECISIONS_INDEX, ["input_hash"], unique=False)
        batch.drop_column("input")


def _whole(body: bytes, findings: bytes | None, findings_hash: str | None) -> Any:
    """A stored input with the findings it names put back in their place."""
    document = json.loads(body)
    scan = document.get("scan")
    placeholder = {_FINDINGS_KEY: findings_hash}
    if (
        findings is not None
        and isinstance(scan, dict)
        and scan.get("vulnerabilities") == placeholder
    ):
        scan["vulnerabilities"] = json.loads(findings)
    return document


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("input", sa.JSON(), nullable=True))
    bind = op.get_bind()
    findings = _stored_inputs.alias("findings")
    query = (
        sa.select(
            _decisions.c.id,
            _stored_inputs.c.body,
            findings.c.body.label("findings"),
            _stored_inputs.c.findings_hash,
        )
        .join(_stored_inputs, _stored_inputs.c.hash == _decisions.c.input_hash)
        .outerjoin(findings, findings.c.hash == _stored_inputs.c.findings_hash)
    )
    for rows in _batches(bind, query):
        bind.execute(
            _decisions.update()
            .where(_decisions.c.id == sa.bindparam("row_id"))
            .values(input=sa.bindparam("row_input")),
            [
                {"row_id": r.id, "row_input": _whole(r.body, r.findings, r.findings_hash)}
                for r in rows
            ],
        )
    with op.batch_alter_table("decisions") as batch:
        batch.alter_column("input", existing_type=sa.JSON(), nullable=False)
        batch.drop_index(_DECISIONS_INDEX)
        batch.drop_constraint(_DECISIONS_FK, type_="foreignkey")
        batch.drop_column("input_hash")
    op.drop_index(_FINDINGS_INDEX, table_name="stored_inputs")
    # SQLite (3.35 and later) drops a plain column in place; a batch would recreate the table.
    op.execute("ALTER TABLE stored_inputs DROP COLUMN findings_hash")
