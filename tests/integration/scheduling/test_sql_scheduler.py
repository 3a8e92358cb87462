"""Every method of the built-in SQL schedule, on SQLite and PostgreSQL, over the sample schedule
(knowledge/clinic/schedule.yml) with 14 days of slots from MONDAY (conftest.py)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, select

from careline.scheduling import identity
from careline.scheduling.model import (
    AppointmentStatus,
    BackendUnavailable,
    NotAllowed,
    NotFound,
    SlotQuery,
    SlotStatus,
    SlotTaken,
)
from careline.scheduling.schema import patients, sched_slots
from careline.scheduling.sql import SqlScheduler, count_double_booked
from tests.integration.scheduling.conftest import BEFORE, DAYS, MONDAY, SECRET, TIMEZONE

TZ = ZoneInfo(TIMEZONE)
BORN = date(1980, 5, 17)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """December `day`, 2026, at hour:minute in the clinic's time zone."""
    return datetime(2026, 12, day, hour, minute, tzinfo=TZ)


def window(**kw) -> SlotQuery:
    start = datetime.combine(MONDAY, datetime.min.time(), TZ)
    return SlotQuery(start=start, end=start + timedelta(days=DAYS), limit=kw.pop("limit", 2000), **kw)


def first(scheduler, **kw):
    return scheduler.find_slots(window(limit=1, **kw), now=BEFORE)[0]


@pytest.fixture
def patient(scheduler):
    return scheduler.create_patient("Test Patient", BORN, "+15555550181")


@pytest.fixture
def other(scheduler):
    return scheduler.create_patient("Other Patient", BORN, None)


# --- the clinic ----------------------------------------------------------------------------------
def test_the_clinic_is_the_schedule_files(scheduler):
    assert [(loc.id, loc.name) for loc in scheduler.locations()] == [
        ("east", "Maplewood East"),
        ("main", "Maplewood Main"),
    ]
    providers = {p.id: p for p in scheduler.providers()}
    assert set(providers) == {"patel", "okafor", "reyes", "brooks"}
    assert providers["patel"].name == "Dr. Maya Patel" and providers["patel"].location_ids == ("main",)
    assert providers["brooks"].location_ids == ("east", "main")
    kinds = {v.id: v for v in scheduler.visit_types()}
    assert (kinds["new_patient"].minutes, kinds["follow_up"].minutes) == (40, 20)
    assert kinds["procedure"].bookable_by == ("staff",)
    assert not kinds["follow_up"].new_patients and kinds["telehealth"].telehealth


# --- finding slots --------------------------------------------------------------------------------
def _local(slot):
    return slot.start.astimezone(TZ)


@pytest.mark.parametrize(
    "query, check",
    [
        (
            {"visit_type": "new_patient"},
            lambda s: "new_patient" in s.visit_types and s.end - s.start == timedelta(minutes=40),
        ),
        ({"visit_type": "same_day_sick"}, lambda s: "same_day_sick" in s.visit_types),
        ({"provider_id": "patel"}, lambda s: s.provider_id == "patel" and s.provider_name == "Dr. Maya Patel"),
        ({"location_id": "east"}, lambda s: s.location_id == "east" and s.location_name == "Maplewood East"),
        ({"weekdays": frozenset({5})}, lambda s: _local(s).weekday() == 5 and s.provider_id == "reyes"),
        ({"weekdays": frozenset({1, 3})}, lambda s: _local(s).weekday() in (1, 3)),
        ({"parts_of_day": frozenset({"morning"})}, lambda s: _local(s).hour < 12),
        ({"parts_of_day": frozenset({"afternoon"})}, lambda s: 12 <= _local(s).hour < 17),
        ({"parts_of_day": frozenset({"evening"})}, lambda s: _local(s).hour >= 17),
        ({"parts_of_day": frozenset({"morning", "evening"})}, lambda s: not 12 <= _local(s).hour < 17),
        (
            {"visit_type": "telehealth", "provider_id": "brooks", "location_id": "main"},
            lambda s: _local(s).weekday() == 2,
        ),
    ],
)
def test_find_slots_honours_every_filter(scheduler, query, check):
    slots = scheduler.find_slots(window(**query), now=BEFORE)
    assert slots, query
    assert all(check(s) and s.status == SlotStatus.FREE for s in slots), query
    assert [s.start for s in slots] == sorted(s.start for s in slots)


