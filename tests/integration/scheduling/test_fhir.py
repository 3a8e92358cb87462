"""The FHIR backend (careline/scheduling/fhir.py) against the FHIR R4 stand-in
(careline/standins/fhir_api.py): fhirpy's real requests over HTTP, the server's real ETag /
If-Match compare-and-set and its 409 on a second active appointment for a slot."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, date, datetime, timedelta
from urllib.parse import unquote_plus
from zoneinfo import ZoneInfo

import pytest

from careline.scheduling import fhir as fhir_backend
from careline.scheduling import make_scheduler
from careline.scheduling.fhir import BOOKED_BY_URL, REPLACES_URL, FhirScheduler
from careline.scheduling.model import (
    AppointmentStatus,
    BackendUnavailable,
    NotAllowed,
    NotFound,
    SlotQuery,
    SlotStatus,
    SlotTaken,
)
from careline.settings import SchedulingSettings
from careline.standins.fhir_api import FhirStandIn, default_seed, slot_resource

TZ = ZoneInfo("America/New_York")
NOW = datetime.now(UTC)
TODAY = NOW.astimezone(TZ).date()
MONDAY = TODAY + timedelta(days=7 - TODAY.weekday())  # next week's: every seeded slot is ahead
DOB = date(1980, 5, 2)


def _local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ).astimezone(UTC)


def _week() -> SlotQuery:
    return SlotQuery(start=NOW, end=_local(MONDAY + timedelta(days=7), 0), limit=500)


@pytest.fixture
def fhir():
    with FhirStandIn(seed=default_seed(MONDAY, days=5)) as standin:
        yield standin


@pytest.fixture
def scheduler(fhir) -> FhirScheduler:
    return FhirScheduler(fhir.base_url, timeout=2.0)


@pytest.fixture
def patient(scheduler):
    return scheduler.create_patient("José O'Neil-Smith", DOB, "(555) 201-0101")


def _slot(scheduler: FhirScheduler, **query):
    return scheduler.find_slots(SlotQuery(start=NOW, end=_local(MONDAY + timedelta(days=7), 0), **query))[0]


# --- the clinic and its slots ---------------------------------------------------------------------


def test_clinic_locations_providers_and_visit_types(scheduler):
    assert [loc.id for loc in scheduler.locations()] == ["main"]
    providers = {p.id: p for p in scheduler.providers()}
    assert providers["dr-patel"].name == "Dr. Maya Patel"
    assert providers["dr-patel"].role == "Family physician"
    assert providers["np-rivera"].location_ids == ("main",)
    types = {v.id: v for v in scheduler.visit_types()}  # from knowledge/clinic/schedule.yml
    assert types["procedure"].bookable_by == ("staff",)
    assert types["follow_up"].new_patients is False


def test_find_slots_pages_through_every_free_slot_earliest_first(fhir, scheduler):
    slots = scheduler.find_slots(_week())
    assert len(slots) == 2 * 5 * 14  # two practitioners, five days, 14 half-hour slots a day
    assert [s.start for s in slots] == sorted(s.start for s in slots)
    assert all(s.status == SlotStatus.FREE and s.location_name == "Maplewood Family Clinic" for s in slots)
    assert sum(1 for method, path in fhir.requests if method == "GET" and path == "/Slot") == 2  # 100 a page


def test_find_slots_filters_in_the_clinic_time_zone(scheduler):
    week = _week()
    new = scheduler.find_slots(SlotQuery(week.start, week.end, visit_type="new_patient"))
    assert new and {s.provider_id for s in new} == {"dr-patel"}  # the NP does not see new patients
    rivera = scheduler.find_slots(SlotQuery(week.start, week.end, provider_id="np-rivera", limit=500))
    assert len(rivera) == 70 and {s.provider_name for s in rivera} == {"Sam Rivera, NP"}
    wednesday_afternoons = SlotQuery(
        week.start, week.end, weekdays=frozenset({2}), parts_of_day=frozenset({"afternoon"}), limit=500
    )
    wed_pm = scheduler.find_slots(wednesday_afternoons)
    assert len(wed_pm) == 2 * 8
    assert all(s.start.astimezone(TZ).weekday() == 2 and 13 <= s.start.astimezone(TZ).hour < 17 for s in wed_pm)
    assert scheduler.find_slots(SlotQuery(week.start, week.end, parts_of_day=frozenset({"evening"}))) == []
    assert len(scheduler.find_slots(SlotQuery(week.start, week.end, limit=3))) == 3
    # `now` past the first day: its slots are no longer offered
    later = scheduler.find_slots(SlotQuery(week.start, week.end, limit=500), now=_local(MONDAY + timedelta(days=1), 0))
    assert len(later) == 2 * 4 * 14


# --- holds -----------------------------------------------------------------------------------------


def test_hold_blocks_others_until_it_expires_or_is_released(fhir, scheduler):
    slot = _slot(scheduler)
    until = scheduler.hold(slot.id, "conv-a", seconds=300, now=NOW)
    assert until == NOW + timedelta(seconds=300)
    stored = fhir.read("Slot", slot.id)
    assert stored["status"] == "busy-tentative" and stored["meta"]["versionId"] == "2"
    assert slot.id not in {s.id for s in scheduler.find_slots(_week())}
    with pytest.raises(SlotTaken):
        scheduler.hold(slot.id, "conv-b", now=NOW)
    assert scheduler.hold(slot.id, "conv-a", seconds=600, now=NOW) == NOW + timedelta(seconds=600)  # extends
    scheduler.release(slot.id, "conv-b")  # not its hold: nothing changes
    assert fhir.read("Slot", slot.id)["status"] == "busy-tentative"
    # once expired, the slot is offered again and another conversation may hold it
    later = NOW + timedelta(seconds=601)
    assert slot.id in {s.id for s in scheduler.find_slots(_week(), now=later)}
    scheduler.hold(slot.id, "conv-b", now=later)
    scheduler.release(slot.id, "conv-b")
    assert fhir.read("Slot", slot.id)["status"] == "free"
    assert "extension" not in fhir.read("Slot", slot.id)
    with pytest.raises(NotFound):
        scheduler.hold("no-such-slot", "conv-a")


# --- booking ---------------------------------------------------------------------------------------


def test_book_writes_a_fhir_appointment_and_takes_the_slot(fhir, scheduler, patient):
    slot = _slot(scheduler, visit_type="new_patient")
    scheduler.hold(slot.id, "conv-a")
    with pytest.raises(SlotTaken):  # held by another conversation
        scheduler.book(slot.id, patient.id, "new_patient", holder="conv-b")
    booked = scheduler.book(slot.id, patient.id, "new_patient", reason="a cough", holder="conv-a")
    assert (booked.slot_id, booked.patient_id, booked.start, booked.end) == (slot.id, patient.id, slot.start, slot.end)
    assert (booked.provider_id, booked.provider_name, booked.location_id) == ("dr-patel", "Dr. Maya Patel", "main")
    assert (booked.visit_type, booked.status, booked.reason, booked.booked_by) == (
        "new_patient",
        AppointmentStatus.BOOKED,
        "a cough",
        "patient",
    )
    resource = fhir.read("Appointment", booked.id)
    assert resource["slot"] == [{"reference": f"Slot/{slot.id}"}]
    assert resource["reasonCode"] == [{"text": "a cough"}]
    assert {p["actor"]["reference"] for p in resource["participant"]} == {
        f"Patient/{patient.id}",
        "Practitioner/dr-patel",
        "Location/main",
    }
    assert fhir.read("Slot", slot.id)["status"] == "busy"
    assert scheduler.appointment(booked.id) == booked
    assert scheduler.appointments_for(patient.id, now=NOW) == [booked]
    with pytest.raises(SlotTaken):
        scheduler.book(slot.id, patient.id, "new_patient")


def test_book_refuses_what_the_slot_or_the_booker_may_not_have(fhir, scheduler, patient):
    rivera = _slot(scheduler, provider_id="np-rivera")
    with pytest.raises(NotAllowed):
        scheduler.book(rivera.id, patient.id, "new_patient")  # not offered in this slot
    start = _local(MONDAY, 18)
    fhir.add(slot_resource("dr-patel-main", start, start + timedelta(minutes=40), ["procedure"]))
    procedure = scheduler.find_slots(SlotQuery(NOW, start + timedelta(hours=1), visit_type="procedure"))[0]
    with pytest.raises(NotAllowed):
        scheduler.book(procedure.id, patient.id, "procedure")  # staff only
    booked = scheduler.book(procedure.id, patient.id, "procedure", booked_by="staff:42")
    assert booked.booked_by == "staff:42"
    assert fhir.read("Appointment", booked.id)["extension"] == [{"url": BOOKED_BY_URL, "valueString": "staff:42"}]
    with pytest.raises(NotFound):
        scheduler.book(rivera.id, "no-such-patient", "follow_up")
    assert fhir.read("Slot", rivera.id)["status"] == "free"


def test_ten_bookings_of_one_slot_exactly_one_wins(fhir, scheduler):
    slot = _slot(scheduler)
    patients = [scheduler.create_patient(f"Patient Number{i}", DOB, None) for i in range(10)]
    barrier = threading.Barrier(10)
    won, lost, errors = [], [], []

    def book(patient_id: str) -> None:
        barrier.wait()
        try:
            won.append(scheduler.book(slot.id, patient_id, "follow_up"))
        except SlotTaken:
            lost.append(patient_id)
        except Exception as exc:  # noqa: BLE001 - any other outcome fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=book, args=(p.id,)) for p in patients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == [] and len(won) == 1 and len(lost) == 9
    assert [a["id"] for a in fhir.resources("Appointment")] == [won[0].id]
    assert fhir.read("Slot", slot.id)["status"] == "busy"


def test_a_409_from_the_server_is_slot_taken_and_the_slot_is_put_back(fhir, scheduler, patient):
    slot = _slot(scheduler)
    other = scheduler.create_patient("Ana Booked-Elsewhere", DOB, None)
    # The clinic's front desk booked it in the EHR without marking the slot busy.
    fhir.add(
        {
            "resourceType": "Appointment",
            "status": "booked",
            "slot": [{"reference": f"Slot/{slot.id}"}],
            "participant": [{"actor": {"reference": f"Patient/{other.id}"}, "status": "accepted"}],
            "start": slot.start.isoformat(),
            "end": slot.end.isoformat(),
        }
    )
    with pytest.raises(SlotTaken):
        scheduler.book(slot.id, patient.id, "follow_up")
    assert fhir.read("Slot", slot.id)["status"] == "free"  # the compare-and-set was undone
    assert len(fhir.resources("Appointment")) == 1
    assert scheduler.appointments_for(patient.id, now=NOW) == []


# --- changing an appointment ------------------------------------------------------------------------


def test_cancel_frees_the_slot_once(fhir, scheduler, patient):
    slot = _slot(scheduler)
    booked = scheduler.book(slot.id, patient.id, "follow_up")
    cancelled = scheduler.cancel(booked.id, reason="feeling better")
    assert cancelled.status == AppointmentStatus.CANCELLED
    assert fhir.read("Appointment", booked.id)["cancelationReason"] == {"text": "feeling better"}
    assert fhir.read("Slot", slot.id)["status"] == "free"
    with pytest.raises(NotAllowed):
        scheduler.cancel(booked.id)
    with pytest.raises(NotFound):
        scheduler.cancel("no-such-appointment")
    assert scheduler.appointments_for(patient.id, now=NOW) == []
    assert scheduler.appointments_for(patient.id, upcoming=False, now=NOW) == [cancelled]
    assert scheduler.appointment("no-such-appointment") is None


def test_reschedule_books_the_new_slot_then_cancels_the_old(fhir, scheduler, patient):
    first, second, third = scheduler.find_slots(SlotQuery(NOW, _week().end, provider_id="dr-patel", limit=3))
    old = scheduler.book(first.id, patient.id, "follow_up", reason="knee")
    new = scheduler.reschedule(old.id, second.id, by="staff:7")
    assert (new.slot_id, new.replaces_id, new.reason, new.status) == (
        second.id,
        old.id,
        "knee",
        AppointmentStatus.BOOKED,
    )
    assert {"url": REPLACES_URL, "valueReference": {"reference": f"Appointment/{old.id}"}} in fhir.read(
        "Appointment", new.id
    )["extension"]
    moved = scheduler.appointment(old.id)
    assert (moved.status, moved.replaced_by_id) == (AppointmentStatus.CANCELLED, new.id)
    assert fhir.read("Slot", first.id)["status"] == "free" and fhir.read("Slot", second.id)["status"] == "busy"
    # the new slot is gone: SlotTaken, and the appointment stays where it was
    other = scheduler.create_patient("Sam Other", DOB, None)
    scheduler.book(third.id, other.id, "follow_up")
    with pytest.raises(SlotTaken):
        scheduler.reschedule(new.id, third.id)
    assert scheduler.appointment(new.id).status == AppointmentStatus.BOOKED
    with pytest.raises(NotAllowed):
        scheduler.reschedule(old.id, first.id)  # cancelled already


def test_confirm_and_set_status(fhir, scheduler, patient):
    slot = _slot(scheduler)
    booked = scheduler.book(slot.id, patient.id, "follow_up")
    assert scheduler.confirm(booked.id).confirmed is True
    assert scheduler.set_status(booked.id, AppointmentStatus.ARRIVED).status == AppointmentStatus.ARRIVED
    assert scheduler.set_status(booked.id, AppointmentStatus.FULFILLED).status == AppointmentStatus.FULFILLED
    with pytest.raises(NotAllowed):
        scheduler.set_status(booked.id, AppointmentStatus.BOOKED)  # would need the slot again
    with pytest.raises(NotAllowed):
        scheduler.confirm(booked.id)
    again = scheduler.book(_slot(scheduler).id, patient.id, "follow_up")
    assert scheduler.set_status(again.id, "entered-in-error").status == AppointmentStatus.ENTERED_IN_ERROR
    assert fhir.read("Slot", again.slot_id)["status"] == "free"
    with pytest.raises(NotAllowed):
        scheduler.set_status(again.id, AppointmentStatus.NOSHOW)


def test_appointments_between_by_provider(scheduler, patient):
    patel = _slot(scheduler, provider_id="dr-patel")
    rivera = _slot(scheduler, provider_id="np-rivera")
    a = scheduler.book(patel.id, patient.id, "follow_up")
    b = scheduler.book(rivera.id, patient.id, "follow_up")
    scheduler.cancel(b.id)
    day = (_local(MONDAY, 0), _local(MONDAY + timedelta(days=1), 0))
    assert [x.id for x in scheduler.appointments_between(*day)] == [
        x.id for x in sorted([a, b], key=lambda x: (x.start, x.id))
    ]
    assert [x.id for x in scheduler.appointments_between(*day, provider_id="dr-patel")] == [a.id]
    assert scheduler.appointments_between(day[1], day[1] + timedelta(days=1)) == []


# --- patients ---------------------------------------------------------------------------------------


def test_patients_create_read_match_and_search(fhir, scheduler, patient):
    assert (patient.name, patient.birth_date, patient.phone) == ("José O'Neil-Smith", DOB, "+15552010101")
    stored = fhir.read("Patient", patient.id)
    assert stored["telecom"] == [{"system": "phone", "value": "+15552010101", "use": "mobile"}]
    assert stored["name"][0]["family"] == "O'Neil-Smith"
    assert scheduler.patient(patient.id) == patient
    assert scheduler.patient("no-such-patient") is None
    assert scheduler.match_patient("  jose  oneil smith ", DOB) == patient
    assert scheduler.match_patient("José O'Neil-Smith", DOB + timedelta(days=1)) is None
    assert scheduler.match_patient("Josie O'Neil-Smith", DOB) is None
    assert [p.id for p in scheduler.find_patients("o'neil")] == [patient.id]
    assert [p.id for p in scheduler.find_patients("JOSÉ")] == [patient.id]
    assert scheduler.find_patients("nobody") == []
    twin = scheduler.create_patient("Jose ONeil Smith", DOB, None)  # same name key, same day
    assert twin.phone is None
    assert scheduler.match_patient("José O'Neil-Smith", DOB) is None  # two: nobody is guessed


def test_names_and_dates_of_birth_travel_in_a_post_body_never_a_url(fhir, scheduler, patient, monkeypatch):
    """Proxies and the server's access log keep URLs: patient searches go as POST [type]/_search."""
    for i in range(5):  # more patients born that day than one page holds
        scheduler.create_patient(f"Other Person{i}", DOB, None)
    monkeypatch.setattr(fhir_backend, "PAGE", 2)
    fhir.targets.clear()
    assert scheduler.match_patient("José O'Neil-Smith", DOB) == patient
    assert [p.id for p in scheduler.find_patients("o'neil")] == [patient.id]
    assert [p.id for p in scheduler.find_patients("person")] and scheduler.find_patients("nobody") == []
    assert ("POST", "/Patient/_search") in fhir.requests
    assert any("_getpages=" in t for t in fhir.targets), "the next pages were followed"
    for target in fhir.targets:
        lowered = unquote_plus(target).lower()
        assert DOB.isoformat() not in lowered and "neil" not in lowered and "person" not in lowered, target


