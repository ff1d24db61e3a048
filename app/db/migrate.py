"""Running Alembic migrations from the application (``sealgate db upgrade``, tests).

The service never migrates on its own at start-up; an operator (or ``make run``) runs
``sealgate db upgrade`` first.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from alembic import command

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    """An Alembic config bound to ``database_url`` and the project's migration scripts."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)