def test_the_schedule_files_exceptions_and_holidays_are_in_the_slots(scheduler):
    slots = scheduler.find_slots(window(), now=BEFORE)
    days = {(s.provider_id, _local(s).date()) for s in slots}
    assert ("patel", date(2026, 12, 18)) not in days  # day off
    assert ("patel", date(2026, 12, 17)) in days
    assert not any(_local(s).date() == date(2026, 12, 25) for s in slots)  # Christmas Day
    eve = [s for s in slots if _local(s).date() == date(2026, 12, 24)]
    assert eve and all(_local(s).hour < 13 and s.end.astimezone(TZ).hour <= 13 for s in eve)  # closes at 1 p.m.
    evening = {(s.provider_id, _local(s).weekday(), _local(s).date()) for s in slots if _local(s).hour >= 17}
    assert {(p, w) for p, w, _ in evening} == {("okafor", 3), ("reyes", 1)}
    assert {d for p, _, d in evening if p == "reyes"} == {date(2026, 12, 22)}  # extra hours that day only


def test_find_slots_starts_after_now_and_stops_at_the_limit(scheduler):
    now = local(15, 10).astimezone(UTC)
    slots = scheduler.find_slots(window(limit=5), now=now)
    assert len(slots) == 5 and all(s.start >= now for s in slots)
    assert scheduler.find_slots(window(provider_id="nobody"), now=BEFORE) == []


def test_find_slots_leaves_out_booked_and_held_slots_but_not_expired_holds(scheduler, patient):
    a, b, c = scheduler.find_slots(window(provider_id="patel", limit=3), now=BEFORE)
    scheduler.book(a.id, patient.id, "follow_up", now=BEFORE)
    scheduler.hold(b.id, "conv-1", seconds=300, now=BEFORE)
    scheduler.hold(c.id, "conv-2", seconds=60, now=BEFORE - timedelta(hours=1))  # long expired
    ids = {s.id for s in scheduler.find_slots(window(provider_id="patel", limit=5), now=BEFORE)}
    assert a.id not in ids and b.id not in ids and c.id in ids
    assert scheduler.slot(b.id, now=BEFORE).status == SlotStatus.BUSY_TENTATIVE
    assert scheduler.slot(a.id, now=BEFORE).status == SlotStatus.BUSY
    assert scheduler.slot(c.id, now=BEFORE).status == SlotStatus.FREE
    assert scheduler.slot("999999") is None


# --- hold, release, book --------------------------------------------------------------------------
def test_a_hold_keeps_others_out_until_it_expires(scheduler):
    slot = first(scheduler)
    until = scheduler.hold(slot.id, "conv-1", seconds=300, now=BEFORE)
    assert until == BEFORE + timedelta(seconds=300)
    with pytest.raises(SlotTaken):
        scheduler.hold(slot.id, "conv-2", now=BEFORE + timedelta(seconds=10))
    assert scheduler.hold(slot.id, "conv-1", seconds=300, now=BEFORE + timedelta(seconds=60)) > until  # extends
    later = BEFORE + timedelta(seconds=400)
    assert scheduler.hold(slot.id, "conv-2", now=later) == later + timedelta(seconds=300)  # the first ran out
    with pytest.raises(NotFound):
        scheduler.hold("999999", "conv-1")
    with pytest.raises(NotFound):
        scheduler.hold("not-an-id", "conv-1")


def test_release_drops_only_the_holders_hold(scheduler):
    slot = first(scheduler)
    scheduler.hold(slot.id, "conv-1", now=BEFORE)
    scheduler.release(slot.id, "conv-2")
    with pytest.raises(SlotTaken):
        scheduler.hold(slot.id, "conv-2", now=BEFORE)
    scheduler.release(slot.id, "conv-1")
    scheduler.hold(slot.id, "conv-2", now=BEFORE)


def test_booking_fills_in_the_appointment(scheduler, patient):
    slot = first(scheduler, provider_id="okafor", visit_type="new_patient")
    scheduler.hold(slot.id, "conv-1", now=BEFORE)
    booked = scheduler.book(slot.id, patient.id, "new_patient", reason="knee pain", holder="conv-1", now=BEFORE)
    assert (booked.slot_id, booked.patient_id, booked.start, booked.end) == (slot.id, patient.id, slot.start, slot.end)
    assert (booked.provider_id, booked.provider_name, booked.location_id, booked.location_name) == (
        "okafor",
        "Dr. James Okafor",
        "east",
        "Maplewood East",
    )
    assert (booked.status, booked.reason, booked.booked_by, booked.confirmed) == (
        "booked",
        "knee pain",
        "patient",
        False,
    )
    assert booked.created_at is not None and booked.start.tzinfo == UTC
    assert scheduler.appointment(booked.id) == booked


