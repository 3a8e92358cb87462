"""The no-double-booking guarantee, measured: many clients, each on its own database connection,
started together, each trying to hold and book a free slot (another when it loses one) until none
is left. Every slot is booked once, and no slot ever has two active appointments.

`race(engine)` makes its own provider, slots and patients (named race-<random>, far in the future),
so it can run against any schedule database; it is for tests and benchmarks, not for a clinic's
live database (it leaves those rows behind).
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Engine

from careline.scheduling.model import BackendUnavailable, SlotQuery, SlotTaken
from careline.scheduling.schema import sched_locations, sched_providers, sched_slots, sched_visit_types
from careline.scheduling.sql import SqlScheduler, count_double_booked

VISIT_TYPE = "race"
SLOT_MINUTES = 20


def race(engine: Engine, clients: int = 50, slots: int = 10, timezone: str = "America/New_York") -> dict:
    """{"booked", "taken" (SlotTaken refusals), "double_booked" (slots with more than one active
    appointment, counted in SQL), "errors" (anything else), "seconds" (the race itself)}."""
    tag = f"race-{uuid.uuid4().hex[:10]}"
    start = _make_slots(engine, tag, slots)
    setup = SqlScheduler(engine, timezone=timezone)
    patient_ids = [setup.create_patient(f"Race Client {i}", date(2000, 1, 1), None).id for i in range(clients)]
    query = SlotQuery(start=start, end=start + timedelta(minutes=SLOT_MINUTES * slots), provider_id=tag, limit=slots)
    counts = {"booked": 0, "taken": 0, "errors": 0}
    lock = threading.Lock()
    barrier = threading.Barrier(clients)
    client_engine = _client_engine(engine, clients)
    try:
        threads = [
            threading.Thread(target=_client, args=(client_engine, timezone, barrier, query, p, tag, counts, lock))
            for p in patient_ids
        ]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - began
    finally:
        client_engine.dispose()
    return {**counts, "double_booked": count_double_booked(engine), "seconds": round(seconds, 3)}


def _client(engine: Engine, timezone, barrier, query, patient_id, tag, counts, lock) -> None:
    """One client: its own connection, opened before the start; then book until it has a slot or
    none is left."""
    holder = f"{tag}-{patient_id}"
    outcome = {"booked": 0, "taken": 0, "errors": 0}
    with engine.connect() as conn:
        scheduler = SqlScheduler(conn, timezone=timezone)
        barrier.wait()
        try:
            outcome = _book_one(scheduler, query, patient_id, holder)
        except BackendUnavailable:
            outcome["errors"] += 1
    with lock:
        for key, n in outcome.items():
            counts[key] += n


def _book_one(scheduler: SqlScheduler, query: SlotQuery, patient_id: str, holder: str) -> dict:
    outcome = {"booked": 0, "taken": 0, "errors": 0}
    while True:
        free = scheduler.find_slots(query, now=datetime.now(UTC))
        if not free:
            return outcome
        try:
            scheduler.hold(free[0].id, holder, seconds=60)
            scheduler.book(free[0].id, patient_id, VISIT_TYPE, holder=holder)
        except SlotTaken:
            outcome["taken"] += 1
            continue
        outcome["booked"] += 1
        return outcome


def _make_slots(engine: Engine, tag: str, slots: int) -> datetime:
    """A provider and `slots` free slots of its own, a year from now; the first slot's start."""
    start = (datetime.now(UTC) + timedelta(days=365)).replace(second=0, microsecond=0)
    with engine.begin() as conn:
        conn.execute(insert(sched_locations).values(id=tag, name="Race", address="", phone=""))
        conn.execute(insert(sched_providers).values(id=tag, name="Race", role="", active=True))
        if conn.execute(sched_visit_types.select().where(sched_visit_types.c.id == VISIT_TYPE)).first() is None:
            conn.execute(
                insert(sched_visit_types).values(
                    id=VISIT_TYPE,
                    name="Race",
                    minutes=SLOT_MINUTES,
                    bookable_by="patient,staff",
                    new_patients=True,
                    telehealth=False,
                )
            )
        rows = [
            {
                "provider_id": tag,
                "location_id": tag,
                "start": start + timedelta(minutes=SLOT_MINUTES * i),
                "end": start + timedelta(minutes=SLOT_MINUTES * (i + 1)),
                "visit_types": VISIT_TYPE,
                "status": "free",
                "version": 0,
            }
            for i in range(slots)
        ]
        conn.execute(insert(sched_slots), rows)
    return start


def _client_engine(engine: Engine, clients: int) -> Engine:
    """An engine to the same database with room for one connection per client (the service's pool
    is smaller on purpose)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return create_engine(
            url, pool_size=clients, max_overflow=0, connect_args={"check_same_thread": False, "timeout": 30}
        )
    with engine.connect() as conn:  # the same schema (tests run in one of their own)
        search_path = conn.execute(text("SHOW search_path")).scalar().replace(" ", "")
    return create_engine(
        url,
        pool_size=clients,
        max_overflow=0,
        pool_timeout=30,
        connect_args={"connect_timeout": 5, "options": f"-csearch_path={search_path}"},
    )
