"""The schedule in a clinic's FHIR R4 server (SCHEDULING_BACKEND=fhir, FHIR_BASE_URL), through
fhirpy's SyncFHIRClient. Tested against careline/standins/fhir_api.py.

How FHIR R4 maps onto careline/scheduling/model.py (ids are the FHIR ids):

    Location        -> Location (name; address.text, or its lines; telecom phone)
    Practitioner    -> Provider (name[0].text, or prefix given family; qualification[0].code.text is
                       the role; location_ids: the Locations it shares a Schedule with)
    Schedule.actor  -> the Practitioner and Location a Slot belongs to (Slot.schedule)
    Slot            -> Slot; serviceType codes are the visit type ids (VISIT_TYPE_SYSTEM)
    Appointment     -> Appointment: status 1:1; participant actors Patient / Practitioner /
                       Location; slot[0]; serviceType code = the visit type (appointmentType's code
                       is read when there is none); reasonCode[0].text = the reason (description
                       read when there is none); created = created_at; cancelationReason.text
    Patient         -> Patient: name[0].text (or given family), birthDate, the phone telecom

R4 has no element for a reschedule's link or for who booked, so they are extensions:
`replaces` is HL7's cross-version extension for R5's Appointment.replaces (REPLACES_URL), and the
rest are CareLine's own (EXT + replaced-by, booked-by, cancelled-by, status-by, confirmed,
slot-hold). A hold is Slot.status busy-tentative with the slot-hold extension (holder, expires);
an expired hold counts as free.

Every change is a compare-and-set: PUT with If-Match on the version just read, so of two writers
exactly one wins and the other gets 412 (-> SlotTaken for slots). Booking sets the Slot busy that
way, then POSTs the Appointment; a 409 from a server that refuses a second active Appointment on
the slot undoes the Slot and raises SlotTaken. Unreachable, timed out, 429, 5xx, or a refusal we
cannot act on -> BackendUnavailable. Logs carry ids and reason codes only.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import requests
import yaml
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import BaseFHIRError, ResourceNotFound

from careline.scheduling.identity import name_key, normalise_phone
from careline.scheduling.model import (
    ACTIVE_STATUSES,
    Appointment,
    AppointmentStatus,
    BackendUnavailable,
    Location,
    NotAllowed,
    NotFound,
    Patient,
    Provider,
    SchedulingError,
    Slot,
    SlotQuery,
    SlotStatus,
    SlotTaken,
    VisitType,
)

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE_FILE = "knowledge/clinic/schedule.yml"  # SchedulingSettings.schedule_file's default

VISIT_TYPE_SYSTEM = "https://careline.example/fhir/CodeSystem/visit-type"
EXT = "https://careline.example/fhir/StructureDefinition/"
HOLD_URL = EXT + "slot-hold"
REPLACES_URL = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.replaces"
REPLACED_BY_URL = EXT + "replaced-by"
BOOKED_BY_URL = EXT + "booked-by"
CANCELLED_BY_URL = EXT + "cancelled-by"
STATUS_BY_URL = EXT + "status-by"
CONFIRMED_URL = EXT + "confirmed"

# Parts of the day in the clinic's time zone: [from hour, to hour).
PARTS_OF_DAY = {"morning": (0, 12), "afternoon": (12, 17), "evening": (17, 24)}
PAGE = 100  # _count of every search
_WRITE_TRIES = 3  # an update that lost a race (412) is read and tried again this many times

# Used until the clinic's schedule file gives its own (careline/scheduling/calendar.py).
DEFAULT_VISIT_TYPES = (
    VisitType("new_patient", "New patient visit", 30),
    VisitType("follow_up", "Follow-up visit", 30, new_patients=False),
    VisitType("same_day_sick", "Same-day sick visit", 30),
    VisitType("telehealth", "Video visit", 30, telehealth=True),
)

T = TypeVar("T")


class _Stale(Exception):
    """412 Precondition Failed: the resource changed since we read it."""


class _Refused(BackendUnavailable):
    """The server refused the request (400, 401, 403, 422) or answered something that is not FHIR:
    still unavailable to the caller, but asking again will not help."""


def _check_status(response: requests.Response, *args, **kwargs) -> requests.Response:
    """A `requests` response hook: the statuses the schedule acts on, before fhirpy parses the body."""
    code = response.status_code
    if code == 409:
        raise SlotTaken("fhir_conflict")
    if code == 412:
        raise _Stale()
    if code == 429 or code >= 500:
        raise BackendUnavailable(f"fhir_http_{code}")
    return response


def _on_server(url: str, base: str) -> bool:
    """Whether `url` is on the FHIR server at `base`: same scheme and host, and the base path itself
    (HAPI's `[base]?_getpages=...`) or under it."""
    u, b = urlsplit(url), urlsplit(base)
    root = b.path.rstrip("/")
    same_host = (u.scheme, u.netloc.lower()) == (b.scheme, b.netloc.lower())
    return same_host and (u.path.rstrip("/") == root or u.path.startswith(root + "/"))


def _fhirpy_params(params: dict[str, str]) -> dict[str, str]:
    """FHIR search parameter names as fhirpy's keyword arguments ("name:contains" -> name__contains)."""
    return {k.replace(":", "__"): v for k, v in params.items()}


def _searchset(response: requests.Response) -> dict[str, Any]:
    """The Bundle of a search answer; anything else (400, 401, 403, 404, not JSON) raises ValueError,
    which the backend reports as refused."""
    if response.status_code != 200:
        raise ValueError(f"fhir search answered {response.status_code}")
    bundle = response.json()
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ValueError("not a Bundle")
    return bundle


# --- FHIR values -------------------------------------------------------------------------------------


def _utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("aware datetimes only")
    return dt.astimezone(UTC)


def _instant(dt: datetime) -> str:
    return _utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_dt(text: str | None) -> datetime | None:
    if not text:
        return None
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def _plain(resource: Any) -> dict[str, Any]:
    """fhirpy's resource (a dict with references as objects) as plain JSON data."""
    return json.loads(json.dumps(resource))


def _ref_id(value: Any, kind: str) -> str | None:
    ref = value.get("reference") if isinstance(value, dict) else None
    if ref and ref.rsplit("/", 2)[-2:-1] == [kind]:
        return ref.rsplit("/", 1)[-1]
    return None


def _ext(resource: dict, url: str) -> dict | None:
    return next((e for e in resource.get("extension") or [] if e.get("url") == url), None)


def _set_ext(resource: dict, url: str, **value: Any) -> None:
    _drop_ext(resource, url)
    resource.setdefault("extension", []).append({"url": url, **value})


def _drop_ext(resource: dict, url: str) -> None:
    kept = [e for e in resource.get("extension") or [] if e.get("url") != url]
    if kept:
        resource["extension"] = kept
    else:
        resource.pop("extension", None)


def _codes(concepts: Any) -> list[str]:
    """The codes of CodeableConcepts, the clinic's visit type system first."""
    codings = [c for concept in concepts or [] for c in concept.get("coding") or [] if c.get("code")]
    codings.sort(key=lambda c: c.get("system") != VISIT_TYPE_SYSTEM)
    return list(dict.fromkeys(c["code"] for c in codings))


def _human_name(resource: dict) -> str:
    for name in resource.get("name") or []:
        if name.get("text"):
            return name["text"]
        parts = (name.get("prefix") or []) + (name.get("given") or []) + [name.get("family") or ""]
        if any(parts):
            return " ".join(p for p in parts if p)
    return ""


def _phone(resource: dict) -> str:
    phones = [t for t in resource.get("telecom") or [] if t.get("system") == "phone" and t.get("value")]
    phones.sort(key=lambda t: t.get("use") != "mobile")
    return phones[0]["value"] if phones else ""


def _hold(slot: dict) -> tuple[str, datetime | None] | None:
    """(holder, expires) of a slot-hold extension."""
    ext = _ext(slot, HOLD_URL)
    if ext is None:
        return None
    parts = {e.get("url"): e for e in ext.get("extension") or []}
    holder = (parts.get("holder") or {}).get("valueString", "")
    return holder, _parse_dt((parts.get("expires") or {}).get("valueDateTime"))


def _open_for(slot: dict, holder: str | None, now: datetime) -> bool:
    """Free, or held by `holder`, or held by anyone until a time that has passed."""
    status = slot.get("status")
    if status == SlotStatus.FREE:
        return True
    hold = _hold(slot) if status == SlotStatus.BUSY_TENTATIVE else None
    if hold is None:
        return False  # booked, blocked, or tentative by the clinic's own staff
    held_by, expires = hold
    return (holder is not None and held_by == holder) or expires is None or expires <= now


def part_of_day(start: datetime, tz: ZoneInfo) -> str:
    hour = start.astimezone(tz).hour
    return next(name for name, (lo, hi) in PARTS_OF_DAY.items() if lo <= hour < hi)


# R4 statuses the model has no word for, read as the nearest one it has.
_STATUS_ALIASES = {"checked-in": AppointmentStatus.ARRIVED, "waitlist": AppointmentStatus.PROPOSED}


def _status(res: dict) -> AppointmentStatus | None:
    value = res.get("status")
    if value in _STATUS_ALIASES:
        return _STATUS_ALIASES[value]
    return AppointmentStatus(value) if value in {s.value for s in AppointmentStatus} else None


def _booker_kind(booked_by: str) -> str:
    return "staff" if booked_by.startswith("staff") else "patient"


# --- the clinic: locations, practitioners, schedules -----------------------------------------------


@dataclass(frozen=True)
class _Directory:
    locations: dict[str, Location]
    providers: dict[str, Provider]
    schedules: dict[str, tuple[str | None, str | None]]  # Schedule id -> (Practitioner id, Location id)
    loaded: float


def _location(res: dict) -> Location:
    address = res.get("address") or {}
    text = address.get("text") or ", ".join(
        p for p in [*(address.get("line") or []), address.get("city"), address.get("state")] if p
    )
    return Location(res["id"], res.get("name", ""), text, _phone(res))


def _build_directory(locations: list[dict], practitioners: list[dict], schedules: list[dict]) -> _Directory:
    actors: dict[str, tuple[str | None, str | None]] = {}
    for s in schedules:
        if s.get("active", True):
            refs = s.get("actor") or []
            pid = next((i for a in refs if (i := _ref_id(a, "Practitioner"))), None)
            lid = next((i for a in refs if (i := _ref_id(a, "Location"))), None)
            actors[s["id"]] = (pid, lid)
    providers: dict[str, Provider] = {}
    for p in practitioners:
        if p.get("active", True):
            quals = p.get("qualification") or [{}]
            code = quals[0].get("code") or {}
            role = code.get("text") or next((c.get("display", "") for c in code.get("coding") or []), "")
            where = tuple(sorted({lid for pid, lid in actors.values() if pid == p["id"] and lid}))
            providers[p["id"]] = Provider(p["id"], _human_name(p), role, where)
    places = {res["id"]: _location(res) for res in locations if res.get("status", "active") == "active"}
    return _Directory(places, providers, actors, time.monotonic())


def load_visit_types(schedule_file: str | Path) -> tuple[VisitType, ...]:
    """The `visit_types` of the clinic's schedule file (knowledge/clinic/schedule.yml): with a FHIR
    server the slots come from the server, but what a visit type is called, how long it is and who
    may book it is the clinic's own configuration."""
    data = yaml.safe_load(Path(schedule_file).read_text(encoding="utf-8")) or {}
    return tuple(
        VisitType(
            id=str(v["id"]),
            name=str(v["name"]),
            minutes=int(v["minutes"]),
            bookable_by=tuple(v.get("bookable_by") or ("patient", "staff")),
            new_patients=bool(v.get("new_patients", True)),
            telehealth=bool(v.get("telehealth", False)),
        )
        for v in data.get("visit_types") or []
    )


def _clinic_visit_types(schedule_file: str | Path | None) -> tuple[VisitType, ...]:
    """The schedule file's visit types; the defaults when there is no file or it names none."""
    path = Path(schedule_file) if schedule_file else None
    if path is not None and not path.is_absolute() and not path.exists():
        path = ROOT / path  # a relative SCHEDULE_FILE is relative to the project when not to the cwd
    if path is None or not path.exists():
        return DEFAULT_VISIT_TYPES
    try:
        return load_visit_types(path) or DEFAULT_VISIT_TYPES
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        log.warning("fhir schedule file unreadable; default visit types used")
        return DEFAULT_VISIT_TYPES


# --- the backend ---------------------------------------------------------------------------------------


class FhirScheduler:
    """The Scheduler (careline/scheduling/model.py) on a FHIR R4 server. Thread-safe."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 5.0,
        *,
        timezone: str = "America/New_York",
        visit_types: Sequence[VisitType] | None = None,
        schedule_file: str | Path | None = SCHEDULE_FILE,
        directory_ttl: float = 300.0,
    ):
        self._url = base_url.rstrip("/")
        self._auth = f"Bearer {token}" if token else None
        self._get_only = False  # the server answered 405 to a POST search
        self._config = {"timeout": timeout, "hooks": {"response": [_check_status]}}
        self._client = SyncFHIRClient(self._url, authorization=self._auth, requests_config=self._config)
        self._tz = ZoneInfo(timezone)
        self._visit_types = tuple(visit_types) if visit_types is not None else _clinic_visit_types(schedule_file)
        self._ttl = directory_ttl
        self._dir: _Directory | None = None
        self._dir_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FhirScheduler({self._url!r})"

    # --- HTTP through fhirpy ------------------------------------------------------------------------

    def _call(self, op: str, fn: Callable[[], T]) -> T:
        """Run one request; map what the network and fhirpy raise onto the model's errors."""
        try:
            return fn()
        except (SchedulingError, _Stale):
            raise
        except ResourceNotFound:
            raise NotFound("not_found") from None
        except requests.RequestException as exc:
            log.warning("fhir unavailable op=%s error=%s", op, type(exc).__name__)
            raise BackendUnavailable("fhir_unreachable") from None
        except (BaseFHIRError, ValueError, KeyError, TypeError) as exc:
            # 400/401/403/422 or a body that is not FHIR: nothing a patient can fix; fail closed.
            log.warning("fhir refused op=%s error=%s", op, type(exc).__name__)
            raise _Refused("fhir_refused") from None

    def _read(self, op: str, fn: Callable[[], T]) -> T:
        """A read, tried twice when the server was unreachable or failing: reads are safe to repeat."""
        try:
            return self._call(op, fn)
        except _Refused:
            raise
        except BackendUnavailable:
            time.sleep(0.1)
            return self._call(op, fn)

    def _get(self, resource_type: str, rid: str) -> dict[str, Any]:
        if not rid or "/" in rid:
            raise NotFound("not_found")
        return _plain(self._read(f"read {resource_type}", lambda: self._client.get(resource_type, rid)))

    def _search(
        self,
        op: str,
        resource_type: str,
        params: dict[str, Any],
        *,
        sort: str | None = None,
        want: int | None = None,
        keep: Callable[[dict], bool] = lambda r: True,
    ) -> list[dict[str, Any]]:
        """Every match (following the Bundle's next links) that `keep` keeps, up to `want`."""
        searchset = self._client.resources(resource_type).search(**params).limit(PAGE)
        if sort:
            searchset = searchset.sort(sort)

        def run() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            for resource in searchset:
                plain = _plain(resource)
                if keep(plain):
                    found.append(plain)
                    if want is not None and len(found) >= want:
                        break
            return found

        return self._read(op, run)

    def _search_by_post(
        self, op: str, resource_type: str, params: dict[str, str], *, keep: Callable[[dict], bool], want: int = 0
    ) -> list[dict[str, Any]]:
        """A search sent as POST [type]/_search with the parameters in a form body (FHIR R4 REST,
        "search"), so a patient's name or date of birth never enters a URL, which proxies and the
        server's access log keep. Later pages follow the server's own next links, which servers
        that page POST searches make opaque (HAPI's _getpages); a link to another host is refused."""
        headers = {"Accept": "application/fhir+json", **({"Authorization": self._auth} if self._auth else {})}

        def run() -> list[dict[str, Any]]:
            if self._get_only:
                return self._search(op, resource_type, _fhirpy_params(params), keep=keep, want=want or None)
            url = f"{self._url}/{resource_type}/_search"
            response = requests.post(url, data={**params, "_count": str(PAGE)}, headers=headers, **self._config)
            if response.status_code == 405:  # allowed by the spec; rare: search by GET from now on
                log.warning("fhir server refuses POST search op=%s: patients are searched by GET", op)
                self._get_only = True
                return self._search(op, resource_type, _fhirpy_params(params), keep=keep, want=want or None)
            found: list[dict[str, Any]] = []
            while True:
                bundle = _searchset(response)
                for entry in bundle.get("entry") or []:
                    resource = entry.get("resource") or {}
                    if resource.get("resourceType") == resource_type and keep(resource):
                        found.append(resource)
                        if want and len(found) >= want:
                            return found
                url = next((lk.get("url") for lk in bundle.get("link") or [] if lk.get("relation") == "next"), "")
                if not url:
                    return found
                if not _on_server(url, self._url):  # the bearer token goes nowhere else
                    raise ValueError("a next link to another server")
                response = requests.get(url, headers=headers, **self._config)

        return self._read(op, run)

    def _put(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Update with If-Match on the version read: raises _Stale when someone else wrote first."""
        version = resource["meta"]["versionId"]
        client = SyncFHIRClient(
            self._url,
            authorization=self._auth,
            extra_headers={"If-Match": f'W/"{version}"'},
            requests_config=self._config,
        )
        body = {k: v for k, v in resource.items() if k != "resourceType"}
        saved = client.resource(resource["resourceType"], **body)
        self._call(f"update {resource['resourceType']}", saved.save)
        return _plain(saved)

    def _post(self, resource: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in resource.items() if k != "resourceType"}
        created = self._client.resource(resource["resourceType"], **body)
        self._call(f"create {resource['resourceType']}", created.save)
        return _plain(created)

    # --- the clinic -----------------------------------------------------------------------------------

    def _directory(self) -> _Directory:
        """Locations, practitioners and schedules, cached for `directory_ttl` seconds."""
        with self._dir_lock:
            if self._dir is not None and time.monotonic() - self._dir.loaded < self._ttl:
                return self._dir
            self._dir = _build_directory(
                self._search("locations", "Location", {}),
                self._search("practitioners", "Practitioner", {}),
                self._search("schedules", "Schedule", {}),
            )
            return self._dir

    def locations(self) -> list[Location]:
        return sorted(self._directory().locations.values(), key=lambda x: x.name)

    def providers(self) -> list[Provider]:
        return sorted(self._directory().providers.values(), key=lambda x: x.name)

    def visit_types(self) -> list[VisitType]:
        return list(self._visit_types)

    def _visit_type(self, vid: str) -> VisitType | None:
        return next((v for v in self._visit_types if v.id == vid), None)

    # --- slots --------------------------------------------------------------------------------------

    def _slot(self, res: dict[str, Any], directory: _Directory, now: datetime | None = None) -> Slot:
        sid = _ref_id(res.get("schedule"), "Schedule")
        pid, lid = directory.schedules.get(sid or "", (None, None))
        provider = directory.providers.get(pid or "")
        location = directory.locations.get(lid or "")
        status = SlotStatus(res.get("status", "free"))
        if now is not None and status == SlotStatus.BUSY_TENTATIVE and _open_for(res, None, now):
            status = SlotStatus.FREE  # its hold has expired
        return Slot(
            id=res["id"],
            start=_parse_dt(res["start"]),
            end=_parse_dt(res["end"]),
            provider_id=pid or "",
            provider_name=provider.name if provider else "",
            location_id=lid or "",
            location_name=location.name if location else "",
            visit_types=tuple(_codes(res.get("serviceType"))),
            status=status,
        )

    def _wanted(self, slot: dict[str, Any], query: SlotQuery) -> bool:
        start = _parse_dt(slot["start"])
        local = start.astimezone(self._tz)
        if query.weekdays and local.weekday() not in query.weekdays:
            return False
        return not query.parts_of_day or part_of_day(start, self._tz) in query.parts_of_day

    def find_slots(self, query: SlotQuery, now: datetime | None = None) -> list[Slot]:
        now = _utc(now or datetime.now(UTC))
        start, end = max(_utc(query.start), now), _utc(query.end)
        if start >= end or query.limit <= 0:
            return []
        directory = self._directory()
        schedules = [
            sid
            for sid, (pid, lid) in directory.schedules.items()
            if (query.provider_id in (None, pid)) and (query.location_id in (None, lid))
        ]
        if not schedules:
            return []
        params: dict[str, Any] = {"start__ge": start, "start__lt": end, "status": "free,busy-tentative"}
        if query.visit_type:
            params["service_type"] = query.visit_type
        if query.provider_id or query.location_id:
            params["schedule"] = ",".join(f"Schedule/{s}" for s in schedules)
        found = self._search(
            "find_slots",
            "Slot",
            params,
            sort="start",
            want=query.limit,
            keep=lambda r: (
                _ref_id(r.get("schedule"), "Schedule") in schedules
                and _open_for(r, None, now)
                and self._wanted(r, query)
            ),
        )
        slots = [self._slot(r, directory, now) for r in found]
        return sorted(slots, key=lambda s: (s.start, s.provider_name))

    def hold(self, slot_id: str, holder: str, seconds: int = 300, now: datetime | None = None) -> datetime:
        now = _utc(now or datetime.now(UTC))
        until = now + timedelta(seconds=seconds)
        slot = self._get("Slot", slot_id)
        if not _open_for(slot, holder, now):
            raise SlotTaken("slot_taken")
        slot["status"] = SlotStatus.BUSY_TENTATIVE.value
        _set_ext(
            slot,
            HOLD_URL,
            extension=[
                {"url": "holder", "valueString": holder},
                {"url": "expires", "valueDateTime": _instant(until)},
            ],
        )
        try:
            self._put(slot)
        except _Stale:
            raise SlotTaken("slot_changed") from None
        log.info("fhir hold slot=%s", slot_id)
        return until

    def release(self, slot_id: str, holder: str) -> None:
        try:
            slot = self._get("Slot", slot_id)
        except NotFound:
            return
        hold = _hold(slot)
        if slot.get("status") != SlotStatus.BUSY_TENTATIVE or hold is None or hold[0] != holder:
            return
        slot["status"] = SlotStatus.FREE.value
        _drop_ext(slot, HOLD_URL)
        try:
            self._put(slot)
        except _Stale:
            return  # changed meanwhile: the hold is no longer only ours to drop

    # --- booking ------------------------------------------------------------------------------------

    def _bookable(
        self, slot: dict[str, Any], visit_type: str, booked_by: str, holder: str | None, now: datetime
    ) -> None:
        vt = self._visit_type(visit_type)
        if vt is None or _booker_kind(booked_by) not in vt.bookable_by:
            raise NotAllowed("visit_type_not_bookable")
        if visit_type not in _codes(slot.get("serviceType")):
            raise NotAllowed("visit_type_not_offered")
        if not _open_for(slot, holder, now):
            raise SlotTaken("slot_taken")

    def _appointment_resource(
        self,
        slot: dict[str, Any],
        patient_id: str,
        visit_type: str,
        reason: str,
        booked_by: str,
        replaces: str | None,
        now: datetime,
    ) -> dict[str, Any]:
        pid, lid = self._directory().schedules.get(_ref_id(slot.get("schedule"), "Schedule") or "", (None, None))
        vt = self._visit_type(visit_type)
        participants = [{"actor": {"reference": f"Patient/{patient_id}"}, "required": "required", "status": "accepted"}]
        for kind, rid in (("Practitioner", pid), ("Location", lid)):
            if rid:
                participants.append(
                    {"actor": {"reference": f"{kind}/{rid}"}, "required": "required", "status": "accepted"}
                )
        coding = {"system": VISIT_TYPE_SYSTEM, "code": visit_type, "display": vt.name if vt else visit_type}
        resource: dict[str, Any] = {
            "resourceType": "Appointment",
            "status": AppointmentStatus.BOOKED.value,
            "serviceType": [{"coding": [coding]}],
            "start": slot["start"],
            "end": slot["end"],
            "slot": [{"reference": f"Slot/{slot['id']}"}],
            "created": _instant(now),
            "participant": participants,
            "extension": [{"url": BOOKED_BY_URL, "valueString": booked_by}],
        }
        if reason:
            resource["reasonCode"] = [{"text": reason}]
        if replaces:
            resource["extension"].append(
                {"url": REPLACES_URL, "valueReference": {"reference": f"Appointment/{replaces}"}}
            )
        return resource

    def book(
        self,
        slot_id: str,
        patient_id: str,
        visit_type: str,
        *,
        reason: str = "",
        holder: str | None = None,
        booked_by: str = "patient",
        now: datetime | None = None,
    ) -> Appointment:
        return self._book(slot_id, patient_id, visit_type, reason, holder, booked_by, None, now)

    def _book(
        self,
        slot_id: str,
        patient_id: str,
        visit_type: str,
        reason: str,
        holder: str | None,
        booked_by: str,
        replaces: str | None,
        now: datetime | None,
    ) -> Appointment:
        now = _utc(now or datetime.now(UTC))
        if self.patient(patient_id) is None:
            raise NotFound("patient_not_found")
        original = self._get("Slot", slot_id)
        self._bookable(original, visit_type, booked_by, holder, now)
        taken = {**original, "status": SlotStatus.BUSY.value}
        _drop_ext(taken, HOLD_URL)
        try:
            taken = self._put(taken)  # the compare-and-set: of two bookings one gets 412
        except _Stale:
            raise SlotTaken("slot_changed") from None
        try:
            created = self._post(
                self._appointment_resource(original, patient_id, visit_type, reason, booked_by, replaces, now)
            )
        except SchedulingError as exc:  # 409 (another active appointment has the slot), or down
            self._undo_slot(original, taken)
            log.info("fhir book failed slot=%s reason=%s", slot_id, exc.reason)
            raise
        log.info("fhir booked slot=%s appointment=%s", slot_id, created["id"])
        return self._appointment(created)

    def _undo_slot(self, original: dict[str, Any], taken: dict[str, Any]) -> None:
        """Put the slot back as it was before our compare-and-set (if nobody changed it since)."""
        restored = {**original, "meta": taken["meta"]}
        try:
            self._put(restored)
        except (_Stale, SchedulingError) as exc:
            log.warning("fhir slot undo failed slot=%s error=%s", original["id"], type(exc).__name__)

    def _free_slot(self, slot_id: str) -> None:
        for _ in range(_WRITE_TRIES):
            try:
                slot = self._get("Slot", slot_id)
            except NotFound:
                return
            if slot.get("status") != SlotStatus.BUSY:
                return  # already free, held for another patient, or blocked by the clinic
            slot["status"] = SlotStatus.FREE.value
            try:
                self._put(slot)
                return
            except _Stale:
                continue
        log.warning("fhir slot not freed slot=%s", slot_id)

    def _change(self, appointment_id: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Read, change and compare-and-set an Appointment, again when someone else wrote first."""
        for _ in range(_WRITE_TRIES):
            res = self._get("Appointment", appointment_id)
            change(res)
            try:
                return self._put(res)
            except _Stale:
                continue
        raise BackendUnavailable("fhir_contended")

    def cancel(self, appointment_id: str, *, reason: str = "", by: str = "patient") -> Appointment:
        return self._cancel(appointment_id, reason, by, None)

    def _cancel(self, appointment_id: str, reason: str, by: str, replaced_by: str | None) -> Appointment:
        def change(res: dict[str, Any]) -> None:
            if _status(res) not in ACTIVE_STATUSES:
                raise NotAllowed("not_active")
            res["status"] = AppointmentStatus.CANCELLED.value
            if reason:
                res["cancelationReason"] = {"text": reason}
            _set_ext(res, CANCELLED_BY_URL, valueString=by)
            if replaced_by:
                _set_ext(res, REPLACED_BY_URL, valueReference={"reference": f"Appointment/{replaced_by}"})

        updated = self._change(appointment_id, change)
        for slot in updated.get("slot") or []:
            if slot_id := _ref_id(slot, "Slot"):
                self._free_slot(slot_id)
        log.info("fhir cancelled appointment=%s", appointment_id)
        return self._appointment(updated)

    def reschedule(
        self, appointment_id: str, new_slot_id: str, *, holder: str | None = None, by: str = "patient"
    ) -> Appointment:
        old = self.appointment(appointment_id)
        if old is None:
            raise NotFound("not_found")
        if old.status not in ACTIVE_STATUSES:
            raise NotAllowed("not_active")
        new = self._book(new_slot_id, old.patient_id, old.visit_type, old.reason, holder, by, old.id, None)
        self._cancel(old.id, "rescheduled", by, new.id)
        return new

    def set_status(self, appointment_id: str, status: AppointmentStatus, *, by: str = "staff") -> Appointment:
        status = AppointmentStatus(status)
        if status == AppointmentStatus.CANCELLED:
            return self.cancel(appointment_id, by=by)

        def change(res: dict[str, Any]) -> None:
            current = _status(res)
            ended = current in (AppointmentStatus.CANCELLED, AppointmentStatus.ENTERED_IN_ERROR)
            if ended or (status in ACTIVE_STATUSES and current not in ACTIVE_STATUSES):
                raise NotAllowed("status_change_not_allowed")
            res["status"] = status.value
            _set_ext(res, STATUS_BY_URL, valueString=by)

        updated = self._change(appointment_id, change)
        if status == AppointmentStatus.ENTERED_IN_ERROR:
            for slot in updated.get("slot") or []:
                if slot_id := _ref_id(slot, "Slot"):
                    self._free_slot(slot_id)
        return self._appointment(updated)

    def confirm(self, appointment_id: str) -> Appointment:
        def change(res: dict[str, Any]) -> None:
            if _status(res) not in ACTIVE_STATUSES:
                raise NotAllowed("not_active")
            _set_ext(res, CONFIRMED_URL, valueBoolean=True)
            for p in res.get("participant") or []:
                if _ref_id(p.get("actor"), "Patient"):
                    p["status"] = "accepted"

        return self._appointment(self._change(appointment_id, change))

    # --- appointments -------------------------------------------------------------------------------

    def _appointment(self, res: dict[str, Any]) -> Appointment:
        actors = [p.get("actor") for p in res.get("participant") or []]
        patient_id = next((i for a in actors if (i := _ref_id(a, "Patient"))), "")
        pid = next((i for a in actors if (i := _ref_id(a, "Practitioner"))), "")
        lid = next((i for a in actors if (i := _ref_id(a, "Location"))), "")
        displays = {(a or {}).get("reference"): (a or {}).get("display", "") for a in actors}
        directory = self._directory()
        provider, location = directory.providers.get(pid), directory.locations.get(lid)
        codes = _codes(res.get("serviceType")) or _codes([res["appointmentType"]] if res.get("appointmentType") else [])
        reasons = [r.get("text") for r in res.get("reasonCode") or [] if r.get("text")]
        confirmed = _ext(res, CONFIRMED_URL)
        return Appointment(
            id=res["id"],
            patient_id=patient_id,
            slot_id=next((i for s in res.get("slot") or [] if (i := _ref_id(s, "Slot"))), ""),
            start=_parse_dt(res.get("start")),
            end=_parse_dt(res.get("end")),
            provider_id=pid,
            provider_name=provider.name if provider else displays.get(f"Practitioner/{pid}", ""),
            location_id=lid,
            location_name=location.name if location else displays.get(f"Location/{lid}", ""),
            visit_type=codes[0] if codes else "",
            status=_status(res) or AppointmentStatus.ENTERED_IN_ERROR,
            reason=reasons[0] if reasons else res.get("description", ""),
            replaces_id=_ref_id((_ext(res, REPLACES_URL) or {}).get("valueReference"), "Appointment"),
            replaced_by_id=_ref_id((_ext(res, REPLACED_BY_URL) or {}).get("valueReference"), "Appointment"),
            booked_by=(_ext(res, BOOKED_BY_URL) or {}).get("valueString", "patient"),
            confirmed=bool(confirmed and confirmed.get("valueBoolean")),
            created_at=_parse_dt(res.get("created")),
        )

    def _appointments(self, resources: Iterable[dict[str, Any]]) -> list[Appointment]:
        found = [self._appointment(r) for r in resources if r.get("start") and _status(r) is not None]
        return sorted(found, key=lambda a: (a.start, a.id))

    def appointment(self, appointment_id: str) -> Appointment | None:
        try:
            return self._appointment(self._get("Appointment", appointment_id))
        except NotFound:
            return None

    def appointments_for(
        self, patient_id: str, *, upcoming: bool = True, now: datetime | None = None
    ) -> list[Appointment]:
        now = _utc(now or datetime.now(UTC))
        params: dict[str, Any] = {"patient": f"Patient/{patient_id}"}
        if upcoming:
            params["date__gt"] = now
        found = self._appointments(self._search("appointments_for", "Appointment", params, sort="date"))
        if upcoming:
            found = [a for a in found if a.status in ACTIVE_STATUSES and a.start > now]
        return found

    def appointments_between(self, start: datetime, end: datetime, provider_id: str | None = None) -> list[Appointment]:
        params: dict[str, Any] = {"date__ge": _utc(start), "date__lt": _utc(end)}
        if provider_id:
            params["practitioner"] = f"Practitioner/{provider_id}"
        found = self._appointments(self._search("appointments_between", "Appointment", params, sort="date"))
        return [a for a in found if _utc(start) <= a.start < _utc(end)]

    # --- patients -----------------------------------------------------------------------------------

    @staticmethod
    def _patient(res: dict[str, Any]) -> Patient:
        return Patient(
            id=res["id"],
            name=_human_name(res),
            birth_date=date.fromisoformat(res["birthDate"]),
            phone=_phone(res) or None,
        )

    def patient(self, patient_id: str) -> Patient | None:
        try:
            res = self._get("Patient", patient_id)
        except NotFound:
            return None
        return self._patient(res) if res.get("birthDate") else None

    def find_patients(self, q: str, limit: int = 20) -> list[Patient]:
        key = name_key(q)
        if not key or limit <= 0:
            return []
        found = self._search_by_post(
            "find_patients",
            "Patient",
            {"name:contains": q.strip()},
            want=limit,
            keep=lambda r: bool(r.get("birthDate")) and key in name_key(_human_name(r)),
        )
        return sorted((self._patient(r) for r in found), key=lambda p: (name_key(p.name), p.id))

    def match_patient(self, name: str, birth_date: date) -> Patient | None:
        # Searched by date of birth only, then compared by name_key: servers differ in how their
        # name search treats accents, punctuation and a full name, and name_key is the contract.
        key = name_key(name)
        if not key:
            return None
        found = self._search_by_post(
            "match_patient",
            "Patient",
            {"birthdate": birth_date.isoformat()},
            keep=lambda r: r.get("active", True) and name_key(_human_name(r)) == key,
        )
        return self._patient(found[0]) if len(found) == 1 else None

    def create_patient(self, name: str, birth_date: date, phone: str | None) -> Patient:
        parts = name.split()
        if not parts:
            raise ValueError("a patient needs a name")
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "active": True,
            "name": [{"use": "official", "text": " ".join(parts), "family": parts[-1], "given": parts[:-1]}],
            "birthDate": birth_date.isoformat(),
        }
        if phone:
            resource["telecom"] = [{"system": "phone", "value": normalise_phone(phone) or phone, "use": "mobile"}]
        created = self._post(resource)
        log.info("fhir created patient=%s", created["id"])
        return self._patient(created)