@pytest.mark.parametrize(
    "setup, visit_type, booked_by, error",
    [
        ("held_by_other", "follow_up", "patient", SlotTaken),
        ("booked", "follow_up", "patient", SlotTaken),
        ("none", "new_patient", "patient", NotAllowed),  # a 20-minute slot has no new-patient visits
        ("none", "procedure", "patient", NotAllowed),  # wrong slot, and staff only
        ("none", "no_such_type", "patient", NotFound),
        ("unknown_patient", "follow_up", "patient", NotFound),
    ],
)
def test_booking_is_refused(scheduler, patient, other, setup, visit_type, booked_by, error):
    slot = first(scheduler, provider_id="patel", visit_type="follow_up", parts_of_day=frozenset({"morning"}))
    who = patient.id
    if setup == "held_by_other":
        scheduler.hold(slot.id, "conv-other", now=BEFORE)
    elif setup == "booked":
        scheduler.book(slot.id, other.id, "follow_up", now=BEFORE)
    elif setup == "unknown_patient":
        who = "999999"
    with pytest.raises(error):
        scheduler.book(slot.id, who, visit_type, holder="conv-1", booked_by=booked_by, now=BEFORE)
    assert count_double_booked(scheduler.bind) == 0
    if setup == "none":
        assert scheduler.slot(slot.id, now=BEFORE).status == SlotStatus.FREE  # the refusal left it free


def test_staff_only_visit_types_are_for_staff(scheduler, patient):
    slot = first(scheduler, visit_type="procedure")
    with pytest.raises(NotAllowed):
        scheduler.book(slot.id, patient.id, "procedure", now=BEFORE)
    booked = scheduler.book(slot.id, patient.id, "procedure", booked_by="staff:7", now=BEFORE)
    assert booked.booked_by == "staff:7"


# --- cancel, reschedule, status, confirm -----------------------------------------------------------
def test_cancelling_frees_the_slot_for_someone_else(scheduler, patient, other):
    slot = first(scheduler)
    booked = scheduler.book(slot.id, patient.id, "follow_up", now=BEFORE)
    cancelled = scheduler.cancel(booked.id, reason="feeling better")
    assert cancelled.status == AppointmentStatus.CANCELLED
    assert scheduler.slot(slot.id, now=BEFORE).status == SlotStatus.FREE
    assert slot.id in {s.id for s in scheduler.find_slots(window(limit=3), now=BEFORE)}
    again = scheduler.book(slot.id, other.id, "follow_up", now=BEFORE)
    assert again.status == AppointmentStatus.BOOKED
    with pytest.raises(NotAllowed):
        scheduler.cancel(booked.id)
    with pytest.raises(NotFound):
        scheduler.cancel("999999")
    assert count_double_booked(scheduler.bind) == 0


def test_reschedule_books_the_new_slot_then_cancels_the_old(scheduler, patient):
    old_slot, new_slot = scheduler.find_slots(window(provider_id="reyes", limit=2), now=BEFORE)
    old = scheduler.book(old_slot.id, patient.id, "follow_up", reason="rash", now=BEFORE)
    scheduler.hold(new_slot.id, "conv-1")
    moved = scheduler.reschedule(old.id, new_slot.id, holder="conv-1")
    assert (moved.slot_id, moved.replaces_id, moved.status, moved.reason) == (new_slot.id, old.id, "booked", "rash")
    before = scheduler.appointment(old.id)
    assert (before.status, before.replaced_by_id) == (AppointmentStatus.CANCELLED, moved.id)
    assert scheduler.slot(old_slot.id, now=BEFORE).status == SlotStatus.FREE
    assert scheduler.slot(new_slot.id, now=BEFORE).status == SlotStatus.BUSY
    with pytest.raises(NotAllowed):
        scheduler.reschedule(old.id, old_slot.id)


@pytest.mark.parametrize("taken_by", ["booking", "hold"])
def test_reschedule_to_a_taken_slot_leaves_the_old_appointment_alone(scheduler, patient, other, taken_by):
    old_slot, new_slot = scheduler.find_slots(window(provider_id="reyes", limit=2), now=BEFORE)
    old = scheduler.book(old_slot.id, patient.id, "follow_up", now=BEFORE)
    if taken_by == "booking":
        scheduler.book(new_slot.id, other.id, "follow_up", now=BEFORE)
    else:
        scheduler.hold(new_slot.id, "conv-other")  # now: held for the next five minutes
    with pytest.raises(SlotTaken):
        scheduler.reschedule(old.id, new_slot.id, holder="conv-1")
    assert scheduler.appointment(old.id) == old
    assert scheduler.slot(old_slot.id, now=BEFORE).status == SlotStatus.BUSY


