"""An unmigrated database is reported as such, by name, with the command that fixes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from app.config import get_settings, load_settings
from app.db.migrate import check_schema, script_heads, upgrade
from app.db.session import make_engine
from app.errors import SchemaError
from app.main import create_app
from app.services import Services

HINT = "run 'sealgate db upgrade'"


class TestCheckSchema:
    def test_a_migrated_database_passes(self, database_url: str) -> None:
        upgrade(database_url)
        engine = make_engine(database_url)
        try:
            check_schema(engine)
        finally:
            engine.dispose()

    def test_an_empty_database_has_no_schema(self, database_url: str) -> None:
        engine = make_engine(database_url)
        with engine.begin() as conn:  # it exists, with nothing in it
            conn.execute(text("SELECT 1"))
        try:
            with pytest.raises(SchemaError) as raised:
                check_schema(engine)
        finally:
            engine.dispose()
        assert raised.value.code == "store.not_migrated"
        assert raised.value.http_status == 503
        where = make_url(database_url).render_as_string(hide_password=True)
        assert raised.value.message == f"the database at {where} has no Sealgate schema: {HINT}"

    def test_an_older_revision_is_named_with_the_one_needed(self, database_url: str) -> None:
        upgrade(database_url)
        engine = make_engine(database_url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
        try:
            (head,) = script_heads()
            with pytest.raises(SchemaError, match=rf"is at revision 0000, needs {head}: run"):
                check_schema(engine)
        finally:
            engine.dispose()

    @pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
    def test_the_password_is_not_shown(self, database_url: str) -> None:
        url = make_url(database_url).set(password="s3cret-pw")  # trust auth ignores it
        engine = make_engine(url.render_as_string(hide_password=False))
        try:
            with pytest.raises(SchemaError) as raised:
                check_schema(engine)
        finally:
            engine.dispose()
        assert "s3cret-pw" not in raised.value.message
        assert ":***@" in raised.value.message

    def test_a_missing_sqlite_file_is_not_created(self, tmp_path: Path) -> None:
        path = tmp_path / "never.db"
        engine = make_engine(f"sqlite:///{path}")
        with pytest.raises(SchemaError, match="has no Sealgate schema"):
            check_schema(engine)
        engine.dispose()
        assert not path.exists()


class TestWhoChecks:
    def test_a_cli_command_says_so_and_leaves_no_file(self, tmp_path: Path) -> None:
        from app.cli.main import cli

        path = tmp_path / "fresh.db"
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(
                cli, ["key", "list"], env={"SEALGATE_DATABASE_URL": f"sqlite:///{path}"}
            )
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 1
        assert result.stderr == (
            f"error: the database at sqlite:///{path} has no Sealgate schema: {HINT} "
            "[store.not_migrated]\n"
        )
        assert not path.exists()

    def test_the_service_refuses_to_start(self, tmp_path: Path) -> None:
        settings = load_settings(database_url=f"sqlite:///{tmp_path / 'fresh.db'}")
        with (
            pytest.raises(SchemaError, match="has no Sealgate schema"),
            TestClient(create_app(settings)),
        ):
            pass

    def test_readyz_says_so(self, services: Services, tmp_path: Path) -> None:
        with TestClient(create_app(services=services)) as client:
            services.engine = make_engine(f"sqlite:///{tmp_path / 'gone.db'}")
            response = client.get("/readyz")
        assert response.status_code == 503
        database = response.json()["checks"]["database"]
        assert database.startswith("store.not_migrated: the database at sqlite:///")
        assert database.endswith(f"has no Sealgate schema: {HINT}")
