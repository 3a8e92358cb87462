"""A local stand-in for a clinic's FHIR R4 server (the scheduling part of an EHR), speaking FHIR R4
REST over JSON, so tests drive the real fhirpy client against a free loopback port.

What it serves, for Patient, Practitioner, Location, Schedule, Slot and Appointment:

    GET  /metadata                  a CapabilityStatement (the types and search parameters below)
    GET  /{type}?params             a searchset Bundle, paged with a "next" link (_count, _offset, _sort)
    POST /{type}/_search            the same search with the parameters in a form body
                                    (application/x-www-form-urlencoded); its page links are
                                    [base]?_getpages=<token>&_offset=n, as HAPI's, never the parameters
    GET  /{type}/{id}               the resource, ETag W/"version" and meta.versionId
    POST /{type}                    create: 201, Location .../{type}/{id}/_history/1, the resource
    PUT  /{type}/{id}               update (or create with that id); If-Match W/"n" is the
                                    compare-and-set: another version -> 412 Precondition Failed

Search parameters (a comma is OR, a repeated parameter is AND; dates take eq ne gt ge lt le):
    all          _id
    Slot         start, status, schedule, service-type
    Appointment  date, status, patient, practitioner, location, actor, slot, service-type
    Patient      name (:contains, :exact), family, given, birthdate, phone, telecom, active
    Practitioner name, active;  Location name, status;  Schedule actor, active
An unknown parameter is refused (400), as a strict server does, so a client's mistake shows.

Like a real scheduling server it refuses an active Appointment (proposed, pending, booked,
arrived) on a Slot that another active Appointment already has: 409 Conflict. References from an
Appointment to a Patient, Practitioner, Location or Slot must resolve (400 otherwise). Every error
is an OperationOutcome; the content type is application/fhir+json.

Seed: `FhirStandIn(seed=...)` takes resources (dicts); by default `default_seed()`: one location,
two practitioners and their slots for 5 weekdays. `seed_from_schedule()` builds them from the
clinic's schedule file (knowledge/clinic/schedule.yml: locations, providers, weekly hours, days
off, holidays), as a clinic's EHR would hold them; the sandbox below starts with that.

Faults for tests: `fail_next(n, status=503)`, `latency` (seconds before each answer), `stop()`.
Test access: `add()`, `read()`, `resources()`, `requests` (method and path of each API request).

Sandbox: python -m careline.standins.fhir_api --port 8791   (then FHIR_BASE_URL=http://127.0.0.1:8791)
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

from careline.standins.http import StandinHandler, StandinServer

FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.0.1"
TYPES = ("Patient", "Practitioner", "Location", "Schedule", "Slot", "Appointment")
ACTIVE = frozenset({"proposed", "pending", "booked", "arrived"})
APPOINTMENT_STATUSES = ACTIVE | {"fulfilled", "cancelled", "noshow", "entered-in-error", "checked-in", "waitlist"}
SLOT_STATUSES = frozenset({"free", "busy", "busy-tentative", "busy-unavailable", "entered-in-error"})
# The code system of the clinic's visit types (Slot.serviceType, Appointment.serviceType); the
# FHIR backend (careline/scheduling/fhir.py) uses the same one.
VISIT_TYPE_SYSTEM = "https://careline.example/fhir/CodeSystem/visit-type"
_CONTROL = {"_count", "_offset", "_sort", "_format", "_pretty", "_total", "_summary"}


class FhirError(Exception):
    """An answer other than success: the HTTP status and the OperationOutcome's issue."""

    def __init__(self, status: int, code: str, diagnostics: str):
        super().__init__(diagnostics)
        self.status, self.code, self.diagnostics = status, code, diagnostics


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


# --- values: references, codes, names, dates -------------------------------------------------------


def _ref(value: Any) -> str | None:
    return value.get("reference") if isinstance(value, dict) else None


def _codes(concepts: Any) -> list[str]:
    """Every code of a CodeableConcept or a list of them, as "code" and "system|code"."""
    found: list[str] = []
    for concept in concepts if isinstance(concepts, list) else [concepts] if concepts else []:
        for coding in concept.get("coding") or []:
            if coding.get("code"):
                found += [coding["code"], f"{coding.get('system', '')}|{coding['code']}"]
    return found


