"""Schema migrations (Alembic). Every table is created and changed by a revision in versions/;
`migrate(engine)` brings a database to the newest one, and channels.db.make_engine calls it.

After changing a table, add a revision: `DATABASE_URL=... .venv/bin/alembic -c
careline/migrations/alembic.ini revision --autogenerate -m "what changed"` writes it from the
difference between a database at HEAD and channels.db.metadata (read it: it is code under review;
name it NNNN_what.py with revision "NNNN"), then set HEAD below to it. `careline db upgrade` (or any
service starting) applies it; `alembic ... check` says whether the metadata and the migrations agree.

Services may start together (the gateway and the action server): the first one migrates while
holding a lock (PostgreSQL: an advisory lock; SQLite: BEGIN IMMEDIATE, the database's write lock)
and the others, once they get it, find the database at HEAD and do nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
# The newest revision in versions/ (tests/integration/scheduling/test_sql_migrations.py checks it).
HEAD = "0002"
# pg_advisory_xact_lock key of migrations: any fixed 64-bit number that no other lock uses.
ADVISORY_LOCK_KEY = 0x6361_7265_6C69_6E65 & 0x7FFF_FFFF_FFFF_FFFF  # "careline"


def alembic_config(connection: Connection | None = None, url: str | None = None):
    """An Alembic Config built in code (no alembic.ini is read): for `connection` when given,
    else for `url`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def current_revision(engine: Engine) -> str | None:
    """The database's revision (one query), or None when it has none."""
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError as exc:
            if exc.connection_invalidated or _unreachable(exc):
                raise
            return None


def migrate(engine: Engine) -> bool:
    """Upgrade the database to HEAD; False when it was there already (the usual case: one query)."""
    if current_revision(engine) == HEAD:
        return False
    from alembic import command

    with engine.connect() as conn:
        _lock(conn)
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar() if _versioned(conn) else None
        if revision == HEAD:  # another process migrated while this one waited for the lock
            conn.rollback()
            return False
        log.info("migrating the database from %s to %s", revision or "nothing", HEAD)
        command.upgrade(alembic_config(conn), "head")
        conn.commit()
    return True


def _lock(conn: Connection) -> None:
    """Begin the migration's transaction holding the database's migration lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _versioned(conn: Connection) -> bool:
    from sqlalchemy import inspect

    return inspect(conn).has_table("alembic_version")


def _unreachable(exc: DBAPIError) -> bool:
    """A connection failure, rather than a missing alembic_version table."""
    message = str(exc.orig).lower()
    return not any(s in message for s in ("no such table", "does not exist", "undefinedtable"))
