"""Loading the schedule file and making slots from it, on SQLite and PostgreSQL: idempotent, quick
when nothing changed, and never touching a booked slot."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from careline.scheduling.calendar import (
    ScheduleFileError,
    ensure_schedule,
    generate_slots,
    load_schedule,
    seed_demo_patients,
    sync_slots,
)
from careline.scheduling.model import AppointmentStatus, SlotQuery, SlotStatus
from careline.scheduling.schema import patients, sched_exceptions, sched_slots, sched_templates
from careline.scheduling.sql import SqlScheduler
from careline.settings import SchedulingSettings
from tests.helpers import ROOT
from tests.integration.scheduling.conftest import (
    BEFORE,
    DAYS,
    MONDAY,
    SCHEDULE_FILE,
    SECRET,
    TIMEZONE,
    empty_schedule,
)

TZ = ZoneInfo(TIMEZONE)
WEDNESDAY = date(2026, 12, 16)
DEMO = ROOT / "knowledge" / "clinic" / "demo_patients.yml"


def on_day(scheduler, day: date, **kw):
    start = datetime.combine(day, datetime.min.time(), TZ)
    return scheduler.find_slots(SlotQuery(start=start, end=start + timedelta(days=1), limit=500, **kw), now=BEFORE)


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def edited(tmp_path, old: str, new: str):
    text = SCHEDULE_FILE.read_text()
    assert old in text
    path = tmp_path / "schedule.yml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_loading_and_generating_again_changes_nothing(schedule_engine):
    slots = count(schedule_engine, sched_slots)
    assert slots > 500
    assert set(load_schedule(schedule_engine, SCHEDULE_FILE, today=MONDAY).values()) == {0}
    again = sync_slots(schedule_engine, TIMEZONE, MONDAY, DAYS, now=BEFORE)
    assert again == {"created": 0, "updated": 0, "removed": 0, "blocked": 0, "unchanged": slots}
    assert count(schedule_engine, sched_slots) == slots


def test_more_days_add_only_the_new_days(schedule_engine):
    before = count(schedule_engine, sched_slots)
    made = generate_slots(schedule_engine, TIMEZONE, MONDAY, DAYS + 7, now=BEFORE)
    assert made > 0 and count(schedule_engine, sched_slots) == before + made


def test_a_new_holiday_removes_free_slots_and_keeps_booked_ones(schedule_engine, scheduler, tmp_path):
    patient = scheduler.create_patient("Holiday Test", date(1990, 1, 1), None)
    kept, blocked = on_day(scheduler, WEDNESDAY, provider_id="patel")[:2]
    booked = scheduler.book(kept.id, patient.id, "follow_up", now=BEFORE)
    cancelled = scheduler.book(blocked.id, patient.id, "follow_up", now=BEFORE)
    scheduler.cancel(cancelled.id)  # its slot is free again, but an appointment names it
    snow = edited(tmp_path, "holidays:\n", "holidays:\n  - {name: Snow day, date: 2026-12-16}\n")
    assert load_schedule(schedule_engine, snow, today=MONDAY)["exceptions"] > 0
    counts = sync_slots(schedule_engine, TIMEZONE, MONDAY, DAYS, now=BEFORE)
    assert counts["removed"] > 50 and counts["blocked"] == 1 and counts["created"] == 0
    assert on_day(scheduler, WEDNESDAY) == []
    assert scheduler.appointment(booked.id).status == AppointmentStatus.BOOKED
    assert scheduler.slot(kept.id).status == SlotStatus.BUSY
    assert scheduler.slot(blocked.id).status == SlotStatus.BUSY_UNAVAILABLE
    load_schedule(schedule_engine, SCHEDULE_FILE, today=MONDAY)  # the snow day is taken back
    assert sync_slots(schedule_engine, TIMEZONE, MONDAY, DAYS, now=BEFORE)["created"] == counts["removed"]


def test_a_changed_template_changes_free_slots_only(schedule_engine, scheduler, tmp_path):
    patient = scheduler.create_patient("Template Test", date(1990, 1, 1), None)
    taken = on_day(scheduler, WEDNESDAY, provider_id="patel", visit_type="telehealth")[0]
    scheduler.book(taken.id, patient.id, "telehealth", now=BEFORE)
    changed = edited(
        tmp_path,
        "visit_types: [telehealth, follow_up]}\n\n  - id: okafor",
        "visit_types: [telehealth, follow_up, same_day_sick]}\n\n  - id: okafor",
    )
    load_schedule(schedule_engine, changed, today=MONDAY)
    counts = sync_slots(schedule_engine, TIMEZONE, MONDAY, DAYS, now=BEFORE)
    assert counts["updated"] == 2 * 12 - 1 and counts["created"] == 0  # two Wednesdays of 12, less the booked one
    afternoon = on_day(scheduler, WEDNESDAY, provider_id="patel", visit_type="same_day_sick")
    assert afternoon and taken.id not in {s.id for s in afternoon}
    assert scheduler.slot(taken.id).visit_types == ("telehealth", "follow_up")


def test_a_provider_taken_out_of_the_file_is_no_longer_offered(schedule_engine, scheduler, tmp_path):
    text = SCHEDULE_FILE.read_text()
    start = text.index("  - id: brooks")
    path = tmp_path / "schedule.yml"
    path.write_text(text[:start] + text[text.index("\nexceptions:\n") :].replace("  - {provider: brooks", "  # "))
    assert load_schedule(schedule_engine, path, today=MONDAY)["providers"] == 1
    assert "brooks" not in {p.id for p in scheduler.providers()}
    assert not [
        s for s in scheduler.find_slots(SlotQuery(BEFORE, BEFORE + timedelta(days=20), provider_id="brooks"), BEFORE)
    ]
    assert sync_slots(schedule_engine, TIMEZONE, MONDAY, DAYS, now=BEFORE)["removed"] > 100


def test_a_bad_file_changes_nothing(schedule_engine, tmp_path):
    before = (count(schedule_engine, sched_templates), count(schedule_engine, sched_exceptions))
    bad = edited(
        tmp_path, "visit_types: [follow_up, same_day_sick]}", "visit_types: [follow_up, same_day_sick, new_patient]}"
    )
    with pytest.raises(ScheduleFileError, match="'new_patient' takes 40 minutes"):
        load_schedule(schedule_engine, bad, today=MONDAY)
    assert (count(schedule_engine, sched_templates), count(schedule_engine, sched_exceptions)) == before


def test_two_generators_at_once_make_each_slot_once(migrated_engine):
    empty_schedule(migrated_engine)
    load_schedule(migrated_engine, SCHEDULE_FILE, today=MONDAY)
    barrier = threading.Barrier(2)
    errors = []

    def generate():
        barrier.wait()
        try:
            generate_slots(migrated_engine, TIMEZONE, MONDAY, DAYS, now=BEFORE)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=generate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert generate_slots(migrated_engine, TIMEZONE, MONDAY, DAYS, now=BEFORE) == 0


def test_demo_patients_and_their_appointments_once(schedule_engine):
    generate_slots(schedule_engine, TIMEZONE, MONDAY, 28, now=BEFORE)  # one appointment is 20 days ahead
    counts = seed_demo_patients(schedule_engine, DEMO, SECRET, timezone=TIMEZONE, today=MONDAY)
    assert counts == {"patients": 4, "appointments": 4}
    assert seed_demo_patients(schedule_engine, DEMO, SECRET, timezone=TIMEZONE, today=MONDAY) == {
        "patients": 0,
        "appointments": 0,
    }
    scheduler = SqlScheduler(schedule_engine, timezone=TIMEZONE, secret=SECRET)
    chloe = scheduler.match_patient("chloe martin", date(1992, 9, 30))
    upcoming = scheduler.appointments_for(chloe.id, now=BEFORE)
    assert [a.visit_type for a in upcoming] == ["new_patient", "follow_up"]
    wanted = datetime.combine(MONDAY + timedelta(days=6), datetime.min.time(), TZ) + timedelta(hours=14)
    assert wanted <= upcoming[0].start < wanted + timedelta(days=2)  # that Sunday at 14:00, or the next free slot
    with schedule_engine.begin() as conn:  # another CONVERSATION_SECRET: the phone keys follow it
        conn.execute(patients.update().values(phone_key="stale"))
    seed_demo_patients(schedule_engine, DEMO, "z" * 48, timezone=TIMEZONE, today=MONDAY)
    with schedule_engine.connect() as conn:
        assert "stale" not in {r.phone_key for r in conn.execute(select(patients.c.phone_key))}


def test_ensure_schedule_is_quick_when_nothing_changed(migrated_engine, monkeypatch):
    empty_schedule(migrated_engine)
    monkeypatch.setenv("CONVERSATION_SECRET", SECRET)
    settings = SchedulingSettings(schedule_file=str(SCHEDULE_FILE), schedule_days_ahead=28)
    first = ensure_schedule(migrated_engine, settings, TIMEZONE, today=MONDAY)
    assert first["slots"]["created"] > 1000 and first["demo"]["patients"] == 4
    began = time.perf_counter()
    again = ensure_schedule(migrated_engine, settings, TIMEZONE, today=MONDAY)
    seconds = time.perf_counter() - began
    print(f"ensure_schedule unchanged on {migrated_engine.dialect.name}: {seconds:.3f} s")
    assert again["slots"]["created"] == 0 and again["demo"] == {"patients": 0, "appointments": 0}
    assert seconds < 0.5


def test_ensure_schedule_adds_no_demo_patients_in_production(migrated_engine, monkeypatch):
    empty_schedule(migrated_engine)
    monkeypatch.setenv("CARELINE_ENV", "production")
    monkeypatch.setenv("CARELINE_ROOT", str(ROOT))
    result = ensure_schedule(migrated_engine, SchedulingSettings(schedule_days_ahead=7), TIMEZONE, today=MONDAY)
    assert "demo" not in result and count(migrated_engine, patients) == 0
    assert result["slots"]["created"] > 100


def test_expired_holds_are_forgotten(schedule_engine, scheduler):
    """A hold names a conversation by its pseudonym: not kept once it has run out."""
    old, current = on_day(scheduler, WEDNESDAY)[:2]
    scheduler.hold(old.id, "conv-old", seconds=60, now=BEFORE - timedelta(hours=1))
    scheduler.hold(current.id, "conv-now", seconds=600, now=BEFORE)
    sync_slots(schedule_engine, TIMEZONE, MONDAY, DAYS, now=BEFORE)
    with schedule_engine.connect() as conn:
        tokens = {r.id: r.hold_token for r in conn.execute(select(sched_slots.c.id, sched_slots.c.hold_token))}
    assert tokens[int(old.id)] is None and tokens[int(current.id)] == "conv-now"