def _actors(resource: dict, kind: str | None = None) -> list[str]:
    refs = [_ref(p.get("actor")) for p in resource.get("participant") or []]
    return [r for r in refs if r and (kind is None or r.split("/")[-2:-1] == [kind])]


def _name_strings(resource: dict, part: str | None = None) -> list[str]:
    found: list[str] = []
    for name in resource.get("name") or []:
        if isinstance(name, str):  # Location.name
            found.append(name)
            continue
        if part in (None, "family") and name.get("family"):
            found.append(name["family"])
        if part in (None, "given"):
            found += name.get("given") or []
        if part is None:
            found += [name.get("text") or ""] + (name.get("prefix") or []) + (name.get("suffix") or [])
    return [s for s in found if s]


def _telecom(resource: dict, system: str | None = None) -> list[str]:
    return [t.get("value", "") for t in resource.get("telecom") or [] if system is None or t.get("system") == system]


def _fold(text: str) -> str:
    """Case and accents ignored, as servers normalise string search."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().strip()


def date_range(value: str) -> tuple[datetime, datetime]:
    """A FHIR date or dateTime as the range of time it covers (UTC for a date without a zone)."""
    v = value.strip().replace(" ", "+")  # a "+" in a query string arrives as a space
    if "T" in v:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
        return dt, dt + timedelta(seconds=1)
    parts = [int(p) for p in v.split("-")]
    if len(parts) == 1:
        return datetime(parts[0], 1, 1, tzinfo=UTC), datetime(parts[0] + 1, 1, 1, tzinfo=UTC)
    if len(parts) == 2:
        y, m = parts
        return datetime(y, m, 1, tzinfo=UTC), datetime(y + m // 12, m % 12 + 1, 1, tzinfo=UTC)
    lo = datetime(*parts, tzinfo=UTC)
    return lo, lo + timedelta(days=1)


# --- search parameters ---------------------------------------------------------------------------------

# (type, parameter) -> (kind, the values of a resource it matches)
Extract = Callable[[dict], list]
_COMMON: dict[str, tuple[str, Extract]] = {"_id": ("token", lambda r: [r.get("id")])}
PARAMS: dict[str, dict[str, tuple[str, Extract]]] = {
    "Slot": {
        "start": ("date", lambda r: [r.get("start")]),
        "status": ("token", lambda r: [r.get("status")]),
        "schedule": ("reference", lambda r: [_ref(r.get("schedule"))]),
        "service-type": ("token", lambda r: _codes(r.get("serviceType"))),
    },
    "Appointment": {
        "date": ("date", lambda r: [r.get("start")]),
        "status": ("token", lambda r: [r.get("status")]),
        "patient": ("reference", lambda r: _actors(r, "Patient")),
        "practitioner": ("reference", lambda r: _actors(r, "Practitioner")),
        "location": ("reference", lambda r: _actors(r, "Location")),
        "actor": ("reference", lambda r: _actors(r)),
        "slot": ("reference", lambda r: [_ref(s) for s in r.get("slot") or []]),
        "service-type": ("token", lambda r: _codes(r.get("serviceType"))),
    },
    "Patient": {
        "name": ("string", lambda r: _name_strings(r)),
        "family": ("string", lambda r: _name_strings(r, "family")),
        "given": ("string", lambda r: _name_strings(r, "given")),
        "birthdate": ("date", lambda r: [r.get("birthDate")]),
        "phone": ("token", lambda r: _telecom(r, "phone")),
        "telecom": ("token", lambda r: _telecom(r)),
        "active": ("token", lambda r: [str(r.get("active", True)).lower()]),
    },
    "Practitioner": {
        "name": ("string", lambda r: _name_strings(r)),
        "active": ("token", lambda r: [str(r.get("active", True)).lower()]),
    },
    "Location": {
        "name": ("string", lambda r: [r.get("name")]),
        "status": ("token", lambda r: [r.get("status")]),
    },
    "Schedule": {
        "actor": ("reference", lambda r: [_ref(a) for a in r.get("actor") or []]),
        "active": ("token", lambda r: [str(r.get("active", True)).lower()]),
    },
}


def _match_date(candidates: list, value: str) -> bool:
    prefix, rest = (value[:2], value[2:]) if value[:2].isalpha() else ("eq", value)
    if prefix not in ("eq", "ne", "gt", "ge", "lt", "le"):
        raise FhirError(400, "not-supported", f"date prefix {prefix!r} is not supported")
    try:
        lo, hi = date_range(rest)
    except ValueError:
        raise FhirError(400, "invalid", f"not a FHIR date: {rest!r}") from None
    for c in candidates:
        t_lo, t_hi = date_range(c)
        hit = {
            "eq": lo <= t_lo and t_hi <= hi,
            "ne": not (lo <= t_lo and t_hi <= hi),
            "gt": t_lo >= hi,
            "ge": t_lo >= lo,
            "lt": t_lo < lo,
            "le": t_lo < hi,
        }[prefix]
        if hit:
            return True
    return False


def _match_one(kind: str, modifier: str, candidates: list, value: str) -> bool:
    if kind == "date":
        return _match_date(candidates, value)
    if kind == "token":
        return value in candidates
    if kind == "reference":  # "Patient/1", "1", or an absolute URL ending in Type/id
        return any(c == value or c.split("/")[-1] == value or value.endswith("/" + c) for c in candidates)
    if modifier == "exact":
        return value in candidates
    folded = [_fold(c) for c in candidates]
    needle = _fold(value)
    if modifier == "contains":
        return any(needle in c for c in folded)
    return any(c.startswith(needle) for c in folded)


def matches(resource_type: str, resource: dict, params: dict[str, list[str]]) -> bool:
    """Whether `resource` matches every search parameter (control parameters aside)."""
    known = {**_COMMON, **PARAMS[resource_type]}
    for key, values in params.items():
        if key in _CONTROL:
            continue
        name, _, modifier = key.partition(":")
        if name not in known or modifier not in ("", "contains", "exact") or (modifier and known[name][0] != "string"):
            raise FhirError(400, "not-supported", f"unknown search parameter {key!r} for {resource_type}")
        kind, extract = known[name]
        candidates = [c for c in extract(resource) if c]
        for value in values:  # repeated: AND; a comma inside: OR
            if not any(_match_one(kind, modifier, candidates, v) for v in value.split(",")):
                return False
    return True


def _sort_key(resource_type: str, name: str) -> Callable[[dict], Any]:
    if name == "_lastUpdated":
        return lambda r: r["meta"]["lastUpdated"]
    if name == "_id":
        return lambda r: r["id"]
    kind, extract = PARAMS[resource_type].get(name, (None, None))
    if kind != "date" or extract is None:
        raise FhirError(400, "not-supported", f"cannot sort {resource_type} by {name!r}")

    def key(r: dict) -> datetime:
        values = [v for v in extract(r) if v]
        return date_range(values[0])[0] if values else datetime.max.replace(tzinfo=UTC)

    return key


# --- the store ----------------------------------------------------------------------------------------


def _version_of(header: str | None) -> str | None:
    """W/"3" -> 3 (If-Match carries the ETag; a plain "3" is accepted too)."""
    if header is None:
        return None
    return header.strip().removeprefix("W/").strip('"')


class _Store:
    """Every resource by type and id, versioned. One lock: each request is atomic."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._data: dict[str, dict[str, dict]] = {t: {} for t in TYPES}

    def put_raw(self, resource: dict) -> dict:
        """Store as given (a seed, a test's set-up): no rule is checked."""
        resource_type = resource.get("resourceType")
        if resource_type not in TYPES:
            raise ValueError(f"unsupported resource type {resource_type!r}")
        with self._lock:
            rid = resource.get("id") or uuid.uuid4().hex[:16]
            old = self._data[resource_type].get(rid)
            return self._save(resource_type, rid, resource, int(old["meta"]["versionId"]) + 1 if old else 1)

    def _save(self, resource_type: str, rid: str, body: dict, version: int) -> dict:
        stored = copy.deepcopy(body)
        stored["resourceType"], stored["id"] = resource_type, rid
        stored["meta"] = {
            **(body.get("meta") or {}),
            "versionId": str(version),
            "lastUpdated": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        self._data[resource_type][rid] = stored
        return copy.deepcopy(stored)

    def read(self, resource_type: str, rid: str) -> dict | None:
        with self._lock:
            found = self._data[resource_type].get(rid)
            return copy.deepcopy(found) if found else None

    def all(self, resource_type: str) -> list[dict]:
        with self._lock:
            return copy.deepcopy(list(self._data[resource_type].values()))

    def create(self, resource_type: str, body: dict) -> dict:
        _validate(resource_type, body)
        with self._lock:
            rid = uuid.uuid4().hex[:16]
            self._check_rules(resource_type, rid, body)
            return self._save(resource_type, rid, body, 1)

    def update(self, resource_type: str, rid: str, body: dict, if_match: str | None) -> tuple[int, dict]:
        """(201 created | 200 updated, the stored resource); 412 when If-Match names another version."""
        _validate(resource_type, body)
        if body.get("id") not in (None, rid):
            raise FhirError(400, "invalid", "the resource's id is not the id in the URL")
        with self._lock:
            old = self._data[resource_type].get(rid)
            current = old["meta"]["versionId"] if old else None
            wanted = _version_of(if_match)
            if wanted is not None and wanted != current:
                raise FhirError(
                    412, "conflict", f"{resource_type}/{rid} is at version {current}, not {wanted} (If-Match)"
                )
            self._check_rules(resource_type, rid, body)
            return (200 if old else 201), self._save(resource_type, rid, body, int(current or 0) + 1)

    def _check_rules(self, resource_type: str, rid: str, body: dict) -> None:
        """An Appointment's references resolve; an active one takes a Slot no other active one has."""
        if resource_type != "Appointment":
            return
        for ref in _actors(body) + [_ref(s) for s in body.get("slot") or []]:
            kind, _, target = (ref or "").rpartition("/")
            if kind not in TYPES or target not in self._data[kind]:
                raise FhirError(400, "processing", f"reference {ref!r} does not resolve")
        if body.get("status") not in ACTIVE:
            return
        slots = {_ref(s) for s in body.get("slot") or []}
        for other in self._data["Appointment"].values():
            if (
                other["id"] != rid
                and other.get("status") in ACTIVE
                and slots & {_ref(s) for s in other.get("slot") or []}
            ):
                raise FhirError(409, "conflict", f"the slot is already booked by Appointment/{other['id']}")

    def search(self, resource_type: str, params: dict[str, list[str]]) -> list[dict]:
        with self._lock:
            found = [copy.deepcopy(r) for r in self._data[resource_type].values() if matches(resource_type, r, params)]
        for key in reversed((params.get("_sort") or [""])[-1].split(",")):
            if key:
                found.sort(key=_sort_key(resource_type, key.lstrip("-")), reverse=key.startswith("-"))
        return found


def _validate(resource_type: str, body: Any) -> None:
    if not isinstance(body, dict) or body.get("resourceType") != resource_type:
        raise FhirError(400, "invalid", f"the body is not a {resource_type}")
    if resource_type == "Appointment" and body.get("status") not in APPOINTMENT_STATUSES:
        raise FhirError(400, "invalid", "Appointment.status is missing or not a valid code")
    if resource_type == "Appointment" and not body.get("participant"):
        raise FhirError(400, "required", "Appointment.participant is required")
    if resource_type == "Slot":
        if body.get("status") not in SLOT_STATUSES:
            raise FhirError(400, "invalid", "Slot.status is missing or not a valid code")
        if not (_ref(body.get("schedule")) and body.get("start") and body.get("end")):
            raise FhirError(400, "required", "Slot.schedule, Slot.start and Slot.end are required")


# --- the seed ------------------------------------------------------------------------------------------


def visit_type_concept(code: str, display: str = "") -> dict[str, Any]:
    return {"coding": [{"system": VISIT_TYPE_SYSTEM, "code": code, **({"display": display} if display else {})}]}


def _utc_text(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def slot_resource(schedule_id: str, start: datetime, end: datetime, visit_types: Iterable[str]) -> dict[str, Any]:
    """A free Slot of `schedule_id` (its id is derived from the schedule and the start, so a seed
    built twice names the same slots)."""
    return {
        "resourceType": "Slot",
        "id": f"{schedule_id}-{start.astimezone(UTC):%Y%m%d%H%M}",
        "schedule": {"reference": f"Schedule/{schedule_id}"},
        "status": "free",
        "start": _utc_text(start),
        "end": _utc_text(end),
        "serviceType": [visit_type_concept(v) for v in visit_types],
    }


def schedule_resource(practitioner_id: str, location_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Schedule",
        "id": f"{practitioner_id}-{location_id}",
        "active": True,
        "actor": [{"reference": f"Practitioner/{practitioner_id}"}, {"reference": f"Location/{location_id}"}],
    }


_DEFAULT_PRACTITIONERS = (
    ("dr-patel", "Dr. Maya Patel", "Family physician", ("new_patient", "follow_up", "same_day_sick", "telehealth")),
    ("np-rivera", "Sam Rivera, NP", "Nurse practitioner", ("follow_up", "same_day_sick", "telehealth")),
)


def _practitioner(pid: str, name: str, role: str) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": pid,
        "active": True,
        "name": [{"text": name}],
        "qualification": [{"code": {"text": role}}],
    }


def default_seed(
    start_date: date | None = None, days: int = 5, timezone: str = "America/New_York", slot_minutes: int = 30
) -> list[dict[str, Any]]:
    """One location, two practitioners, and 30-minute slots 09:00-12:00 and 13:00-17:00 (clinic
    time) on `days` weekdays from `start_date` (default: today in the clinic's time zone)."""
    tz = ZoneInfo(timezone)
    day = start_date or datetime.now(tz).date()
    location = {
        "resourceType": "Location",
        "id": "main",
        "status": "active",
        "name": "Maplewood Family Clinic",
        "address": {"text": "100 Maple Street, Springfield"},
        "telecom": [{"system": "phone", "value": "(555) 555-0100"}],
    }
    resources: list[dict[str, Any]] = [location]
    weekdays: list[date] = []
    while len(weekdays) < days:
        if day.weekday() < 5:
            weekdays.append(day)
        day += timedelta(days=1)
    step = timedelta(minutes=slot_minutes)
    for pid, name, role, visit_types in _DEFAULT_PRACTITIONERS:
        schedule = schedule_resource(pid, "main")
        resources += [_practitioner(pid, name, role), schedule]
        for d in weekdays:
            for first, last in ((9, 12), (13, 17)):
                t = datetime(d.year, d.month, d.day, first, tzinfo=tz)
                while t + step <= datetime(d.year, d.month, d.day, last, tzinfo=tz):
                    resources.append(slot_resource(schedule["id"], t, t + step, visit_types))
                    t += step
    return resources


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")  # fmt: skip
_NTH = {"first": 0, "second": 1, "third": 2, "fourth": 3}


def _minutes(hhmm: Any) -> int:
    hours, minutes = str(hhmm).split(":")
    return int(hours) * 60 + int(minutes)


def _holiday_on(holiday: dict, day: date) -> bool:
    """A holiday's date, yearly date, or rule ("fourth thursday of november", offset_days) is `day`."""
    if "date" in holiday:
        return str(holiday["date"]) == day.isoformat()
    if "yearly" in holiday:
        return day.strftime("%m-%d") == str(holiday["yearly"])
    nth, weekday, _, month = str(holiday["rule"]).lower().split()
    base = day - timedelta(days=int(holiday.get("offset_days", 0)))
    if base.month != _MONTHS.index(month) + 1 or base.weekday() != _WEEKDAYS.index(weekday[:3]):
        return False
    if nth == "last":
        return (base + timedelta(days=7)).month != base.month
    return (base.day - 1) // 7 == _NTH[nth]


def _closures(data: dict, day: date) -> list[tuple[str | None, str | None, int, int]]:
    """(provider or None, location or None, from, to) closed on `day`, in minutes of the day."""
    closed = [
        (None, h.get("location"), _minutes(h.get("from", "00:00")), _minutes(h.get("to", "24:00")))
        for h in data.get("holidays") or []
        if _holiday_on(h, day)
    ]
    for e in data.get("exceptions") or []:
        if str(e.get("date")) == day.isoformat() and e.get("kind") == "closed":
            closed.append((e["provider"], None, _minutes(e.get("from", "00:00")), _minutes(e.get("to", "24:00"))))
    return closed


def _blocks(data: dict, day: date) -> list[tuple[str, dict]]:
    """(provider id, block) of every block of hours worked on `day`: the weekly hours in their
    valid dates, and the exceptions that open extra hours."""
    found = []
    for provider in data.get("providers") or []:
        for block in provider.get("hours") or []:
            valid = str(block.get("valid_from", "0000")) <= day.isoformat() <= str(block.get("valid_to", "9999"))
            if valid and _WEEKDAYS[day.weekday()] in block.get("days", []):
                found.append((provider["id"], block))
    for e in data.get("exceptions") or []:
        if str(e.get("date")) == day.isoformat() and e.get("kind") == "open":
            found.append((e["provider"], e))
    return found


def _day_slots(data: dict, day: date, tz: ZoneInfo) -> list[dict[str, Any]]:
    closed = _closures(data, day)
    slots = []
    for provider_id, block in _blocks(data, day):
        location, step = block["location"], int(block["slot_minutes"])
        start, end = _minutes(block["from"]), _minutes(block["to"])
        while start + step <= end:
            shut = any(
                p in (None, provider_id) and loc in (None, location) and lo < start + step and start < hi
                for p, loc, lo, hi in closed
            )
            if not shut:
                t = datetime(day.year, day.month, day.day, start // 60, start % 60, tzinfo=tz)
                slots.append(
                    slot_resource(f"{provider_id}-{location}", t, t + timedelta(minutes=step), block["visit_types"])
                )
            start += step
    return slots


def seed_from_schedule(
    path: str | Path, timezone: str = "America/New_York", start_date: date | None = None, days: int = 5
) -> list[dict[str, Any]]:
    """The clinic's schedule file (knowledge/clinic/schedule.yml, its format described at its top)
    as FHIR resources: a Location per location, a Practitioner per provider, a Schedule per
    provider and location it works at, and free Slots for `days` days from `start_date` (default
    today, clinic time) whose serviceType codes are the visit type ids; holidays and days off
    leave no slots. The built-in default_seed() when the file does not exist."""
    import yaml  # only the sandbox and tests seed from a file

    tz = ZoneInfo(timezone)
    if not Path(path).exists():
        return default_seed(start_date, days, timezone)
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Location",
            "id": loc["id"],
            "status": "active",
            "name": loc["name"],
            "address": {"text": loc.get("address", "")},
            "telecom": [{"system": "phone", "value": loc["phone"]}] if loc.get("phone") else [],
        }
        for loc in data.get("locations") or []
    ]
    for provider in data.get("providers") or []:
        resources.append(_practitioner(provider["id"], provider["name"], provider.get("role", "")))
        places = {b["location"] for b in provider.get("hours") or []}
        places |= {
            e["location"]
            for e in data.get("exceptions") or []
            if e.get("provider") == provider["id"] and e.get("location")
        }
        resources += [schedule_resource(provider["id"], loc) for loc in sorted(places)]
    first = start_date or datetime.now(tz).date()
    for n in range(days):
        resources += _day_slots(data, first + timedelta(days=n), tz)
    return resources