@pytest.mark.parametrize(
    "path, slot_after",
    [
        (["arrived"], SlotStatus.BUSY),
        (["arrived", "fulfilled"], SlotStatus.BUSY),
        (["fulfilled"], SlotStatus.BUSY),
        (["noshow"], SlotStatus.BUSY),  # the time is gone: the slot is not offered again
        (["entered-in-error"], SlotStatus.FREE),  # a mistake: the slot is given back
        (["noshow", "entered-in-error"], SlotStatus.FREE),
        (["cancelled"], SlotStatus.FREE),
    ],
)
def test_status_changes_and_what_they_do_to_the_slot(scheduler, patient, path, slot_after):
    slot = first(scheduler)
    appointment = scheduler.book(slot.id, patient.id, "follow_up", now=BEFORE)
    for status in path:
        appointment = scheduler.set_status(appointment.id, AppointmentStatus(status), by="staff:1")
    assert appointment.status == path[-1]
    assert scheduler.slot(slot.id, now=BEFORE).status == slot_after


@pytest.mark.parametrize(
    "path, refused",
    [
        (["fulfilled"], "arrived"),
        (["noshow"], "fulfilled"),
        (["cancelled"], "arrived"),
        (["entered-in-error"], "entered-in-error"),
        ([], "proposed"),
        ([], "booked"),
    ],
)
def test_status_changes_that_are_refused(scheduler, patient, path, refused):
    appointment = scheduler.book(first(scheduler).id, patient.id, "follow_up", now=BEFORE)
    for status in path:
        scheduler.set_status(appointment.id, AppointmentStatus(status))
    with pytest.raises(NotAllowed):
        scheduler.set_status(appointment.id, AppointmentStatus(refused))


def test_an_error_entry_never_frees_a_slot_someone_else_booked_since(scheduler, patient, other):
    slot = first(scheduler)
    mine = scheduler.book(slot.id, patient.id, "follow_up", now=BEFORE)
    scheduler.cancel(mine.id)
    theirs = scheduler.book(slot.id, other.id, "follow_up", now=BEFORE)
    scheduler.set_status(mine.id, AppointmentStatus.ENTERED_IN_ERROR)
    assert scheduler.slot(slot.id, now=BEFORE).status == SlotStatus.BUSY
    assert scheduler.appointment(theirs.id).status == AppointmentStatus.BOOKED


def test_confirm(scheduler, patient):
    appointment = scheduler.book(first(scheduler).id, patient.id, "follow_up", now=BEFORE)
    assert scheduler.confirm(appointment.id).confirmed
    assert scheduler.confirm(appointment.id).confirmed  # again: no change
    scheduler.cancel(appointment.id)
    with pytest.raises(NotAllowed):
        scheduler.confirm(appointment.id)
    with pytest.raises(NotFound):
        scheduler.confirm("999999")


# --- appointments ---------------------------------------------------------------------------------
def test_appointments_for_a_patient_and_between_times(scheduler, patient, other):
    a, b, c = scheduler.find_slots(window(provider_id="patel", limit=3), now=BEFORE)
    late = first(scheduler, provider_id="okafor", weekdays=frozenset({4}))
    first_one = scheduler.book(b.id, patient.id, "follow_up", now=BEFORE)
    second = scheduler.book(late.id, patient.id, "follow_up", now=BEFORE)
    gone = scheduler.book(a.id, patient.id, "follow_up", now=BEFORE)
    scheduler.cancel(gone.id)
    theirs = scheduler.book(c.id, other.id, "follow_up", now=BEFORE)
    assert [x.id for x in scheduler.appointments_for(patient.id, now=BEFORE)] == [first_one.id, second.id]
    assert [x.id for x in scheduler.appointments_for(patient.id, upcoming=False)] == [gone.id, first_one.id, second.id]
    assert [x.id for x in scheduler.appointments_for(patient.id, now=b.start)] == [second.id]  # started already
    assert scheduler.appointments_for("999999") == [] and scheduler.appointments_for("x") == []
    between = scheduler.appointments_between(a.start, c.end)
    assert [x.id for x in between] == [gone.id, first_one.id, theirs.id]  # any status, earliest first
    assert [x.id for x in scheduler.appointments_between(a.start, late.end, "okafor")] == [second.id]
    assert scheduler.appointment("999999") is None and scheduler.appointment("x") is None


