"""Staffed hours, service levels and the queue's order, offline."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from channels.pipeline import describe_opening
from channels.staff.desk import ServiceLevels
from channels.staff.shifts import StaffedHours
from channels.store import queue_score

NY = ZoneInfo("America/New_York")
HOURS = StaffedHours.parse("mon-fri 08:00-18:00; sat 09:00-12:00", "America/New_York")


@pytest.mark.parametrize(
    ("when", "open_now"),
    [
        (datetime(2026, 12, 3, 8, 0, tzinfo=NY), True),  # Thursday, at opening
        (datetime(2026, 12, 3, 17, 59, tzinfo=NY), True),
        (datetime(2026, 12, 3, 18, 0, tzinfo=NY), False),  # closing time is closed
        (datetime(2026, 12, 5, 11, 0, tzinfo=NY), True),  # Saturday morning
        (datetime(2026, 12, 5, 12, 30, tzinfo=NY), False),
        (datetime(2026, 12, 6, 10, 0, tzinfo=NY), False),  # Sunday
        (datetime(2026, 12, 3, 14, 0, tzinfo=ZoneInfo("UTC")), True),  # 09:00 in New York
    ],
)
def test_open_in_the_clinics_time_zone(when, open_now):
    assert HOURS.open_at(when) is open_now


@pytest.mark.parametrize(
    ("when", "opening"),
    [
        (datetime(2026, 12, 3, 19, 0, tzinfo=NY), datetime(2026, 12, 4, 8, 0, tzinfo=NY)),  # Thu evening → Fri
        (datetime(2026, 12, 5, 13, 0, tzinfo=NY), datetime(2026, 12, 7, 8, 0, tzinfo=NY)),  # Sat noon → Mon
        (datetime(2026, 12, 5, 6, 0, tzinfo=NY), datetime(2026, 12, 5, 9, 0, tzinfo=NY)),  # Sat early → Sat 9
    ],
)
def test_the_next_opening(when, opening):
    assert HOURS.next_open(when) == opening


def test_no_hours_means_always_staffed_and_a_range_may_wrap_the_week():
    assert StaffedHours.parse("", "UTC").open_at(datetime(2026, 12, 6, 3, 0, tzinfo=NY))
    weekend = StaffedHours.parse("sat-mon 00:00-24:00", "UTC")
    assert weekend.open_at(datetime(2026, 12, 7, 23, 59, tzinfo=ZoneInfo("UTC")))  # Monday
    assert not weekend.open_at(datetime(2026, 12, 8, 12, 0, tzinfo=ZoneInfo("UTC")))  # Tuesday


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("mon-fry 08:00-18:00", "unknown day"),
        ("mon-fri 8-18", "expected"),
        ("mon 18:00-08:00", "ends before it starts"),
    ],
)
def test_bad_hours_are_refused_with_the_reason(text, error):
    with pytest.raises(ValueError, match=error):
        StaffedHours.parse(text, "UTC")


def test_an_unknown_time_zone_is_refused():
    with pytest.raises(Exception, match="No time zone"):
        StaffedHours.parse("mon 08:00-09:00", "Mars/Olympus")


def test_the_opening_as_a_patient_reads_it():
    now = datetime.now(NY)
    assert describe_opening(now.replace(hour=8, minute=0)) == "today at 8:00 AM"
    later = datetime.fromordinal(now.toordinal() + 3).replace(hour=13, minute=30, tzinfo=NY)
    assert describe_opening(later) == f"{later.strftime('%A')} at 1:30 PM"


def test_service_levels_from_configuration():
    levels = ServiceLevels.parse("emergency=30,normal=600")
    assert (levels.for_priority("crisis"), levels.for_priority("urgent"), levels.for_priority("normal")) == (
        30,
        300,
        600,
    )
    with pytest.raises(ValueError, match="STAFF_SLA_SECONDS"):
        ServiceLevels.parse("soon=5")


def test_queue_order_priority_then_call_back_then_age():
    emergency_late = queue_score("emergency", 2_000_000_000)
    urgent_early = queue_score("urgent", 1_000_000_000)
    callback_late = queue_score("normal", 2_000_000_000, callback=True)
    normal_early = queue_score("normal", 1_000_000_000)
    assert emergency_late < urgent_early < callback_late < normal_early