# --- the server ---------------------------------------------------------------------------------------


class FhirStandIn:
    """A FHIR R4 server on a loopback port. Start with `start()` or `with FhirStandIn() as fhir:`."""

    def __init__(
        self,
        seed: Iterable[dict[str, Any]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        page_size: int = 50,
    ):
        self.token = token  # when set, requests need "Authorization: Bearer <token>" (else 401)
        self.page_size = page_size  # _count when the client gives none
        self.latency = 0.0  # seconds before each API answer
        self.requests: list[tuple[str, str]] = []  # (method, path) of every API request
        self.post_search = True  # False: POST [type]/_search answers 405, as some servers do
        self.targets: list[str] = []  # the whole request target (path and query) of every API request
        self._pages: dict[str, tuple[str, dict[str, list[str]]]] = {}  # _getpages token -> a POST search
        self._store = _Store()
        self._faults: list[int] = []
        self._lock = threading.Lock()
        self._host, self._port = host, port
        self._server: StandinServer | None = None
        for resource in default_seed() if seed is None else seed:
            self._store.put_raw(resource)

    # --- lifecycle ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The server's base URL, e.g. http://127.0.0.1:54321 (FHIR_BASE_URL)."""
        if self._server is None:
            raise RuntimeError("the FHIR stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FhirStandIn:
        self._server = StandinServer((self._host, self._port), self, _Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fhir-standin", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FhirStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- test access -------------------------------------------------------------------------------

    def add(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Store a resource directly, as another system writing to the server would (no rule is
        checked); returns it with its id and meta."""
        return self._store.put_raw(resource)

    def read(self, resource_type: str, rid: str) -> dict[str, Any] | None:
        return self._store.read(resource_type, rid)

    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        return self._store.all(resource_type)

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """The next `count` API requests get `status` (an OperationOutcome, code "transient")."""
        with self._lock:
            self._faults.extend([status] * count)

    def _take_fault(self, method: str, path: str, target: str = "") -> int | None:
        with self._lock:
            self.requests.append((method, path))
            self.targets.append(target or path)
            return self._faults.pop(0) if self._faults else None

    # --- the REST interactions ---------------------------------------------------------------------

    def search(
        self, resource_type: str, params: dict[str, list[str]], base: str, opaque: bool = False
    ) -> dict[str, Any]:
        """A searchset Bundle: `_count` per page (default page_size), `_offset` into the results.
        `opaque` (a POST search): the page links name a stored search instead of its parameters."""
        if "_getpages" in params:  # a page of a POST search: its parameters as they were posted
            with self._lock:
                stored = self._pages.get(params["_getpages"][-1])
            if stored is None or resource_type not in ("", stored[0]):
                raise FhirError(404, "not-found", "this search is not known (or has expired)")
            paging = {k: v for k, v in params.items() if k in ("_offset", "_count")}
            return self.search(stored[0], {**stored[1], **paging}, base, opaque=True)
        try:
            count = max(int((params.get("_count") or [self.page_size])[-1]), 0)
            offset = max(int((params.get("_offset") or [0])[-1]), 0)
        except ValueError:
            raise FhirError(400, "invalid", "_count and _offset are whole numbers") from None
        found = self._store.search(resource_type, params)
        page = found[offset : offset + count]

        token = self._remember(resource_type, params) if opaque else None

        def link(start: int) -> str:
            query = {"_getpages": [token], "_count": [str(count)]} if token else params
            query = {k: v for k, v in query.items() if k != "_offset"}
            where = base if token else f"{base}/{resource_type}"
            return f"{where}?{urlencode({**query, '_offset': [str(start)]}, doseq=True)}"

        links = [{"relation": "self", "url": link(offset)}]
        if count and offset + count < len(found):
            links.append({"relation": "next", "url": link(offset + count)})
        return {
            "resourceType": "Bundle",
            "id": uuid.uuid4().hex,
            "type": "searchset",
            "total": len(found),
            "link": links,
            "entry": [
                {"fullUrl": f"{base}/{resource_type}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                for r in page
            ],
        }

    def _remember(self, resource_type: str, params: dict[str, list[str]]) -> str:
        kept = {k: v for k, v in params.items() if k not in ("_offset", "_count")}
        with self._lock:
            for token, stored in self._pages.items():  # the same search again: the same token
                if stored == (resource_type, kept):
                    return token
            token = uuid.uuid4().hex
            self._pages[token] = (resource_type, kept)
        return token

    def capability_statement(self) -> dict[str, Any]:
        interactions = [{"code": c} for c in ("read", "search-type", "create", "update")]
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "kind": "instance",
            "fhirVersion": FHIR_VERSION,
            "format": ["json"],
            "rest": [
                {
                    "mode": "server",
                    "resource": [
                        {
                            "type": t,
                            "versioning": "versioned-update",
                            "updateCreate": True,
                            "interaction": interactions,
                            "searchParam": [
                                {"name": name, "type": kind} for name, (kind, _) in {**_COMMON, **PARAMS[t]}.items()
                            ],
                        }
                        for t in TYPES
                    ],
                }
            ],
        }


class _Handler(StandinHandler):
    server_version = "fhir-standin"
    server: StandinServer

    @property
    def standin(self) -> FhirStandIn:
        return self.server.standin

    def _base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{self.headers.get('Host') or f'{host}:{port}'}"

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.respond(status, json.dumps(payload).encode(), FHIR_JSON, headers)

    def _send_resource(self, status: int, resource: dict[str, Any]) -> None:
        version = resource["meta"]["versionId"]
        location = f"{self._base()}/{resource['resourceType']}/{resource['id']}/_history/{version}"
        headers = {"ETag": f'W/"{version}"', "Last-Modified": resource["meta"]["lastUpdated"]}
        if status == 201:
            headers["Location"] = location
        self._send(status, resource, headers)

    def _body(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise FhirError(400, "structure", "the body is not JSON") from None

    def _route(self, method: str) -> tuple[str | None, str | None]:
        """(type, id) of the request path; answers 401/404/faults itself and returns (None, None)."""
        path = urlsplit(self.path).path.rstrip("/")
        fault = self.standin._take_fault(method, path, self.path)
        if self.standin.latency:
            time.sleep(self.standin.latency)
        if fault is not None:
            raise FhirError(fault, "transient", "the server is unavailable")
        token = self.standin.token
        if token and self.headers.get("Authorization") != f"Bearer {token}":
            raise FhirError(401, "login", "a valid bearer token is required")
        parts = path.strip("/").split("/")
        if parts == ["metadata"] and method == "GET":
            self._send(200, self.standin.capability_statement())
            return None, None
        if parts == [""] and method == "GET":  # [base]?_getpages=...: a page of a POST search
            params = parse_qs(urlsplit(self.path).query, keep_blank_values=False)
            if "_getpages" not in params:
                raise FhirError(404, "not-supported", "no such endpoint: /")
            self._send(200, self.standin.search("", params, self._base()))
            return None, None
        if parts[0] not in TYPES or len(parts) > 2:
            raise FhirError(404, "not-supported", f"no such endpoint: {path or '/'}")
        return parts[0], parts[1] if len(parts) == 2 else None

    def _handle(self, method: str, action: Callable[[str, str | None], None]) -> None:
        try:
            resource_type, rid = self._route(method)
            if resource_type is not None:
                action(resource_type, rid)
        except FhirError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            self._send(exc.status, operation_outcome(exc.code, exc.diagnostics), headers)

    def do_GET(self) -> None:
        self._handle("GET", self._get)

    def do_POST(self) -> None:
        self._handle("POST", self._post)

    def do_PUT(self) -> None:
        self._handle("PUT", self._put)

    def do_DELETE(self) -> None:
        self._handle("DELETE", self._not_supported)

    def do_PATCH(self) -> None:
        self._handle("PATCH", self._not_supported)

    def _get(self, resource_type: str, rid: str | None) -> None:
        if rid is None:
            params = parse_qs(urlsplit(self.path).query, keep_blank_values=False)
            self._send(200, self.standin.search(resource_type, params, self._base()))
            return
        found = self.standin._store.read(resource_type, rid)
        if found is None:
            raise FhirError(404, "not-found", f"{resource_type}/{rid} is not known")
        if _version_of(self.headers.get("If-None-Match")) == found["meta"]["versionId"]:
            self.respond(304, b"", FHIR_JSON, {"ETag": f'W/"{found["meta"]["versionId"]}"'})
            return
        self._send_resource(200, found)

    def _post(self, resource_type: str, rid: str | None) -> None:
        if rid == "_search":
            self._post_search(resource_type)
            return
        body = self._body()
        if rid is not None:
            raise FhirError(405, "not-supported", "POST goes to the type's endpoint; PUT updates an id")
        self._send_resource(201, self.standin._store.create(resource_type, body))

    def _post_search(self, resource_type: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.standin.post_search:
            raise FhirError(405, "not-supported", "this server searches by GET only")
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise FhirError(415, "not-supported", "a POST search is a form: application/x-www-form-urlencoded")
        params = parse_qs(urlsplit(self.path).query, keep_blank_values=False)
        for key, values in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=False).items():
            params.setdefault(key, []).extend(values)  # URL and body together, as the spec allows
        self._send(200, self.standin.search(resource_type, params, self._base(), opaque=True))

    def _put(self, resource_type: str, rid: str | None) -> None:
        body = self._body()
        if rid is None:
            raise FhirError(405, "not-supported", "conditional update is not supported: PUT [type]/[id]")
        status, stored = self.standin._store.update(resource_type, rid, body, self.headers.get("If-Match"))
        self._send_resource(status, stored)

    def _not_supported(self, resource_type: str, rid: str | None) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        raise FhirError(405, "not-supported", "this server does not delete or patch")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m careline.standins.fhir_api", description="A clinic's FHIR R4 scheduling server, locally."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--schedule", default="knowledge/clinic/schedule.yml", help="the clinic's schedule file")
    parser.add_argument("--timezone", default="America/New_York")
    parser.add_argument("--days", type=int, default=28, help="days of slots from today")
    parser.add_argument("--token", help="require this bearer token (FHIR_AUTH_TOKEN)")
    args = parser.parse_args(argv)

    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # before any thread starts: see twilio_api
    seed = seed_from_schedule(args.schedule, args.timezone, None, args.days)
    standin = FhirStandIn(seed=seed, host=args.host, port=args.port, token=args.token).start()
    try:
        print(f"FHIR stand-in: {standin.base_url}  (set FHIR_BASE_URL to this)", flush=True)
        signal.sigwait(stop_signals)
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