def test_next_links_are_followed_only_on_the_same_server():
    on = fhir_backend._on_server
    base = "https://ehr.example.org/fhir"
    assert on("https://ehr.example.org/fhir?_getpages=abc&_offset=100", base)  # HAPI's shape
    assert on("https://EHR.example.org/fhir/Patient?_offset=100", base)
    assert not on("https://ehr.example.org/fhirx/Patient", base)
    assert not on("http://ehr.example.org/fhir/Patient", base)  # the token never over plain http
    assert not on("https://elsewhere.example/fhir/Patient", base)


def test_a_server_that_refuses_post_search_is_searched_by_get(fhir, scheduler, patient, caplog):
    fhir.post_search = False
    assert scheduler.match_patient("José O'Neil-Smith", DOB) == patient
    assert [p.id for p in scheduler.find_patients("o'neil")] == [patient.id]
    assert ("GET", "/Patient") in fhir.requests
    assert fhir.requests.count(("POST", "/Patient/_search")) == 1  # remembered: not asked again
    assert "refuses POST search" in caplog.text and DOB.isoformat() not in caplog.text


def test_the_stand_in_pages_a_post_search_by_token_and_refuses_a_json_body(fhir):
    import requests

    url = f"{fhir.base_url}/Slot/_search"
    first = requests.post(url, data={"status": "free", "_count": "3"}, timeout=5).json()
    assert first["resourceType"] == "Bundle" and len(first["entry"]) == 3
    following = next(lk["url"] for lk in first["link"] if lk["relation"] == "next")
    assert "status" not in following and "_getpages=" in following
    second = requests.get(following, timeout=5).json()
    assert {e["resource"]["id"] for e in second["entry"]}.isdisjoint(e["resource"]["id"] for e in first["entry"])
    assert requests.post(url, json={"status": "free"}, timeout=5).status_code == 415
    assert requests.get(f"{fhir.base_url}/Slot?_getpages=unknown", timeout=5).status_code == 404