# --- patients -------------------------------------------------------------------------------------
def test_create_patient_keeps_the_number_as_e164_and_its_conversation_key(scheduler):
    made = scheduler.create_patient("  José   O'Neil-Smith ", BORN, "(555) 555-0182")
    assert (made.name, made.phone, made.birth_date) == ("José O'Neil-Smith", "+15555550182", BORN)
    with scheduler.bind.connect() as conn:
        row = conn.execute(select(patients).where(patients.c.id == int(made.id))).one()
    assert row.name_key == "jose oneil smith"
    assert row.phone_key == identity.phone_key(SECRET, "+15555550182")
    assert scheduler.patient_by_phone_key(row.phone_key) == [made]
    assert scheduler.patient(made.id) == made and scheduler.patient("999999") is None
    assert scheduler.create_patient("No Phone", BORN, None).phone is None
    with pytest.raises(ValueError):
        scheduler.create_patient("Bad Phone", BORN, "12")


@pytest.mark.parametrize(
    "name, born, found",
    [
        ("José O'Neil-Smith", BORN, True),
        ("jose oneil smith", BORN, True),
        ("JOSE  O NEIL SMITH", BORN, False),  # "o neil" is another name than "oneil"
        ("José O'Neil-Smith", date(1980, 5, 18), False),
        ("José", BORN, False),
        ("", BORN, False),
    ],
)
def test_match_patient(scheduler, name, born, found):
    made = scheduler.create_patient("José O'Neil-Smith", BORN, None)
    assert scheduler.match_patient(name, born) == (made if found else None)


def test_two_patients_with_one_name_and_birth_date_match_neither(scheduler):
    scheduler.create_patient("Sam Lee", BORN, None)
    assert scheduler.match_patient("Sam Lee", BORN) is not None
    scheduler.create_patient("Sam Lee", BORN, "+15555550183")
    assert scheduler.match_patient("Sam Lee", BORN) is None


def test_find_patients_by_part_of_the_name(scheduler):
    for name in ("Chloé Martin", "Martina Ruiz", "Robert Nguyen"):
        scheduler.create_patient(name, BORN, None)
    assert [p.name for p in scheduler.find_patients("MARTIN")] == ["Chloé Martin", "Martina Ruiz"]
    assert [p.name for p in scheduler.find_patients("chloe")] == ["Chloé Martin"]
    assert [p.name for p in scheduler.find_patients("martin", limit=1)] == ["Chloé Martin"]
    assert scheduler.find_patients("  ") == [] and scheduler.find_patients("%") == []


# --- failure and privacy --------------------------------------------------------------------------
def test_an_unreachable_database_is_backend_unavailable(tmp_path):
    engines = [
        create_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}"),
        create_engine("postgresql+psycopg://postgres@127.0.0.1:1/test", connect_args={"connect_timeout": 2}),
    ]
    for engine in engines:
        scheduler = SqlScheduler(engine, timezone=TIMEZONE)
        for call in (
            scheduler.locations,
            lambda s=scheduler: s.find_slots(window()),
            lambda s=scheduler: s.hold("1", "conv-1"),
            lambda s=scheduler: s.book("1", "1", "follow_up"),
            lambda s=scheduler: s.match_patient("A B", BORN),
        ):
            with pytest.raises(BackendUnavailable):
                call()
        engine.dispose()


def test_no_names_birth_dates_phones_or_reasons_in_the_logs(scheduler, caplog):
    caplog.set_level(logging.DEBUG)
    made = scheduler.create_patient("Zebulon Quartermaine", date(1977, 3, 4), "+15555550184")
    slot = first(scheduler)
    scheduler.hold(slot.id, "conv-1", now=BEFORE)
    booked = scheduler.book(slot.id, made.id, "follow_up", reason="a secret reason", holder="conv-1", now=BEFORE)
    scheduler.confirm(booked.id)
    scheduler.cancel(booked.id, reason="another secret")
    scheduler.match_patient("Zebulon Quartermaine", date(1977, 3, 4))
    text = caplog.text.lower()
    assert caplog.records  # it does log, with ids
    for secret in ("zebulon", "quartermaine", "1977", "5555550184", "secret"):
        assert secret not in text


def test_slots_are_stored_in_utc(scheduler):
    with scheduler.bind.connect() as conn:
        count = len(conn.execute(select(sched_slots.c.id)).all())
    assert count > 500
    slot = first(scheduler, provider_id="patel")
    assert slot.start == local(14, 8).astimezone(UTC)  # 08:00 in New York is 13:00 UTC in December
