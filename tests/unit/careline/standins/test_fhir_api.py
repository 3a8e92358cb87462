"""The FHIR stand-in speaks FHIR R4 REST: versioned reads with ETags, If-Match updates (412 on
another version), 201 + Location on create, searchset Bundles with next links, OperationOutcome
errors, and a scheduling server's 409 for a second active Appointment on a slot. Its seed from the
clinic's schedule file leaves holidays and days off without slots."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from careline.standins.fhir_api import FHIR_JSON, FhirStandIn, _holiday_on, default_seed, seed_from_schedule
from tests.helpers import ROOT

MONDAY = date(2026, 12, 14)
TZ = ZoneInfo("America/New_York")
PATIENT = {"resourceType": "Patient", "name": [{"given": ["Ana"], "family": "Núñez"}], "birthDate": "1990-01-31"}


@pytest.fixture
def fhir():
    with FhirStandIn(seed=default_seed(MONDAY, days=2)) as standin:
        with httpx.Client(base_url=standin.base_url, timeout=5, trust_env=False) as http:
            standin.http = http
            yield standin


def _issue(response: httpx.Response) -> str:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert response.headers["content-type"] == FHIR_JSON
    return body["issue"][0]["code"]


def _appointment(slot_id: str, patient_id: str, status: str = "booked") -> dict:
    return {
        "resourceType": "Appointment",
        "status": status,
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "participant": [{"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"}],
    }


def test_create_read_and_compare_and_set(fhir):
    created = fhir.http.post("/Patient", json=PATIENT)
    assert created.status_code == 201 and created.headers["content-type"] == FHIR_JSON
    pid = created.json()["id"]
    assert created.headers["location"] == f"{fhir.base_url}/Patient/{pid}/_history/1"
    read = fhir.http.get(f"/Patient/{pid}")
    assert read.headers["etag"] == 'W/"1"' and read.json()["meta"]["versionId"] == "1"
    body = {**read.json(), "active": True}
    stale = fhir.http.put(f"/Patient/{pid}", json=body, headers={"If-Match": 'W/"7"'})
    assert stale.status_code == 412 and _issue(stale) == "conflict"
    updated = fhir.http.put(f"/Patient/{pid}", json=body, headers={"If-Match": 'W/"1"'})
    assert updated.status_code == 200 and updated.headers["etag"] == 'W/"2"'
    again = fhir.http.put(f"/Patient/{pid}", json=body, headers={"If-Match": 'W/"1"'})
    assert again.status_code == 412  # the second writer with the same version loses
    assert fhir.http.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"2"'}).status_code == 304
    missing = fhir.http.get("/Patient/nobody")
    assert missing.status_code == 404 and _issue(missing) == "not-found"
    assert _issue(fhir.http.put(f"/Patient/{pid}", json={**body, "id": "other"})) == "invalid"
    assert fhir.http.post("/Slot", json={"resourceType": "Slot", "status": "nope"}).status_code == 400


def test_a_second_active_appointment_on_a_slot_is_409(fhir):
    pid = fhir.http.post("/Patient", json=PATIENT).json()["id"]
    slot = fhir.resources("Slot")[0]["id"]
    first = fhir.http.post("/Appointment", json=_appointment(slot, pid))
    assert first.status_code == 201
    conflict = fhir.http.post("/Appointment", json=_appointment(slot, pid, "pending"))
    assert conflict.status_code == 409 and _issue(conflict) == "conflict"
    assert fhir.http.post("/Appointment", json=_appointment(slot, pid, "cancelled")).status_code == 201
    cancelled = {**first.json(), "status": "cancelled"}
    assert fhir.http.put(f"/Appointment/{cancelled['id']}", json=cancelled).status_code == 200
    assert fhir.http.post("/Appointment", json=_appointment(slot, pid)).status_code == 201  # free again
    assert _issue(fhir.http.post("/Appointment", json=_appointment("nope", pid))) == "processing"


def test_search_bundles_filters_and_pages(fhir):
    start = datetime(2026, 12, 14, 13, tzinfo=TZ).isoformat()
    params = {"start": [f"ge{start}", "lt2026-12-15"], "status": "free,busy", "service-type": "new_patient"}
    bundle = fhir.http.get("/Slot", params={**params, "_count": "5", "_sort": "start"}).json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == 8 and len(bundle["entry"]) == 5  # Dr. Patel's afternoon
    following = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    rest = httpx.get(following, timeout=5, trust_env=False).json()
    assert len(rest["entry"]) == 3 and not [x for x in rest["link"] if x["relation"] == "next"]
    starts = [e["resource"]["start"] for e in bundle["entry"] + rest["entry"]]
    assert starts == sorted(starts)
    fhir.http.post("/Patient", json=PATIENT)
    assert fhir.http.get("/Patient", params={"name": "nunez", "birthdate": "1990-01-31"}).json()["total"] == 1
    assert fhir.http.get("/Patient", params={"name:contains": "UÑ"}).json()["total"] == 1
    assert fhir.http.get("/Patient", params={"birthdate": "1990-02-01"}).json()["total"] == 0
    assert _issue(fhir.http.get("/Slot", params={"colour": "red"})) == "not-supported"
    assert fhir.http.get("/metadata").json()["fhirVersion"] == "4.0.1"


def test_token_and_injected_faults():
    with FhirStandIn(seed=[], token="secret-token") as fhir:
        url = f"{fhir.base_url}/Patient"
        denied = httpx.get(url, trust_env=False)
        assert denied.status_code == 401 and _issue(denied) == "login"
        auth = {"Authorization": "Bearer secret-token"}
        fhir.fail_next(1, status=503)
        assert httpx.get(url, headers=auth, trust_env=False).status_code == 503
        assert httpx.get(url, headers=auth, trust_env=False).json()["total"] == 0
    with pytest.raises(RuntimeError):
        _ = fhir.base_url


def test_holiday_rules():
    assert _holiday_on({"rule": "fourth thursday of november"}, date(2026, 11, 26))
    assert not _holiday_on({"rule": "fourth thursday of november"}, date(2026, 11, 19))
    assert _holiday_on({"rule": "fourth thursday of november", "offset_days": 1}, date(2026, 11, 27))
    assert _holiday_on({"rule": "last monday of may"}, date(2026, 5, 25))
    assert _holiday_on({"yearly": "12-25"}, date(2030, 12, 25))
    assert _holiday_on({"date": date(2026, 12, 18)}, date(2026, 12, 18))


def test_seed_from_the_clinic_schedule_file():
    resources = seed_from_schedule(ROOT / "knowledge/clinic/schedule.yml", "America/New_York", MONDAY, 14)
    slots = [r for r in resources if r["resourceType"] == "Slot"]
    by_day: dict[date, list[dict]] = {}
    for s in slots:
        start = datetime.fromisoformat(s["start"].replace("Z", "+00:00")).astimezone(TZ)
        by_day.setdefault(start.date(), []).append({**s, "local": start})
    assert date(2026, 12, 25) not in by_day  # Christmas Day
    assert all(s["local"].hour < 13 for s in by_day[date(2026, 12, 24)])  # closes at 1 p.m.
    assert not [s for s in by_day[date(2026, 12, 18)] if s["schedule"]["reference"] == "Schedule/patel-main"]
    assert {s["schedule"]["reference"] for s in by_day[date(2026, 12, 19)]} == {"Schedule/reyes-main"}  # Saturday
    assert any(s["local"].hour == 17 for s in by_day[date(2026, 12, 22)])  # the flu-season evening
    schedules = {r["id"]: r for r in resources if r["resourceType"] == "Schedule"}
    assert schedules["brooks-main"]["actor"] == [
        {"reference": "Practitioner/brooks"},
        {"reference": "Location/main"},
    ]
    assert {c["coding"][0]["code"] for s in slots for c in s["serviceType"]} >= {"new_patient", "procedure"}
    assert seed_from_schedule(ROOT / "no-such-file.yml", start_date=MONDAY, days=1) == default_seed(MONDAY, 1)
    assert len(slots) == len({s["id"] for s in slots}) and slots[0]["start"].endswith("Z")
    assert min(by_day) >= MONDAY and max(by_day) < MONDAY + timedelta(days=14)
