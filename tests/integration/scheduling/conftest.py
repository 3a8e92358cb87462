"""Fixtures of the schedule's SQL tests, on SQLite and PostgreSQL (a schema of its own).

`migrated_engine`: a database at the newest migration, shared by the tests of a session (one per
backend). `schedule_engine`: that database emptied of schedule rows, with the sample schedule
(knowledge/clinic/schedule.yml) loaded and 14 days of slots made from MONDAY. `scheduler`: a
SqlScheduler on it. Tests pass `now` (a time before MONDAY) where it matters."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from careline.migrations import migrate
from careline.scheduling.calendar import generate_slots, load_schedule
from careline.scheduling.schema import SCHEDULE_TABLES
from careline.scheduling.sql import SqlScheduler
from tests.helpers import ROOT

PG_URL = os.environ.get("CARELINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TIMEZONE = "America/New_York"
SECRET = "k" * 48
SCHEDULE_FILE = ROOT / "knowledge" / "clinic" / "schedule.yml"
# A Monday with Dr. Patel's day off (Fri 18th), extra evening hours (Tue 22nd), Christmas Eve's early
# closing and Christmas Day in its 14 days.
MONDAY = date(2026, 12, 14)
BEFORE = datetime(2026, 12, 13, 12, 0, tzinfo=UTC)  # "now" for the tests: the day before MONDAY
DAYS = 14


@contextmanager
def postgres_schema(prefix: str = "sched"):
    """An engine whose search_path is a new schema, dropped afterwards; skips without PostgreSQL."""
    url = PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError:
        admin.dispose()
        pytest.skip(f"no PostgreSQL at {PG_URL}")
    engine = create_engine(url, pool_size=10, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def backend_engine(backend: str, directory):
    """A fresh, empty database of this backend (not migrated)."""
    if backend == "postgresql":
        with postgres_schema() as engine:
            yield engine
        return
    engine = create_engine(
        f"sqlite:///{directory / f'schedule-{uuid.uuid4().hex[:8]}.db'}",
        connect_args={"check_same_thread": False, "timeout": 10},
    )
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def migrated_engine(request, tmp_path_factory) -> Engine:
    with backend_engine(request.param, tmp_path_factory.mktemp("schedule")) as engine:
        migrate(engine)
        yield engine


def empty_schedule(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(SCHEDULE_TABLES):
            conn.execute(delete(table))


@pytest.fixture
def schedule_engine(migrated_engine) -> Engine:
    empty_schedule(migrated_engine)
    load_schedule(migrated_engine, SCHEDULE_FILE, today=MONDAY)
    generate_slots(migrated_engine, TIMEZONE, MONDAY, DAYS, now=BEFORE)
    return migrated_engine


@pytest.fixture
def scheduler(schedule_engine) -> SqlScheduler:
    return SqlScheduler(schedule_engine, timezone=TIMEZONE, secret=SECRET)
