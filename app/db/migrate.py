"""Running Alembic migrations from the application (``sealgate db upgrade``, tests), and
checking that a database is at the revision this version of Sealgate needs.

The service never migrates on its own at start-up; an operator (or ``make run``) runs
``sealgate db upgrade`` first. ``check_schema`` is what tells them so, instead of the
first query failing on a missing table: the service calls it at start-up and in
``/readyz``, CLI commands before they use the store.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from app.errors import SchemaError, StoreError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
UPGRADE_HINT = "run 'sealgate db upgrade'"
# Alembic's default, which alembic/env.py keeps.
VERSION_TABLE = "alembic_version"


def alembic_config(database_url: str) -> Config:
    """An Alembic config bound to ``database_url`` and the project's migration scripts."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


@cache
def script_heads() -> frozenset[str]:
    """The head revision(s) of the migration scripts shipped with this version."""
    return frozenset(ScriptDirectory.from_config(alembic_config("")).get_heads())


def check_schema(engine: Engine) -> None:
    """Return when ``engine``'s database is at the scripts' head revision.

    Raises ``SchemaError`` (``store.not_migrated``) naming the database (password hidden)
    when it has no Sealgate schema or another revision, and ``StoreError``
    (``store.unavailable``) when it cannot be reached. A SQLite file that does not exist
    is reported without connecting, which would create it empty.
    """
    where = engine.url.render_as_string(hide_password=True)
    needed = script_heads()
    database = engine.url.database
    if (
        engine.dialect.name == "sqlite"
        and database not in (None, "", ":memory:")
        and not database.startswith("file:")
        and not Path(database).exists()
    ):
        raise _not_migrated(where, current=frozenset(), needed=needed)
    try:
        # Read directly rather than through Alembic's MigrationContext, which logs two INFO
        # lines each time (``/readyz`` runs this on every probe).
        with engine.connect() as conn:
            current = (
                frozenset(conn.scalars(text(f"SELECT version_num FROM {VERSION_TABLE}")))
                if inspect(conn).has_table(VERSION_TABLE)
                else frozenset()
            )
    except SQLAlchemyError as e:
        raise StoreError(f"database unreachable: {type(e).__name__}") from e
    if current != needed:
        raise _not_migrated(where, current=current, needed=needed)


def _not_migrated(where: str, *, current: frozenset[str], needed: frozenset[str]) -> SchemaError:
    if not current:
        problem = "has no Sealgate schema"
    else:
        problem = f"is at revision {', '.join(sorted(current))}, needs {', '.join(sorted(needed))}"
    return SchemaError(
        f"the database at {where} {problem}: {UPGRADE_HINT}",
        details={"current": sorted(current), "needed": sorted(needed)},
    )
