"""The migrations (careline/migrations/) make exactly the tables of channels.db.metadata, on SQLite
and PostgreSQL; adopt a database made by the old create_all; and are safe to start twice at once."""

from __future__ import annotations

import threading

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, insert, inspect, select

import careline.scheduling.schema  # noqa: F401  (the schedule's tables join the metadata)
from careline.migrations import HEAD, alembic_config, current_revision, migrate
from channels.db import make_engine, metadata, safety_audit, sms_consent
from tests.integration.scheduling.conftest import backend_engine

BASELINE = (
    "safety_audit",
    "sms_consent",
    "sms_delivery",
    "privacy_audit",
    "staff_accounts",
    "staff_audit",
    "canned_replies",
)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request, tmp_path):
    with backend_engine(request.param, tmp_path) as engine:
        yield engine


def differences(engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)


def test_head_is_the_newest_revision():
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD


def test_the_migrations_make_exactly_the_metadata(empty_engine):
    assert current_revision(empty_engine) is None
    assert migrate(empty_engine) is True
    assert current_revision(empty_engine) == HEAD
    assert differences(empty_engine) == []
    assert set(inspect(empty_engine).get_table_names()) == set(metadata.tables) | {"alembic_version"}
    assert migrate(empty_engine) is False  # at head: nothing to do


def test_a_database_made_by_create_all_upgrades_and_keeps_its_rows(empty_engine):
    metadata.create_all(empty_engine, tables=[metadata.tables[name] for name in BASELINE])
    with empty_engine.begin() as conn:
        conn.execute(insert(sms_consent).values(conversation="c" * 64, status="opted_out", source="STOP"))
    migrate(empty_engine)
    assert current_revision(empty_engine) == HEAD and differences(empty_engine) == []
    with empty_engine.connect() as conn:
        assert conn.execute(select(sms_consent.c.status)).scalar() == "opted_out"


def test_a_database_with_every_table_from_create_all_is_adopted(empty_engine):
    metadata.create_all(empty_engine)
    migrate(empty_engine)
    assert current_revision(empty_engine) == HEAD and differences(empty_engine) == []


def test_down_and_up_again(empty_engine):
    migrate(empty_engine)
    with empty_engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}
    migrate(empty_engine)
    assert differences(empty_engine) == []


def test_services_starting_together_migrate_once(empty_engine):
    """The gateway and the action server start at the same moment: both come up, at HEAD."""
    engines = [create_engine(empty_engine.url, **_same_connect_args(empty_engine)) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def start(engine) -> None:
        barrier.wait()
        try:
            migrate(engine)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    assert errors == []
    assert current_revision(empty_engine) == HEAD and differences(empty_engine) == []


def test_make_engine_migrates(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'careline.db'}")
    try:
        assert current_revision(engine) == HEAD
        with engine.begin() as conn:
            conn.execute(
                insert(safety_audit).values(
                    conversation="c",
                    channel="web",
                    outcome="advise",
                    owner_before="bot",
                    owner_after="bot",
                    action="advised",
                )
            )
    finally:
        engine.dispose()


def _same_connect_args(engine) -> dict:
    if engine.dialect.name == "sqlite":
        return {"connect_args": {"check_same_thread": False, "timeout": 10}}
    with engine.connect() as conn:
        search_path = conn.exec_driver_sql("SHOW search_path").scalar().replace(" ", "")
    return {"connect_args": {"options": f"-csearch_path={search_path}"}}
