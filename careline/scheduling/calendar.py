"""The clinic's schedule as a data file (knowledge/clinic/schedule.yml, SCHEDULE_FILE) and the
bookable slots made from it.

`load_schedule` validates the file (a mistake is a ScheduleFileError naming the line and the field)
and brings the clinic tables in line with it; `generate_slots` turns the weekly templates, minus
exceptions and holidays, into slots for a window of days (wall-clock times in the clinic's time
zone, stored as UTC, correct across daylight-saving changes); `seed_demo_patients` adds the
fictional demo patients and their upcoming appointments; `ensure_schedule` does all three when the
gateway starts. Each is idempotent and, when nothing changed, only reads. A booked slot is never
changed or removed.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
from collections import defaultdict
from dataclasses import astuple, dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import and_, delete, exists, insert, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from careline.scheduling.model import SlotQuery, SlotStatus
from careline.scheduling.schema import (
    appointments,
    sched_exceptions,
    sched_locations,
    sched_providers,
    sched_slots,
    sched_templates,
    sched_visit_types,
)
from careline.scheduling.sql import utc

if TYPE_CHECKING:
    from careline.settings import SchedulingSettings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEMO_PATIENTS_FILE = "knowledge/clinic/demo_patients.yml"
WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "last": -1}
MONTHS = {
    m: i + 1
    for i, m in enumerate(
        "january february march april may june july august september october november december".split()
    )
}
BOOKERS = {"patient", "staff"}
TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
DAY_MINUTES = 24 * 60
SCHEDULE_LOCK_KEY = 0x7363_6865_6475_6C65  # pg_advisory_xact_lock of schedule changes ("schedule")


class ScheduleFileError(ValueError):
    """The schedule file is wrong; the message names the file, the line and the field."""


# --- the file ----------------------------------------------------------------------------------
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML with each mapping's line number under "__line__", 13:00 read as text (YAML 1.1 reads an
    unquoted 13:00 as the base-60 number 780) and dates left as text for _date to check."""


