"""The weekly templates turned into slots (careline/scheduling/calendar.py, plan_slots): daylight
saving time, holidays, days off and extra hours; and the schedule file's checks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from careline.scheduling.calendar import (
    Block,
    DayException,
    ScheduleFileError,
    local_to_utc,
    nth_weekday,
    parse_schedule,
    plan_slots,
)
from tests.helpers import ROOT

TZ = ZoneInfo("America/New_York")
SCHEDULE = ROOT / "knowledge" / "clinic" / "schedule.yml"


def block(weekday: int, start: str, end: str, slot: int = 20, provider: str = "p", location: str = "main", **kw):
    def minutes(hhmm: str) -> int:
        return int(hhmm[:2]) * 60 + int(hhmm[3:])

    return Block(provider, location, weekday, minutes(start), minutes(end), slot, kw.pop("kinds", "follow_up"), **kw)


def closed(on: date, provider=None, location=None, start=None, end=None) -> DayException:
    return DayException(on, provider, "closed", start, end, location)


def local_times(slots) -> list[str]:
    return [s.start.astimezone(TZ).strftime("%a %m-%d %H:%M") for s in slots]


# --- daylight saving time --------------------------------------------------------------------------
def test_a_week_across_the_end_of_daylight_saving_keeps_the_wall_clock():
    monday = date(2026, 10, 26)  # clocks go back on Sunday 1 November 2026
    slots = plan_slots([block(0, "09:00", "10:00")], [], TZ, monday, 14)
    assert local_times(slots) == ["Mon 10-26 09:00", "Mon 10-26 09:20", "Mon 10-26 09:40"] + [
        "Mon 11-02 09:00",
        "Mon 11-02 09:20",
        "Mon 11-02 09:40",
    ]
    assert slots[0].start == datetime(2026, 10, 26, 13, 0, tzinfo=UTC)  # EDT, UTC-4
    assert slots[3].start == datetime(2026, 11, 2, 14, 0, tzinfo=UTC)  # EST, UTC-5
    assert all(s.end - s.start == timedelta(minutes=20) and s.start.tzinfo == UTC for s in slots)


def test_the_hour_the_clock_skips_has_no_slots_and_the_repeated_hour_has_one_set():
    spring = plan_slots([block(6, "01:00", "04:00", slot=30)], [], TZ, date(2027, 3, 14), 1)
    assert local_times(spring) == ["Sun 03-14 01:00", "Sun 03-14 03:00", "Sun 03-14 03:30"]
    autumn = plan_slots([block(6, "00:30", "02:00", slot=30)], [], TZ, date(2026, 11, 1), 1)
    assert len(autumn) == 3 and len({s.start for s in autumn}) == 3
    assert autumn[1].start == datetime(2026, 11, 1, 5, 0, tzinfo=UTC)  # 01:00 the first time (EDT)


def test_local_to_utc():
    assert local_to_utc(date(2026, 12, 24), 13 * 60, TZ) == datetime(2026, 12, 24, 18, 0, tzinfo=UTC)
    assert local_to_utc(date(2027, 3, 14), 150, TZ) is None


# --- holidays, days off, extra hours --------------------------------------------------------------
@pytest.mark.parametrize(
    "exception, left",
    [
        (closed(date(2026, 12, 25)), []),  # the whole clinic
        (closed(date(2026, 12, 25), provider="p"), ["q main 09:00", "q main 09:20", "r east 09:00", "r east 09:20"]),
        (closed(date(2026, 12, 25), location="east"), ["p main 09:00", "p main 09:20", "q main 09:00", "q main 09:20"]),
        (closed(date(2026, 12, 25), start=9 * 60 + 20), ["p main 09:00", "q main 09:00", "r east 09:00"]),
        (closed(date(2026, 12, 25), end=9 * 60 + 20), ["p main 09:20", "q main 09:20", "r east 09:20"]),
        (  # a closure touching both of q's slots takes both
            closed(date(2026, 12, 25), provider="q", start=9 * 60 + 10, end=9 * 60 + 30),
            ["p main 09:00", "p main 09:20", "r east 09:00", "r east 09:20"],
        ),
        (closed(date(2026, 12, 26)), None),  # another day: everything stays
    ],
)
def test_closures_take_out_the_slots_they_touch(exception, left):
    blocks = [
        block(4, "09:00", "09:40", provider=p, location=loc) for p, loc in (("p", "main"), ("q", "main"), ("r", "east"))
    ]
    slots = plan_slots(blocks, [exception], TZ, date(2026, 12, 25), 1)  # a Friday
    got = sorted(f"{s.provider_id} {s.location_id} {s.start.astimezone(TZ):%H:%M}" for s in slots)
    everything = ["p main 09:00", "p main 09:20", "q main 09:00", "q main 09:20", "r east 09:00", "r east 09:20"]
    assert got == sorted(everything if left is None else left)


def test_closing_early_takes_out_a_slot_that_would_run_past_the_closing_time():
    eve = closed(date(2026, 12, 24), start=13 * 60)
    slots = plan_slots([block(3, "12:00", "14:00", slot=40)], [eve], TZ, date(2026, 12, 24), 1)
    assert local_times(slots) == ["Thu 12-24 12:00"]  # 12:40-13:20 overlaps the closing


def test_extra_hours_add_slots_on_that_day_only():
    extra = DayException(date(2026, 12, 22), "p", "open", 17 * 60, 18 * 60, "main", 20, "same_day_sick")
    slots = plan_slots([block(1, "09:00", "09:20")], [extra], TZ, date(2026, 12, 15), 14)
    assert local_times(slots) == [
        "Tue 12-15 09:00",
        "Tue 12-22 09:00",
        "Tue 12-22 17:00",
        "Tue 12-22 17:20",
        "Tue 12-22 17:40",
    ]
    assert {s.visit_types for s in slots if s.start.astimezone(TZ).hour == 17} == {"same_day_sick"}


def test_blocks_apply_between_their_valid_dates():
    b = block(0, "09:00", "09:20", valid_from=date(2026, 12, 14), valid_to=date(2026, 12, 21))
    assert local_times(plan_slots([b], [], TZ, date(2026, 12, 7), 28)) == ["Mon 12-14 09:00", "Mon 12-21 09:00"]


def test_a_block_fills_whole_slots_only():
    assert local_times(plan_slots([block(0, "09:00", "10:30", slot=40)], [], TZ, date(2026, 12, 14), 1)) == [
        "Mon 12-14 09:00",
        "Mon 12-14 09:40",
    ]


@pytest.mark.parametrize(
    "rule, year, expected",
    [
        ("fourth thursday of november", 2026, date(2026, 11, 26)),
        ("last monday of may", 2027, date(2027, 5, 31)),
        ("first monday of september", 2026, date(2026, 9, 7)),
        ("last friday of december", 2026, date(2026, 12, 25)),
        ("second tuesday of february", 2027, date(2027, 2, 9)),
    ],
)
def test_nth_weekday(rule, year, expected):
    assert nth_weekday(rule, year) == expected


@pytest.mark.parametrize("rule", ["fifth monday of february", "fourth thursday in november", "third funday of may"])
def test_nth_weekday_refuses(rule):
    with pytest.raises(ValueError):
        nth_weekday(rule, 2027)


# --- the schedule file ----------------------------------------------------------------------------
def test_the_sample_schedule_matches_the_clinics_published_hours():
    """knowledge/clinic/hours.md, telehealth.md and holidays.md, which the assistant answers from."""
    schedule = parse_schedule(SCHEDULE, (2026, 2027))
    opening = {  # location -> weekday -> (open, close) in minutes
        "main": {**{d: (8 * 60, 18 * 60) for d in range(5)}, 5: (9 * 60, 13 * 60)},
        "east": {**{d: (8 * 60 + 30, 17 * 60) for d in range(5)}, 3: (8 * 60 + 30, 19 * 60)},
    }
    for b in schedule.blocks:
        hours = opening[b.location_id].get(b.weekday)
        assert hours and hours[0] <= b.start and b.end <= hours[1], b
        if "telehealth" in b.visit_types.split(","):
            assert b.weekday < 5 and 8 * 60 <= b.start and b.end <= 17 * 60, b
    holidays = {(e.on_date, e.location_id, e.start) for e in schedule.exceptions if e.provider_id is None}
    for day in (date(2026, 12, 25), date(2027, 1, 1), date(2027, 7, 4), date(2026, 11, 26), date(2027, 5, 31)):
        assert (day, None, None) in holidays
    assert (date(2026, 12, 24), None, 13 * 60) in holidays and (date(2026, 12, 31), None, 13 * 60) in holidays
    assert (date(2026, 11, 27), "east", None) in holidays  # the day after Thanksgiving, East only
    kinds = schedule.visit_types
    assert kinds["new_patient"]["minutes"] == 40 and kinds["procedure"]["bookable_by"] == "staff"
    assert len(schedule.providers) >= 3


GOOD = """
locations:
  - {id: main, name: Main}
