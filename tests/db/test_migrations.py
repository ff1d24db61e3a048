"""Migrations run on SQLite and PostgreSQL and match the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.db.base import Base
from app.db.migrate import upgrade
from app.db.session import make_engine


class TestMigrations:
    def test_upgrade_creates_every_table(self, database_url: str) -> None:
        upgrade(database_url)
        engine = make_engine(database_url)
        tables = set(inspect(engine).get_table_names())
        engine.dispose()
        assert set(Base.metadata.tables) <= tables
        assert "alembic_version" in tables

    def test_autogenerate_finds_no_difference(self, database_url: str) -> None:
        upgrade(database_url)
        engine = make_engine(database_url)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        engine.dispose()
        assert diff == [], f"models and migrations differ: {diff}"

    def test_upgrade_is_idempotent(self, database_url: str) -> None:
        upgrade(database_url)
        upgrade(database_url)
