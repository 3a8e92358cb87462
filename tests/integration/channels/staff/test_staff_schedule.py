"""The staff schedule API (channels/routes/schedule.py) through the gateway's own app (its routers,
middleware and error handling), with real services: staff sessions in Redis, the staff audit and
the SQL schedule in SQLite and in PostgreSQL (a schema of its own, dropped afterwards).

Each test gets a fresh clinic: one location, two providers, three visit types (a follow-up that
new patients cannot have, a staff-only one), free slots two days ahead and one slot in the past
(a no-show needs one), all in the clinic's time zone."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import create_engine, insert, select, text

from careline.scheduling.schema import (
    appointments,
    sched_locations,
    sched_providers,
    sched_slots,
    sched_visit_types,
)
from careline.scheduling.sql import SqlScheduler
from careline.settings import Settings
from channels import deps
from channels.app import create_app
from channels.db import make_engine, metadata
from channels.ratelimit import RateLimits
from channels.staff.accounts import StaffAccounts
from channels.staff.audit import StaffAudit
from channels.staff.auth import StaffAuth
from channels.staff.sessions import StaffSessions
from tests.integration.channels.staff.conftest import POSTGRES_URL, cheap_hasher, postgres_up

PASSWORD = "correct horse battery"
ZONE = "America/New_York"
TZ = ZoneInfo(ZONE)
SECRET = "k" * 32
CSRF = "X-CSRF-Token"


# --- the clinic --------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'careline.db'}")
        yield engine
        engine.dispose()
        return
    if not postgres_up():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    schema = f"t_sched_{uuid.uuid4().hex[:10]}"
    url = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://")
    with create_engine(url).begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = create_engine(url, connect_args={"options": f"-c search_path={schema}", "connect_timeout": 5})
    metadata.create_all(engine)
    yield engine
    engine.dispose()
    with create_engine(url).begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=TZ).astimezone(UTC)


@pytest.fixture
def clinic(engine) -> SimpleNamespace:
    return make_clinic(engine)


def make_clinic(engine) -> SimpleNamespace:
    """The clinic's rows (tests/browser/test_staff_schedule.py uses them too): `ahead` and `past`
    are the days of the slots, `slots` maps a name to the slot's id."""
    today = datetime.now(TZ).date()
    ahead, past = today + timedelta(days=2), today - timedelta(days=2)
    with engine.begin() as conn:
        conn.execute(insert(sched_locations).values(id="main", name="Main Street Clinic"))
        conn.execute(
            insert(sched_providers),
            [
                {"id": "lee", "name": "Dr. Ana Lee", "role": "Family physician", "active": True},
                {"id": "kim", "name": "Sam Kim, NP", "role": "Nurse practitioner", "active": True},
            ],
        )
        conn.execute(
            insert(sched_visit_types),
            [
                {
                    "id": "follow_up",
                    "name": "Follow-up",
                    "minutes": 20,
                    "new_patients": False,
                    "bookable_by": "patient,staff",
                },
                {
                    "id": "new_patient",
                    "name": "New patient",
                    "minutes": 40,
                    "new_patients": True,
                    "bookable_by": "patient,staff",
                },
                {"id": "procedure", "name": "Procedure", "minutes": 30, "new_patients": True, "bookable_by": "staff"},
            ],
        )
        rows = {
            "lee_9": ("lee", at(ahead, 9), "follow_up,new_patient"),
            "lee_10": ("lee", at(ahead, 10), "follow_up,new_patient"),
            "lee_11": ("lee", at(ahead, 11), "procedure"),
            "kim_9": ("kim", at(ahead, 9), "new_patient"),
            "lee_past": ("lee", at(past, 9), "new_patient"),
            "lee_next_day": ("lee", at(ahead + timedelta(days=1), 9), "new_patient"),
        }
        slots = {}
        for name, (provider, start, types) in rows.items():
            slots[name] = str(
                conn.execute(
                    insert(sched_slots).values(
                        provider_id=provider,
                        location_id="main",
                        start=start,
                        end=start + timedelta(minutes=30),
                        visit_types=types,
                        status="free",
                        version=0,
                    )
                ).inserted_primary_key[0]
            )
    return SimpleNamespace(ahead=ahead, past=past, slots=slots)