visit_types:
  - {id: short, name: Short, minutes: 20}
  - {id: long, name: Long, minutes: 40, bookable_by: [staff]}
providers:
  - id: p
    name: Dr. P
    hours:
      - {location: main, days: [mon], from: "09:00", to: 12:00, slot_minutes: 20, visit_types: [short]}
exceptions: []
holidays: []
"""


def write(tmp_path, text: str):
    path = tmp_path / "schedule.yml"
    path.write_text(text)
    return path


def test_a_good_file_and_an_unquoted_time(tmp_path):
    schedule = parse_schedule(write(tmp_path, GOOD), (2026,))
    assert schedule.blocks == [Block("p", "main", 0, 540, 720, 20, "short")]  # to: 12:00 unquoted is still noon
    assert schedule.visit_types["long"]["bookable_by"] == "staff"


@pytest.mark.parametrize(
    "old, new, expected",
    [
        (
            "visit_types: [short]}",
            "visit_types: [shrot]}",
            "line 11: providers[p].hours[0].visit_types: unknown visit type 'shrot'",
        ),
        ("visit_types: [short]}", "visit_types: [long]}", "'long' takes 40 minutes, longer than the 20-minute slots"),
        ('from: "09:00"', 'from: "9am"', 'providers[p].hours[0].from: must be a time "HH:MM"'),
        ("location: main, days", "location: mian, days", "providers[p].hours[0].location: unknown location 'mian'"),
        ("days: [mon]", "days: [monday]", "providers[p].hours[0].days: must be a list of"),
        ("slot_minutes: 20", "slot_minutes: 0", "slot_minutes: must be a whole number"),
        ("to: 12:00", 'to: "09:10"', "providers[p].hours[0].to: the block must be at least one slot long"),
        ("minutes: 20}", "minutes: twenty}", "line 5: visit_types[0].minutes: must be a whole number"),
        ("bookable_by: [staff]", "bookable_by: [robots]", "visit_types[1].bookable_by"),
        ("- {id: main, name: Main}", "- {id: Main Street, name: Main}", "locations[0].id: needs an id"),
        (
            "exceptions: []",
            "exceptions: [{provider: q, date: 2026-12-01, kind: closed}]",
            "exceptions[0].provider: unknown provider 'q'",
        ),
        (
            "exceptions: []",
            "exceptions: [{provider: p, date: 2026-13-01, kind: closed}]",
            "exceptions[0].date: must be a date",
        ),
        (
            "exceptions: []",
            "exceptions: [{provider: p, date: 2026-12-01, kind: shut}]",
            "exceptions[0].kind: must be closed",
        ),
        (
            "holidays: []",
            "holidays: [{name: X, date: 2026-12-25, yearly: '12-25'}]",
            "holidays[0].date: give exactly one of",
        ),
        ("holidays: []", "holidays: [{name: X, rule: last moonday of may}]", "holidays[0].rule: unknown weekday"),
        ("holidays: []", "holidays: [{name: X, yearly: '13-01'}]", 'holidays[0].yearly: must be "MM-DD"'),
        ("holidays: []", "holidays: [{yearly: '12-25'}]", "holidays[0].name: a holiday needs a name"),
        ("holidays: []", "holidays: []\nbreaks: []", "unknown section(s) ['breaks']"),
        ("holidays: []", "holidays: [", "not valid YAML"),
    ],
)
def test_mistakes_name_the_line_and_the_field(tmp_path, old, new, expected):
    assert old in GOOD
    with pytest.raises(ScheduleFileError) as caught:
        parse_schedule(write(tmp_path, GOOD.replace(old, new, 1)), (2026,))
    assert expected in str(caught.value) and "schedule.yml" in str(caught.value)


def test_overlapping_blocks_of_one_provider_are_refused(tmp_path):
    second = '{location: main, days: [mon], from: "11:00", to: "13:00", slot_minutes: 20, visit_types: [short]}'
    text = GOOD.replace("visit_types: [short]}", f"visit_types: [short]}}\n      - {second}")
    with pytest.raises(ScheduleFileError, match=r"providers\[p\].hours: two blocks overlap on mon"):
        parse_schedule(write(tmp_path, text), (2026,))