_Loader.yaml_implicit_resolvers = {  # dates stay text too, so a bad one is reported with its line
    first: [r for r in resolvers if r[0] not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)


def _mapping_with_line(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


@dataclass(frozen=True, order=True)
class Block:
    """A weekly template row: provider works at location on weekday, from start to end (minutes
    after midnight), in slots of slot_minutes for these visit types (comma-separated)."""

    provider_id: str
    location_id: str
    weekday: int
    start: int
    end: int
    slot_minutes: int
    visit_types: str
    valid_from: date | None = None
    valid_to: date | None = None


@dataclass(frozen=True, order=True)
class DayException:
    """A sched_exceptions row: kind closed (provider None: a holiday) or open (extra hours)."""

    on_date: date
    provider_id: str | None
    kind: str
    start: int | None
    end: int | None
    location_id: str | None = None
    slot_minutes: int | None = None
    visit_types: str | None = None
    reason: str = ""


@dataclass
class ScheduleFile:
    locations: dict[str, dict]
    providers: dict[str, dict]
    visit_types: dict[str, dict]
    blocks: list[Block]
    exceptions: list[DayException]


@dataclass(frozen=True)
class PlannedSlot:
    provider_id: str
    location_id: str
    start: datetime  # aware, UTC
    end: datetime
    visit_types: str


class _Where:
    """Where a value was read from, for error messages."""

    def __init__(self, source: str, item: dict, path: str):
        self.source, self.line, self.path = source, item.get("__line__", "?"), path

    def error(self, field: str, problem: str) -> ScheduleFileError:
        return ScheduleFileError(f"{self.source} line {self.line}: {self.path}.{field}: {problem}")


def read_yaml(path: Path) -> Any:
    try:
        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ScheduleFileError(f"{Path(path).name}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None


def parse_schedule(path: Path, years: tuple[int, ...]) -> ScheduleFile:
    """Read and check the schedule file; holidays are expanded to dates in `years`."""
    data = read_yaml(path)
    source = Path(path).name
    if not isinstance(data, dict):
        raise ScheduleFileError(f"{source}: expected locations, visit_types, providers, exceptions, holidays")
    unknown = set(data) - {"locations", "visit_types", "providers", "exceptions", "holidays", "__line__"}
    if unknown:
        raise ScheduleFileError(f"{source}: unknown section(s) {sorted(unknown)}")
    locations = _entities(data, "locations", source, {"name": str, "address": str, "phone": str})
    visit_types = {k: _visit_type(v, source) for k, v in _entities(data, "visit_types", source, {}).items()}
    providers = _entities(data, "providers", source, {"name": str, "role": str})
    schedule = ScheduleFile(locations, providers, visit_types, [], [])
    for pid, provider in providers.items():
        schedule.blocks += _blocks(schedule, pid, provider, source)
    _no_overlaps(schedule.blocks, source)
    for i, item in enumerate(_list(data, "exceptions", source)):
        schedule.exceptions.append(_exception(schedule, item, _Where(source, item, f"exceptions[{i}]")))
    for i, item in enumerate(_list(data, "holidays", source)):
        schedule.exceptions += _holiday(schedule, item, _Where(source, item, f"holidays[{i}]"), years)
    return schedule


def _list(data: dict, section: str, source: str) -> list[dict]:
    items = data.get(section) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ScheduleFileError(f"{source}: {section} must be a list of entries (- id: ...)")
    return items


def _entities(data: dict, section: str, source: str, text_fields: dict[str, type]) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for i, item in enumerate(_list(data, section, source)):
        where = _Where(source, item, f"{section}[{i}]")
        ident = item.get("id")
        if not isinstance(ident, str) or not re.fullmatch(r"[a-z0-9_-]{1,40}", ident):
            raise where.error("id", "needs an id of lower-case letters, digits, - or _ (at most 40)")
        if ident in found:
            raise where.error("id", f"{ident!r} is used twice")
        for field in text_fields:
            value = item.get(field, "")
            if not isinstance(value, str) or (field == "name" and not value.strip()):
                raise where.error(field, "must be text" + (" (required)" if field == "name" else ""))
        found[ident] = {**item, "where": where}
    if section != "providers" and not found:
        raise ScheduleFileError(f"{source}: {section} is empty")
    return found


def _visit_type(item: dict, source: str) -> dict:
    where = item["where"]
    minutes = item.get("minutes")
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 5 <= minutes <= 480:
        raise where.error("minutes", "must be a whole number of minutes (5 to 480)")
    bookable = item.get("bookable_by", ["patient", "staff"])
    if not isinstance(bookable, list) or not bookable or set(bookable) - BOOKERS:
        raise where.error("bookable_by", "must be a list of patient and/or staff")
    for flag in ("new_patients", "telehealth"):
        if not isinstance(item.get(flag, False), bool):
            raise where.error(flag, "must be true or false")
    return {
        **item,
        "minutes": minutes,
        "bookable_by": ",".join(b for b in ("patient", "staff") if b in bookable),
        "new_patients": item.get("new_patients", True),
        "telehealth": item.get("telehealth", False),
    }


def _minutes(where: _Where, field: str, value: Any, required: bool = True) -> int | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not TIME.match(value.strip()):
        raise where.error(field, f'must be a time "HH:MM" (24-hour, in quotes), not {value!r}')
    hours, minutes = value.strip().split(":")
    return int(hours) * 60 + int(minutes)


def _hours(schedule: ScheduleFile, item: dict, where: _Where) -> tuple[str, int, int, int, str]:
    """The fields a block of hours has: location, from, to, slot_minutes, visit_types."""
    location = item.get("location")
    if location not in schedule.locations:
        raise where.error("location", f"unknown location {location!r} (known: {sorted(schedule.locations)})")
    start, end = _minutes(where, "from", item.get("from")), _minutes(where, "to", item.get("to"))
    slot = item.get("slot_minutes")
    if not isinstance(slot, int) or isinstance(slot, bool) or not 5 <= slot <= 480:
        raise where.error("slot_minutes", "must be a whole number of minutes (5 to 480)")
    if end - start < slot:
        raise where.error("to", "the block must be at least one slot long, after `from`")
    kinds = item.get("visit_types")
    if not isinstance(kinds, list) or not kinds:
        raise where.error("visit_types", "must be a list of visit type ids")
    for kind in kinds:
        if kind not in schedule.visit_types:
            raise where.error("visit_types", f"unknown visit type {kind!r} (known: {sorted(schedule.visit_types)})")
        if schedule.visit_types[kind]["minutes"] > slot:
            minutes = schedule.visit_types[kind]["minutes"]
            raise where.error("visit_types", f"{kind!r} takes {minutes} minutes, longer than the {slot}-minute slots")
    return location, start, end, slot, ",".join(kinds)


def _date(where: _Where, field: str, value: Any, required: bool = True) -> date | None:
    if value is None and not required:
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise where.error(field, f"must be a date YYYY-MM-DD, not {value!r}") from None


def _blocks(schedule: ScheduleFile, pid: str, provider: dict, source: str) -> list[Block]:
    blocks = []
    for i, item in enumerate(provider.get("hours") or []):
        where = _Where(source, item, f"providers[{pid}].hours[{i}]")
        location, start, end, slot, kinds = _hours(schedule, item, where)
        days = item.get("days")
        if not isinstance(days, list) or not days or any(d not in WEEKDAYS for d in days):
            raise where.error("days", f"must be a list of {list(WEEKDAYS)}")
        valid = (
            _date(where, "valid_from", item.get("valid_from"), False),
            _date(where, "valid_to", item.get("valid_to"), False),
        )
        blocks += [Block(pid, location, WEEKDAYS[d], start, end, slot, kinds, *valid) for d in days]
    return blocks


def _no_overlaps(blocks: list[Block], source: str) -> None:
    by_day = defaultdict(list)
    for b in blocks:
        by_day[(b.provider_id, b.weekday)].append(b)
    for (pid, weekday), day in by_day.items():
        day.sort(key=lambda b: b.start)
        for a, b in zip(day, day[1:], strict=False):
            if b.start < a.end and (a.valid_to is None or b.valid_from is None or b.valid_from <= a.valid_to):
                name = list(WEEKDAYS)[weekday]
                raise ScheduleFileError(f"{source}: providers[{pid}].hours: two blocks overlap on {name}")


def _exception(schedule: ScheduleFile, item: dict, where: _Where) -> DayException:
    provider = item.get("provider")
    if provider not in schedule.providers:
        raise where.error("provider", f"unknown provider {provider!r} (known: {sorted(schedule.providers)})")
    on = _date(where, "date", item.get("date"))
    reason = str(item.get("reason", ""))[:120]
    kind = item.get("kind")
    if kind == "closed":
        start, end = _minutes(where, "from", item.get("from"), False), _minutes(where, "to", item.get("to"), False)
        return DayException(on, provider, "closed", start, end, reason=reason)
    if kind == "open":
        location, start, end, slot, kinds = _hours(schedule, item, where)
        return DayException(on, provider, "open", start, end, location, slot, kinds, reason)
    raise where.error("kind", "must be closed (a day off) or open (extra hours)")


def _holiday(schedule: ScheduleFile, item: dict, where: _Where, years: tuple[int, ...]) -> list[DayException]:
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise where.error("name", "a holiday needs a name")
    location = item.get("location")
    if location is not None and location not in schedule.locations:
        raise where.error("location", f"unknown location {location!r}")
    start, end = _minutes(where, "from", item.get("from"), False), _minutes(where, "to", item.get("to"), False)
    given = [k for k in ("date", "yearly", "rule") if k in item]
    if len(given) != 1:
        raise where.error("date", "give exactly one of date, yearly or rule")
    offset = item.get("offset_days", 0)
    if not isinstance(offset, int):
        raise where.error("offset_days", "must be a whole number of days")
    if given == ["date"]:
        days = [_date(where, "date", item["date"])]
    else:
        days = [d + timedelta(days=offset) for d in (_holiday_on(where, item, given[0], y) for y in years)]
    return [DayException(d, None, "closed", start, end, location, reason=name[:120]) for d in days]


def _holiday_on(where: _Where, item: dict, kind: str, year: int) -> date:
    if kind == "yearly":
        try:
            month, day = (int(p) for p in str(item["yearly"]).split("-"))
            return date(year, month, day)
        except ValueError:
            raise where.error("yearly", f'must be "MM-DD", not {item["yearly"]!r}') from None
    try:
        return nth_weekday(str(item["rule"]), year)
    except ValueError as exc:
        raise where.error("rule", str(exc)) from None


def nth_weekday(rule: str, year: int) -> date:
    """ "fourth thursday of november" -> that date in `year`."""
    words = rule.lower().split()
    if len(words) != 4 or words[2] != "of" or words[0] not in ORDINALS or words[3] not in MONTHS:
        raise ValueError(f'must read "<first|second|third|fourth|last> <weekday> of <month>", not {rule!r}')
    weekday = next((n for k, n in WEEKDAYS.items() if words[1].startswith(k)), None)
    if weekday is None:
        raise ValueError(f"unknown weekday {words[1]!r}")
    month, nth = MONTHS[words[3]], ORDINALS[words[0]]
    if nth == -1:
        last = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
        return last - timedelta(days=(last.weekday() - weekday) % 7)
    first = date(year, month, 1)
    found = first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (nth - 1))
    if found.month != month:
        raise ValueError(f"there is no {rule!r} in {year}")
    return found


# --- expansion (pure) --------------------------------------------------------------------------
def local_to_utc(day: date, minutes: int, tz: ZoneInfo) -> datetime | None:
    """A wall-clock time on `day` as UTC; None for a time the clock skips (spring forward)."""
    naive = datetime.combine(day, time()) + timedelta(minutes=minutes)
    aware = naive.replace(tzinfo=tz)
    if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        return None
    return aware.astimezone(UTC)


def _closes(closure: DayException, provider: str, location: str, start: int, end: int) -> bool:
    return (
        closure.provider_id in (None, provider)
        and closure.location_id in (None, location)
        and start < (closure.end if closure.end is not None else DAY_MINUTES)
        and end > (closure.start or 0)
    )


def plan_slots(
    blocks: list[Block], exceptions: list[DayException], tz: ZoneInfo, start: date, days: int
) -> list[PlannedSlot]:
    """The slots of [start, start + days) in the clinic's time zone: the weekly blocks plus extra
    hours, minus closures, earliest first. One slot per provider and start."""
    weekly, on_date = defaultdict(list), defaultdict(list)
    for b in blocks:
        weekly[b.weekday].append(b)
    for e in exceptions:
        on_date[e.on_date].append(e)
    planned: dict[tuple[str, datetime], PlannedSlot] = {}
    for n in range(days):
        day = start + timedelta(days=n)
        rows = [b for b in weekly[day.weekday()] if (b.valid_from or day) <= day <= (b.valid_to or day)]
        rows += [_as_block(e, day) for e in on_date[day] if e.kind == "open"]
        closed = [e for e in on_date[day] if e.kind == "closed"]
        for b in rows:
            for s in range(b.start, b.end - b.slot_minutes + 1, b.slot_minutes):
                e = s + b.slot_minutes
                if any(_closes(c, b.provider_id, b.location_id, s, e) for c in closed):
                    continue
                begin, finish = local_to_utc(day, s, tz), local_to_utc(day, e, tz)
                if begin is not None and finish is not None:
                    slot = PlannedSlot(b.provider_id, b.location_id, begin, finish, b.visit_types)
                    planned.setdefault((b.provider_id, begin), slot)
    return sorted(planned.values(), key=lambda p: (p.start, p.provider_id))


def _as_block(e: DayException, day: date) -> Block:
    return Block(e.provider_id, e.location_id, day.weekday(), e.start, e.end, e.slot_minutes, e.visit_types)


# --- the database ------------------------------------------------------------------------------
def load_schedule(engine: Engine, path: Path | str, today: date | None = None) -> dict:
    """Validate the file and bring the clinic tables in line with it (idempotent; only reads when
    nothing changed). Holidays are expanded for this year and the next. Providers no longer in
    the file are made inactive (their past appointments keep naming them)."""
    today = today or date.today()
    schedule = parse_schedule(Path(path), (today.year, today.year + 1))
    for attempt in (1, 2):  # two loaders at once: the loser of an insert reads again
        try:
            with engine.begin() as conn:
                return _store(conn, schedule)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _one_at_a_time(conn: Connection) -> None:
    """PostgreSQL: schedule changes wait for each other (two gateways starting together), so one
    replacing the templates cannot miss the rows the other just inserted. SQLite has one writer."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEDULE_LOCK_KEY})


def _store(conn: Connection, schedule: ScheduleFile) -> dict:
    _one_at_a_time(conn)
    changes = {
        "locations": _upsert(conn, sched_locations, _rows(schedule.locations, ("name", "address", "phone"))),
        "visit_types": _upsert(
            conn,
            sched_visit_types,
            _rows(schedule.visit_types, ("name", "minutes", "bookable_by", "new_patients", "telehealth")),
        ),
        "providers": _upsert(
            conn,
            sched_providers,
            {k: {**v, "active": True} for k, v in _rows(schedule.providers, ("name", "role")).items()},
        ),
    }
    gone = conn.execute(
        update(sched_providers)
        .where(sched_providers.c.id.not_in(list(schedule.providers)), sched_providers.c.active.is_(True))
        .values(active=False)
    ).rowcount
    changes["providers"] += gone
    changes["templates"] = _replace(conn, sched_templates, [_template_row(b) for b in schedule.blocks])
    changes["exceptions"] = _replace(conn, sched_exceptions, [_exception_row(e) for e in schedule.exceptions])
    if any(changes.values()):
        log.info("schedule loaded: %s", changes)
    return changes


def _rows(entities: dict[str, dict], fields: tuple[str, ...]) -> dict[str, dict]:
    return {k: {f: v.get(f, "") for f in fields} for k, v in entities.items()}


def _upsert(conn: Connection, table, wanted: dict[str, dict]) -> int:
    """Insert or update rows by id; the number changed."""
    columns = [table.c[c] for c in next(iter(wanted.values()), {})]
    have = {r.id: dict(r._mapping) for r in conn.execute(select(table.c.id, *columns))}
    changed = 0
    for ident, values in wanted.items():
        if ident not in have:
            conn.execute(insert(table).values(id=ident, **values))
        elif {k: have[ident][k] for k in values} != values:
            conn.execute(update(table).where(table.c.id == ident).values(**values))
        else:
            continue
        changed += 1
    return changed


def _template_row(b: Block) -> dict:
    return {
        "provider_id": b.provider_id,
        "location_id": b.location_id,
        "weekday": b.weekday,
        "start_time": _hhmm(b.start),
        "end_time": _hhmm(b.end),
        "slot_minutes": b.slot_minutes,
        "visit_types": b.visit_types,
        "valid_from": b.valid_from,
        "valid_to": b.valid_to,
    }


def _exception_row(e: DayException) -> dict:
    row = {k: v for k, v in zip(DayException.__dataclass_fields__, astuple(e), strict=True)}
    row["start_time"], row["end_time"] = _hhmm(row.pop("start")), _hhmm(row.pop("end"))
    return row


def _hhmm(minutes: int | None) -> str | None:
    return None if minutes is None else f"{minutes // 60:02d}:{minutes % 60:02d}"


def _replace(conn: Connection, table, wanted: list[dict]) -> int:
    """Replace every row when the set differs (these tables have no natural key); the rows added."""
    fields = list(wanted[0]) if wanted else [c.name for c in table.c if c.name != "id"]
    have = sorted(
        tuple(_plain(getattr(r, f)) for f in fields) for r in conn.execute(select(*[table.c[f] for f in fields]))
    )
    if have == sorted(tuple(_plain(w[f]) for f in fields) for w in wanted):
        return 0
    conn.execute(delete(table))
    if wanted:
        conn.execute(insert(table), wanted)
    return len(wanted)


def _plain(value: Any) -> Any:
    """Comparable across drivers and None (sorting mixes None with values)."""
    return (value is not None, "" if value is None else str(value))


def _read_calendar(conn: Connection, start: date, days: int) -> tuple[list[Block], list[DayException]]:
    active = {r.id for r in conn.execute(select(sched_providers.c.id).where(sched_providers.c.active.is_(True)))}
    blocks = [
        Block(
            r.provider_id,
            r.location_id,
            r.weekday,
            _mins(r.start_time),
            _mins(r.end_time),
            r.slot_minutes,
            r.visit_types,
            r.valid_from,
            r.valid_to,
        )
        for r in conn.execute(select(sched_templates))
        if r.provider_id in active
    ]
    rows = conn.execute(
        select(sched_exceptions).where(
            sched_exceptions.c.on_date >= start, sched_exceptions.c.on_date < start + timedelta(days=days)
        )
    )
    exceptions = [
        DayException(
            r.on_date,
            r.provider_id,
            r.kind,
            _mins(r.start_time),
            _mins(r.end_time),
            r.location_id,
            r.slot_minutes,
            r.visit_types,
            r.reason,
        )
        for r in rows
        if r.provider_id is None or r.provider_id in active
    ]
    return blocks, exceptions


def _mins(hhmm: str | None) -> int | None:
    if hhmm is None:
        return None
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def generate_slots(engine: Engine, timezone: str, start: date, days: int, now: datetime | None = None) -> int:
    """Make the slots of [start, start + days) (clinic time zone) from the templates minus the
    exceptions and holidays: the number made. Idempotent. Free, unheld future slots that are no
    longer planned (a new holiday or day off) are removed; booked slots are never touched."""
    return sync_slots(engine, timezone, start, days, now)["created"]


def sync_slots(engine: Engine, timezone: str, start: date, days: int, now: datetime | None = None) -> dict:
    """generate_slots, with every count: created, updated, removed, blocked, unchanged."""
    for attempt in (1, 2):  # two generators at once: uq_sched_slots_provider_start stops one; read again
        try:
            with engine.begin() as conn:
                return _sync(conn, ZoneInfo(timezone), start, days, now or datetime.now(UTC))
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _sync(conn: Connection, tz: ZoneInfo, start: date, days: int, now: datetime) -> dict:
    _one_at_a_time(conn)
    blocks, exceptions = _read_calendar(conn, start, days)
    planned = {(p.provider_id, p.start): p for p in plan_slots(blocks, exceptions, tz, start, days)}
    low = datetime.combine(start, time(), tz).astimezone(UTC)
    high = datetime.combine(start + timedelta(days=days), time(), tz).astimezone(UTC)
    existing = {
        (r.provider_id, utc(r.start)): r
        for r in conn.execute(select(sched_slots).where(sched_slots.c.start >= low, sched_slots.c.start < high))
    }
    counts = {"created": 0, "updated": 0, "removed": 0, "blocked": 0, "unchanged": 0}
    kept = defaultdict(list)
    for key, row in existing.items():
        if key in planned:
            counts["unchanged" if _refresh(conn, row, planned[key]) == 0 else "updated"] += 1
        elif _removable(row, now):
            counts[_remove(conn, row)] += 1
            continue
        kept[row.provider_id].append((utc(row.start), utc(row.end)))
    for intervals in kept.values():
        intervals.sort()
    new = [p for k, p in planned.items() if k not in existing and not _overlaps(kept[p.provider_id], p)]
    if new:
        rows = [{**_slot_values(p), "status": SlotStatus.FREE, "version": 0} for p in new]
        conn.execute(insert(sched_slots), rows)
    counts["created"] = len(new)
    _forget_expired_holds(conn, [r for r in existing.values() if r.hold_token is not None], now)
    if counts["created"] or counts["updated"] or counts["removed"] or counts["blocked"]:
        log.info("slots %s..%s: %s", start, start + timedelta(days=days), counts)
    return counts


def _forget_expired_holds(conn: Connection, held: list, now: datetime) -> None:
    """A hold names a conversation (its pseudonym): once it has run out, it is not kept."""
    expired = [r.id for r in held if r.hold_until is None or utc(r.hold_until) <= now]
    if expired:
        conn.execute(
            update(sched_slots)
            .where(sched_slots.c.id.in_(expired), sched_slots.c.hold_until <= now)
            .values(hold_token=None, hold_until=None)
        )


def _slot_values(p: PlannedSlot) -> dict:
    return {
        "provider_id": p.provider_id,
        "location_id": p.location_id,
        "start": p.start,
        "end": p.end,
        "visit_types": p.visit_types,
    }


def _refresh(conn: Connection, row, planned: PlannedSlot) -> int:
    """A free slot follows a changed template (location, length, visit types); a taken one stays."""
    if row.status != SlotStatus.FREE:
        return 0
    if (row.location_id, utc(row.end), row.visit_types) == (planned.location_id, planned.end, planned.visit_types):
        return 0
    return conn.execute(
        update(sched_slots)
        .where(
            sched_slots.c.id == row.id, sched_slots.c.status == SlotStatus.FREE, sched_slots.c.version == row.version
        )
        .values(**_slot_values(planned), version=sched_slots.c.version + 1)
    ).rowcount


def _removable(row, now: datetime) -> bool:
    held = row.hold_token is not None and row.hold_until is not None and utc(row.hold_until) > now
    return row.status == SlotStatus.FREE and not held and utc(row.start) > now


def _remove(conn: Connection, row) -> str:
    """Delete a free slot no longer planned; one that appointments still name (cancelled ones) is
    blocked instead (busy-unavailable), as the foreign key requires."""
    free = and_(
        sched_slots.c.id == row.id, sched_slots.c.status == SlotStatus.FREE, sched_slots.c.version == row.version
    )
    named = exists().where(appointments.c.slot_id == row.id)
    if conn.execute(select(named)).scalar():
        conn.execute(
            update(sched_slots).where(free).values(status=SlotStatus.BUSY_UNAVAILABLE, version=row.version + 1)
        )
        return "blocked"
    conn.execute(delete(sched_slots).where(free))
    return "removed"


def _overlaps(kept: list[tuple[datetime, datetime]], p: PlannedSlot) -> bool:
    """Does a new slot overlap one that stays (booked under an older template)?"""
    i = bisect.bisect_left(kept, (p.end,))  # kept is sorted: the ones before i start before p ends
    return any(s < p.end and e > p.start for s, e in kept[max(0, i - 3) : i])


# --- demo patients and the whole start-up --------------------------------------------------------
def seed_demo_patients(
    engine: Engine, path: Path | str, secret: str, *, timezone: str | None = None, today: date | None = None
) -> dict:
    """Add the fictional demo patients (idempotent, by name and date of birth) and, for one with
    no upcoming appointment, the appointments the file lists, days from today. Fixes a demo
    patient's phone_key after CONVERSATION_SECRET changed."""
    from careline.scheduling import identity
    from careline.scheduling.sql import SqlScheduler

    scheduler = SqlScheduler(engine, timezone=timezone, secret=secret)
    today = today or datetime.now(scheduler.tz).date()
    counts = {"patients": 0, "appointments": 0}
    for i, item in enumerate(_list(read_yaml(Path(path)) or {}, "patients", Path(path).name)):
        where = _Where(Path(path).name, item, f"patients[{i}]")
        born = _date(where, "birth_date", item.get("birth_date"))
        patient = scheduler.match_patient(str(item.get("name", "")), born)
        if patient is None:
            patient = scheduler.create_patient(str(item["name"]), born, item.get("phone"))
            counts["patients"] += 1
        elif patient.phone and secret:
            _fix_phone_key(engine, int(patient.id), identity.phone_key(secret, patient.phone))
        if not scheduler.appointments_for(patient.id):
            counts["appointments"] += _book_demo(scheduler, patient.id, item.get("appointments") or [], today, where)
    return counts


def _fix_phone_key(engine: Engine, patient_id: int, key: str) -> None:
    from careline.scheduling.schema import patients

    with engine.connect() as conn:
        if conn.execute(select(patients.c.phone_key).where(patients.c.id == patient_id)).scalar() == key:
            return
    with engine.begin() as conn:
        conn.execute(update(patients).where(patients.c.id == patient_id).values(phone_key=key))


def _book_demo(scheduler, patient_id: str, wanted: list[dict], today: date, where: _Where) -> int:
    booked = 0
    for item in wanted:
        if item.get("visit_type") is None:
            raise where.error("appointments.visit_type", "each demo appointment needs a visit_type")
        minutes = _minutes(where, "appointments.time", item.get("time", "09:00"))
        begin = local_to_utc(today + timedelta(days=int(item.get("in_days", 1))), minutes, scheduler.tz)
        if begin is None:
            continue
        query = SlotQuery(
            start=begin,
            end=begin + timedelta(days=14),
            visit_type=item.get("visit_type"),
            provider_id=item.get("provider"),
            limit=1,
        )
        slots = scheduler.find_slots(query)
        if not slots:
            log.warning("no free slot for a demo appointment (%s, %s)", item.get("provider"), item.get("visit_type"))
            continue
        scheduler.book(
            slots[0].id, patient_id, item["visit_type"], reason=item.get("reason", ""), booked_by="staff:demo"
        )
        booked += 1
    return booked


def schedule_path(file: str | Path) -> Path:
    """SCHEDULE_FILE as given when absolute, else under CARELINE_ROOT (or this checkout)."""
    path = Path(file)
    return path if path.is_absolute() else Path(os.environ.get("CARELINE_ROOT") or ROOT) / path


def ensure_schedule(
    engine: Engine, settings: SchedulingSettings, timezone: str, today: date | None = None, secret: str | None = None
) -> dict:
    """At start-up: load the schedule file, make SCHEDULE_DAYS_AHEAD days of slots from today,
    and add the demo patients unless CARELINE_ENV=production. Fast when nothing changed."""
    today = today or datetime.now(ZoneInfo(timezone)).date()
    result = {"schedule": load_schedule(engine, schedule_path(settings.schedule_file), today)}
    result["slots"] = sync_slots(engine, timezone, today, settings.schedule_days_ahead)
    if os.environ.get("CARELINE_ENV", "development") != "production":
        demo = schedule_path(DEMO_PATIENTS_FILE)
        if demo.exists():
            secret = secret if secret is not None else os.environ.get("CONVERSATION_SECRET", "")
            result["demo"] = seed_demo_patients(engine, demo, secret, timezone=timezone, today=today)
    return result
