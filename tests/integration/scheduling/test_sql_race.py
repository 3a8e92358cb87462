"""No double booking, ever: 50 clients on their own connections race for 10 slots (SQLite and
PostgreSQL); and the partial unique index alone refuses a second active appointment for a slot."""

from __future__ import annotations

import threading
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from careline.migrations import migrate
from careline.scheduling.model import SlotQuery
from careline.scheduling.race import race
from careline.scheduling.schema import appointments
from careline.scheduling.sql import count_double_booked
from tests.integration.scheduling.conftest import BEFORE, DAYS, MONDAY, TIMEZONE, backend_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_engine(request, tmp_path):
    with backend_engine(request.param, tmp_path) as engine:
        migrate(engine)
        yield engine


def test_fifty_clients_book_ten_slots_exactly_once(fresh_engine):
    result = race(fresh_engine, clients=50, slots=10, timezone=TIMEZONE)
    print(f"race on {fresh_engine.dialect.name}: {result}")
    assert result["booked"] == 10
    assert result["double_booked"] == 0
    assert result["errors"] == 0
    assert result["taken"] > 0  # they did collide: the losers were told SlotTaken and tried another


def test_the_unique_index_alone_refuses_a_second_active_appointment(scheduler):
    """Two transactions insert an active appointment for one slot, skipping the slot's
    compare-and-set: exactly one commits."""
    engine = scheduler.bind
    slot = scheduler.find_slots(SlotQuery(**_window_kwargs()), now=BEFORE)[0]
    patients = [scheduler.create_patient(f"Index Test {i}", BEFORE.date(), None) for i in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def insert_appointment(patient_id: str) -> None:
        with engine.connect() as conn:
            barrier.wait()
            try:
                with conn.begin():
                    conn.execute(insert(appointments).values(**_appointment(slot, patient_id)))
                outcomes.append("committed")
            except IntegrityError:
                outcomes.append("refused")

    threads = [threading.Thread(target=insert_appointment, args=(p.id,)) for p in patients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["committed", "refused"]
    assert count_double_booked(engine) == 0


def test_a_cancelled_appointment_does_not_hold_its_slot_in_the_index(scheduler):
    slot = scheduler.find_slots(SlotQuery(**_window_kwargs()), now=BEFORE)[0]
    a, b = (scheduler.create_patient(f"Index Test {i}", BEFORE.date(), None) for i in range(2))
    with scheduler.bind.begin() as conn:
        conn.execute(insert(appointments).values(**{**_appointment(slot, a.id), "status": "cancelled"}))
        conn.execute(insert(appointments).values(**{**_appointment(slot, a.id), "status": "noshow"}))
        conn.execute(insert(appointments).values(**_appointment(slot, b.id)))
    with pytest.raises(IntegrityError), scheduler.bind.begin() as conn:
        conn.execute(insert(appointments).values(**{**_appointment(slot, a.id), "status": "arrived"}))


def _window_kwargs() -> dict:
    start = datetime.combine(MONDAY, time(), ZoneInfo(TIMEZONE))
    return {"start": start, "end": start + timedelta(days=DAYS), "limit": 1}


def _appointment(slot, patient_id: str) -> dict:
    return {
        "patient_id": int(patient_id),
        "slot_id": int(slot.id),
        "start": slot.start,
        "end": slot.end,
        "provider_id": slot.provider_id,
        "location_id": slot.location_id,
        "visit_type": "follow_up",
        "status": "booked",
        "reason": "",
        "booked_by": "patient",
        "cancel_reason": "",
    }
