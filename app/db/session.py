"""Database engines and sessions for SQLite (the embedded default) and PostgreSQL.

``make_engine`` applies what each backend needs (SQLite: foreign keys and WAL so that
the API and the CLI can share the file; PostgreSQL: pre-ping to survive restarts).
``session_scope`` is the one way domain code opens a transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DataError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.errors import InputError, StoreError


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` with the backend-specific settings Sealgate relies on."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception.

    Database failures surface as ``StoreError`` so callers answer 503, not 500; a value
    the database refuses (``DataError``) surfaces as ``InputError`` (400).
    """
    session = factory()
    try:
        yield session
        session.commit()
    except DataError as e:
        # The database refused a value (PostgreSQL text cannot hold NUL characters, a
        # number out of a column's range): the request's fault, not the store's.
        session.rollback()
        reason = str(e.orig).splitlines()[0][:200] if e.orig is not None else "refused"
        raise InputError(
            f"a value in the request cannot be used by the database: {reason}",
            code="input.unstorable",
        ) from e
    except SQLAlchemyError as e:
        session.rollback()
        raise StoreError(f"database error: {type(e).__name__}") from e
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