# --- failures ---------------------------------------------------------------------------------------


def test_the_server_down_or_failing_is_backend_unavailable(fhir, scheduler, patient):
    slot = _slot(scheduler)
    fhir.fail_next(1, status=503)
    assert scheduler.appointment("no-such-appointment") is None  # a read is tried again once
    fhir.fail_next(2, status=500)
    with pytest.raises(BackendUnavailable):
        scheduler.patient(patient.id)
    fhir.fail_next(1, status=429)
    with pytest.raises(BackendUnavailable):
        scheduler.create_patient("Some One", DOB, None)
    fhir.latency = 0.3
    slow = FhirScheduler(fhir.base_url, timeout=0.1)
    with pytest.raises(BackendUnavailable):
        slow.patient(patient.id)
    fhir.latency = 0
    fhir.stop()
    for call in (
        lambda: scheduler.find_slots(_week()),
        lambda: scheduler.book(slot.id, patient.id, "follow_up"),
        lambda: scheduler.appointment("x"),
        lambda: scheduler.match_patient("José O'Neil-Smith", DOB),
        lambda: FhirScheduler(f"http://127.0.0.1:{_free_port()}").providers(),
    ):
        with pytest.raises(BackendUnavailable):
            call()


def _free_port() -> int:
    from careline.supervisor import free_port

    return free_port()