# --- the app -----------------------------------------------------------------------------------
@pytest.fixture
def auth(redis, redis_url, prefix, engine) -> StaffAuth:
    auth = StaffAuth(
        accounts=StaffAccounts(engine, hasher=cheap_hasher()),
        sessions=StaffSessions(redis, prefix=prefix, idle_seconds=600),
        audit=StaffAudit(engine),
        limits=RateLimits(redis_url, prefix, "1000/minute", "1000/minute", redis=redis),
        login_rate_limit="1000/minute",
    )
    auth.accounts.add("ann@clinic.org", "agent", PASSWORD, display_name="Ann")
    return auth


def gateway(auth: StaffAuth, scheduler, prefix: str):
    app = create_app(
        Settings(_env_file=None, conversation_secret=SECRET, redis_key_prefix=prefix, clinic_timezone=ZONE)
    )
    deps.attach(app, SimpleNamespace(staff_auth=auth, scheduler=scheduler))  # what the lifespan would start
    return app


@pytest.fixture
def scheduler(engine, clinic) -> SqlScheduler:
    return SqlScheduler(engine, timezone=ZONE, secret=SECRET)


def client_for(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
def app(auth, scheduler, prefix):
    return gateway(auth, scheduler, prefix)


@pytest.fixture
async def anon(app):
    async with client_for(app) as client:
        yield client


@pytest.fixture
async def staff(anon):
    resp = await anon.post("/staff/api/login", json={"email": "ann@clinic.org", "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    anon.headers[CSRF] = resp.json()["csrf_token"]
    anon.staff_id = resp.json()["staff"]["id"]
    return anon


async def a_patient(staff, name="José O'Neil", birth="1984-05-06", phone="(555) 201-0101") -> dict:
    resp = await staff.post("/staff/api/patients", json={"name": name, "birth_date": birth, "phone": phone})
    assert resp.status_code == 201, resp.text
    return resp.json()


def audit_rows(auth: StaffAuth, staff_id: int) -> list[tuple[str, str]]:
    return [(r["action"], r["detail"]) for r in reversed(auth.audit.rows(staff_id=staff_id))]


# --- tests -------------------------------------------------------------------------------------
ENDPOINTS = [
    ("GET", "/staff/api/patients?q=jose"),
    ("POST", "/staff/api/patients"),
    ("GET", "/staff/api/slots?date=2030-01-02"),
    ("POST", "/staff/api/appointments"),
    ("GET", "/staff/api/appointments?date=2030-01-02"),
    ("POST", "/staff/api/appointments/1/cancel"),
    ("POST", "/staff/api/appointments/1/move"),
    ("POST", "/staff/api/appointments/1/status"),
]


async def test_every_endpoint_needs_a_session_and_every_change_the_csrf_token(app, staff):
    async with client_for(app) as nobody:
        for method, path in ENDPOINTS:
            resp = await nobody.request(method, path, json={})
            assert resp.status_code == 401, (method, path, resp.text)
            assert resp.json()["error"] == "unauthorized"
    staff.headers.pop(CSRF)
    for method, path in ENDPOINTS:
        if method == "POST":
            resp = await staff.request(method, path, json={})
            assert resp.status_code == 403 and resp.json()["error"] == "csrf_failed", (path, resp.text)


async def test_the_page_and_its_files_are_served_and_the_page_holds_no_data(anon):
    page = await anon.get("/staff/schedule")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert '<script type="module" src="/staff/schedule.js">' in page.text
    assert (await anon.get("/staff/schedule.js")).headers["content-type"].startswith("application/javascript")
    assert (await anon.get("/staff/schedule.css")).headers["content-type"].startswith("text/css")
    assert (await anon.get("/staff")).status_code == 200  # the console's own routes are still there
    assert (await anon.get("/staff/console.js")).status_code == 200
    shared = await anon.get("/staff/api.js")  # the API helper both pages import
    assert (
        shared.headers["content-type"].startswith("application/javascript") and "export function client" in shared.text
    )


async def test_register_and_find_patients_with_the_phone_masked(staff, auth):
    jose = await a_patient(staff)
    assert jose["name"] == "José O'Neil" and jose["birth_date"] == "1984-05-06"
    assert jose["phone"].endswith("0101") and "555" not in jose["phone"]
    again = await staff.post(
        "/staff/api/patients", json={"name": "jose  oneil", "birth_date": "1984-05-06", "phone": ""}
    )
    assert again.status_code == 409 and again.json()["patient"]["id"] == jose["id"]
    await a_patient(staff, "Mary Jones", "1990-01-31", None)
    found = (await staff.get("/staff/api/patients", params={"q": "Jose"})).json()["items"]
    assert [p["id"] for p in found] == [jose["id"]] and found[0]["phone"] == jose["phone"]
    assert (await staff.get("/staff/api/patients", params={"q": "zz-nobody"})).json() == {"items": []}
    rows = audit_rows(auth, staff.staff_id)
    assert ("patient_create", f"patient={jose['id']}") in rows and ("patient_search", "results=1") in rows
    assert not any(s in d for _, d in rows for s in ("Jos", "O'Neil", "1984", "0101", "Jones"))


BAD_PATIENTS = [
    ({"birth_date": "1984-05-06"}, "name"),
    ({"name": "  ", "birth_date": "1984-05-06"}, "name"),
    ({"name": "12345", "birth_date": "1984-05-06"}, "letters"),
    ({"name": "Ann Lee", "birth_date": "1984-02-31"}, "not a date"),
    ({"name": "Ann Lee", "birth_date": "06/05/1984"}, "YYYY-MM-DD"),
    ({"name": "Ann Lee", "birth_date": "2999-01-01"}, "in the past"),
    ({"name": "Ann Lee", "birth_date": "1984-05-06", "phone": "12"}, "phone"),
    ({"name": "Ann Lee", "birth_date": "1984-05-06", "phone": 5552010101}, "phone"),
]


async def test_a_bad_new_patient_is_422_with_what_is_wrong(staff):
    for body, says in BAD_PATIENTS:
        resp = await staff.post("/staff/api/patients", json=body)
        assert resp.status_code == 422 and says in resp.json()["detail"], resp.text


async def test_a_search_needs_two_to_eighty_characters(staff):
    for q in (None, "", " a ", "x" * 81):
        resp = await staff.get("/staff/api/patients", params={} if q is None else {"q": q})
        assert resp.status_code == 422 and "2 to 80" in resp.json()["detail"], q


async def test_free_slots_of_a_day_in_the_clinic_time_zone(staff, clinic):
    day = clinic.ahead.isoformat()
    items = (await staff.get("/staff/api/slots", params={"date": day})).json()["items"]
    assert [s["id"] for s in items] == [clinic.slots[n] for n in ("kim_9", "lee_9", "lee_10", "lee_11")]
    first = items[0]
    offset = datetime.combine(clinic.ahead, time(9), tzinfo=TZ).isoformat()[-6:]
    assert first["start"] == f"{day}T09:00:00{offset}" and first["end"] == f"{day}T09:30:00{offset}"
    assert first["provider_name"] == "Sam Kim, NP" and first["location_name"] == "Main Street Clinic"
    assert first["visit_types"] == ["new_patient"]
    lee = (await staff.get("/staff/api/slots", params={"date": day, "provider_id": "lee"})).json()["items"]
    assert {s["provider_id"] for s in lee} == {"lee"} and len(lee) == 3
    proc = (await staff.get("/staff/api/slots", params={"date": day, "visit_type": "procedure"})).json()["items"]
    assert [s["id"] for s in proc] == [clinic.slots["lee_11"]]
    week = (await staff.get("/staff/api/slots", params={"date": day, "days": "2"})).json()["items"]
    assert clinic.slots["lee_next_day"] in {s["id"] for s in week} and len(week) == 5


BAD_DAYS = [
    ({}, "YYYY-MM-DD"),
    ({"date": "2026-02-31"}, "not a date on the calendar"),
    ({"date": "2026-2-3"}, "YYYY-MM-DD"),
    ({"date": "20260203"}, "YYYY-MM-DD"),
    ({"date": "2026-02-03", "days": "8"}, "days"),
    ({"date": "2026-02-03", "days": "x"}, "days"),
]


async def test_bad_dates_and_filters_are_422(staff):
    for params, says in BAD_DAYS:
        for path in ("/staff/api/slots", "/staff/api/appointments"):
            resp = await staff.get(path, params=params)
            assert resp.status_code == 422 and says in resp.json()["detail"], (path, resp.text)
    for params, says in [({"provider_id": "nobody"}, "provider_id"), ({"visit_type": "massage"}, "visit_type")]:
        resp = await staff.get("/staff/api/slots", params={"date": "2026-02-03", **params})
        assert resp.status_code == 422 and says in resp.json()["detail"], resp.text


async def test_staff_book_a_free_slot_and_see_it_in_the_day_view(staff, clinic, auth):
    patient = await a_patient(staff)
    slot = clinic.slots["lee_9"]
    resp = await staff.post("/staff/api/appointments", json={"slot_id": slot, "patient_id": patient["id"]})
    assert resp.status_code == 201, resp.text
    booked = resp.json()
    # the slot's first visit type is a follow-up, which a new patient cannot have
    assert booked["visit_type"] == "new_patient" and booked["status"] == "booked"
    assert booked["booked_by"] == f"staff:{staff.staff_id}" and booked["patient_name"] == "José O'Neil"
    free = (await staff.get("/staff/api/slots", params={"date": clinic.ahead.isoformat()})).json()["items"]
    assert slot not in {s["id"] for s in free}
    view = (await staff.get("/staff/api/appointments", params={"date": clinic.ahead.isoformat()})).json()
    assert [p["id"] for p in view["providers"]] == ["kim", "lee"] and view["timezone"] == ZONE
    (item,) = view["items"]
    assert (item["id"], item["patient_name"], item["status"]) == (booked["id"], "José O'Neil", "booked")
    assert item["start"].startswith(f"{clinic.ahead.isoformat()}T09:00:00")
    assert {t["id"]: t["staff_only"] for t in view["visit_types"]}["procedure"] is True
    assert (
        await staff.get("/staff/api/appointments", params={"date": clinic.ahead.isoformat(), "provider_id": "kim"})
    ).json()["items"] == []
    week = (await staff.get("/staff/api/appointments", params={"date": clinic.past.isoformat(), "days": "7"})).json()
    assert [i["id"] for i in week["items"]] == [booked["id"]]
    assert ("appointment_book", f"appointment={booked['id']} slot={slot} patient={patient['id']}") in audit_rows(
        auth, staff.staff_id
    )


async def test_a_taken_slot_is_409_and_unknown_ones_404(staff, clinic, scheduler):
    patient = await a_patient(staff)
    other = await a_patient(staff, "Mary Jones", "1990-01-31", None)
    slot = clinic.slots["kim_9"]
    first = await staff.post("/staff/api/appointments", json={"slot_id": slot, "patient_id": patient["id"]})
    assert first.status_code == 201
    second = await staff.post("/staff/api/appointments", json={"slot_id": slot, "patient_id": other["id"]})
    assert second.status_code == 409 and second.json()["error"] == "slot_taken"
    assert "someone else" in second.json()["detail"]
    scheduler.hold(clinic.slots["lee_10"], "a-patient-deciding")  # a patient in the chat holds it
    held = await staff.post(
        "/staff/api/appointments",
        json={"slot_id": clinic.slots["lee_10"], "patient_id": other["id"], "visit_type": "new_patient"},
    )
    assert held.status_code == 409
    for body, says in [
        ({"slot_id": "999999", "patient_id": other["id"]}, "No such slot."),
        ({"slot_id": "999999", "patient_id": other["id"], "visit_type": "new_patient"}, "No such slot."),
        ({"slot_id": clinic.slots["lee_9"], "patient_id": "999999"}, "No such patient."),
    ]:
        resp = await staff.post("/staff/api/appointments", json=body)
        assert resp.status_code == 404 and resp.json()["detail"] == says, resp.text


async def test_a_bad_booking_body_is_422(staff, clinic):
    patient = (await a_patient(staff))["id"]
    for body, says in [
        ({}, "slot_id"),
        ({"slot_id": "1"}, "patient_id"),
        ({"slot_id": True, "patient_id": patient}, "slot_id"),
        ({"slot_id": ["1"], "patient_id": patient}, "slot_id"),
        ({"slot_id": "x" * 65, "patient_id": patient}, "slot_id"),
        ({"slot_id": "1", "patient_id": patient, "visit_type": "massage"}, "visit_type"),
    ]:
        resp = await staff.post("/staff/api/appointments", json=body)
        assert resp.status_code == 422 and says in resp.json()["detail"], resp.text


async def test_not_json_is_422_and_a_visit_type_the_slot_lacks_too(staff, clinic):
    resp = await staff.post("/staff/api/appointments", content=b"slot=1", headers={"Content-Type": "text/plain"})
    assert resp.status_code == 422 and resp.json()["detail"] == "body must be JSON"
    patient = await a_patient(staff)
    resp = await staff.post(
        "/staff/api/appointments",
        json={"slot_id": clinic.slots["kim_9"], "patient_id": patient["id"], "visit_type": "procedure"},
    )
    assert resp.status_code == 422 and "not for that visit type" in resp.json()["detail"]


async def test_staff_may_book_a_staff_only_visit_type(staff, clinic):
    patient = await a_patient(staff)
    resp = await staff.post(
        "/staff/api/appointments", json={"slot_id": clinic.slots["lee_11"], "patient_id": patient["id"]}
    )
    assert resp.status_code == 201 and resp.json()["visit_type"] == "procedure"


async def test_move_keeps_the_old_one_when_the_new_slot_is_taken(staff, clinic, auth, scheduler):
    patient = await a_patient(staff)
    other = await a_patient(staff, "Mary Jones", "1990-01-31", None)
    booked = (
        await staff.post(
            "/staff/api/appointments", json={"slot_id": clinic.slots["lee_9"], "patient_id": patient["id"]}
        )
    ).json()
    taken = clinic.slots["kim_9"]
    assert (
        await staff.post("/staff/api/appointments", json={"slot_id": taken, "patient_id": other["id"]})
    ).status_code == 201
    refused = await staff.post(f"/staff/api/appointments/{booked['id']}/move", json={"slot_id": taken})
    assert refused.status_code == 409 and refused.json()["error"] == "slot_taken"
    assert scheduler.appointment(booked["id"]).status == "booked"
    moved = await staff.post(
        f"/staff/api/appointments/{booked['id']}/move", json={"slot_id": clinic.slots["lee_next_day"]}
    )
    assert moved.status_code == 200, moved.text
    new = moved.json()
    assert new["replaces_id"] == booked["id"] and new["slot_id"] == clinic.slots["lee_next_day"]
    old = scheduler.appointment(booked["id"])
    assert old.status == "cancelled" and old.replaced_by_id == new["id"]
    free = (await staff.get("/staff/api/slots", params={"date": clinic.ahead.isoformat()})).json()["items"]
    assert clinic.slots["lee_9"] in {s["id"] for s in free}  # the old slot is free again
    assert (await staff.post("/staff/api/appointments/999999/move", json={"slot_id": taken})).status_code == 404
    assert (await staff.post(f"/staff/api/appointments/{new['id']}/move", json={})).status_code == 422
    again = await staff.post(f"/staff/api/appointments/{booked['id']}/move", json={"slot_id": clinic.slots["lee_10"]})
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]
    detail = f"appointment={booked['id']} to_appointment={new['id']} slot={clinic.slots['lee_next_day']}"
    assert ("appointment_move", detail) in audit_rows(auth, staff.staff_id)


async def test_cancel_with_a_reason_frees_the_slot(staff, clinic, auth, engine):
    patient = await a_patient(staff)
    booked = (
        await staff.post(
            "/staff/api/appointments", json={"slot_id": clinic.slots["lee_9"], "patient_id": patient["id"]}
        )
    ).json()
    path = f"/staff/api/appointments/{booked['id']}/cancel"
    for body in ({}, {"reason": "  "}, {"reason": "x" * 121}, {"reason": 3}):
        resp = await staff.post(path, json=body)
        assert resp.status_code == 422 and "reason" in resp.json()["detail"], body
    resp = await staff.post(path, json={"reason": "Patient called: feeling better"})
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    with engine.connect() as conn:
        kept = conn.execute(select(appointments.c.cancel_reason).where(appointments.c.id == int(booked["id"])))
        assert kept.scalar_one() == "Patient called: feeling better"
    again = await staff.post(path, json={"reason": "twice"})
    assert (
        again.status_code == 409
        and again.json()["detail"] == "This appointment is cancelled: it cannot be changed that way."
    )
    assert (await staff.post("/staff/api/appointments/999999/cancel", json={"reason": "x"})).status_code == 404
    assert (await staff.post("/staff/api/appointments/not-an-id/cancel", json={"reason": "x"})).status_code == 404
    free = (await staff.get("/staff/api/slots", params={"date": clinic.ahead.isoformat()})).json()["items"]
    assert clinic.slots["lee_9"] in {s["id"] for s in free}
    rows = audit_rows(auth, staff.staff_id)
    assert ("appointment_cancel", f"appointment={booked['id']}") in rows
    assert not any("feeling" in d for _, d in rows)  # the reason is the appointment's, not the audit's


async def test_no_show_only_after_the_start_and_arrived_any_time(staff, clinic, auth):
    patient = await a_patient(staff)
    future = (
        await staff.post(
            "/staff/api/appointments", json={"slot_id": clinic.slots["lee_9"], "patient_id": patient["id"]}
        )
    ).json()
    past = (
        await staff.post(
            "/staff/api/appointments", json={"slot_id": clinic.slots["lee_past"], "patient_id": patient["id"]}
        )
    ).json()
    early = await staff.post(f"/staff/api/appointments/{future['id']}/status", json={"status": "noshow"})
    assert early.status_code == 409 and "only once the appointment has started" in early.json()["detail"]
    noshow = await staff.post(f"/staff/api/appointments/{past['id']}/status", json={"status": "noshow"})
    assert noshow.status_code == 200 and noshow.json()["status"] == "noshow"
    arrived = await staff.post(f"/staff/api/appointments/{future['id']}/status", json={"status": "arrived"})
    assert arrived.status_code == 200 and arrived.json()["status"] == "arrived"
    done = await staff.post(f"/staff/api/appointments/{future['id']}/status", json={"status": "fulfilled"})
    assert done.status_code == 200 and done.json()["status"] == "fulfilled"
    for body in ({}, {"status": "cancelled"}, {"status": "booked"}, {"status": ["noshow"]}):
        resp = await staff.post(f"/staff/api/appointments/{future['id']}/status", json=body)
        assert resp.status_code == 422 and "noshow" in resp.json()["detail"], body
    back = await staff.post(f"/staff/api/appointments/{future['id']}/status", json={"status": "arrived"})
    assert back.status_code == 409 and "completed" in back.json()["detail"]
    assert (await staff.post("/staff/api/appointments/999999/status", json={"status": "arrived"})).status_code == 404
    rows = audit_rows(auth, staff.staff_id)
    assert ("appointment_status", f"appointment={past['id']} status=noshow") in rows
    assert ("appointment_status", f"appointment={future['id']} status=fulfilled") in rows


async def test_with_the_schedule_unreachable_every_endpoint_answers_503(auth, prefix, clinic):
    down = create_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://").replace(":5432", ":1"),
        connect_args={"connect_timeout": 1},
    )
    app = gateway(auth, SqlScheduler(down, timezone=ZONE, secret=SECRET), prefix)
    async with client_for(app) as client:
        resp = await client.post("/staff/api/login", json={"email": "ann@clinic.org", "password": PASSWORD})
        client.headers[CSRF] = resp.json()["csrf_token"]
        for method, path, body in [
            ("GET", "/staff/api/patients?q=jose", None),
            ("POST", "/staff/api/patients", {"name": "Ann Lee", "birth_date": "1984-05-06"}),
            ("GET", f"/staff/api/slots?date={clinic.ahead}", None),
            ("GET", f"/staff/api/appointments?date={clinic.ahead}", None),
            ("POST", "/staff/api/appointments", {"slot_id": "1", "patient_id": "1"}),
            ("POST", "/staff/api/appointments/1/cancel", {"reason": "x"}),
            ("POST", "/staff/api/appointments/1/status", {"status": "arrived"}),
        ]:
            resp = await client.request(method, path, json=body)
            assert resp.status_code == 503, (path, resp.text)
            assert resp.json() == {
                "error": "schedule_unavailable",
                "detail": "The schedule cannot be reached now: try again in a minute.",
            }
    down.dispose()