def test_make_scheduler_builds_the_fhir_backend_with_its_token(monkeypatch):
    with FhirStandIn(seed=default_seed(MONDAY, days=1), token="t0ken-for-the-fhir-server") as fhir:
        monkeypatch.setenv("SCHEDULING_BACKEND", "fhir")
        monkeypatch.setenv("FHIR_BASE_URL", fhir.base_url)
        monkeypatch.setenv("FHIR_AUTH_TOKEN", "t0ken-for-the-fhir-server")
        monkeypatch.setenv("FHIR_TIMEOUT_SECONDS", "3")
        scheduler = make_scheduler(SchedulingSettings(_env_file=None))
        assert isinstance(scheduler, FhirScheduler)
        assert len(scheduler.find_slots(_week())) == 2 * 14
        monkeypatch.setenv("FHIR_AUTH_TOKEN", "a-wrong-token")
        with pytest.raises(BackendUnavailable):  # 401: fail closed
            make_scheduler(SchedulingSettings(_env_file=None)).providers()
    monkeypatch.delenv("FHIR_BASE_URL")
    with pytest.raises(ValueError, match="FHIR_BASE_URL"):
        make_scheduler(SchedulingSettings(_env_file=None))


def test_no_patient_data_in_logs(caplog, fhir, scheduler):
    caplog.set_level(logging.DEBUG, logger="careline")
    caplog.set_level(logging.INFO)
    person = scheduler.create_patient("Zelda Quimby", date(1971, 3, 9), "+15559870123")
    slot = _slot(scheduler)
    booked = scheduler.book(slot.id, person.id, "follow_up", reason="rash on my arm")
    scheduler.match_patient("Zelda Quimby", date(1971, 3, 9))
    scheduler.cancel(booked.id, reason="rash is gone")
    fhir.stop()
    with pytest.raises(BackendUnavailable):
        scheduler.match_patient("Zelda Quimby", date(1971, 3, 9))
    text = caplog.text.lower()
    assert booked.id in caplog.text  # ids are logged
    for phi in ("zelda", "quimby", "1971", "9870123", "rash"):
        assert phi not in text
