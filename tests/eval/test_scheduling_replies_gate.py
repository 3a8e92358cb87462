"""Evaluation gate of careline.scheduling.parse on the replies patients type while booking.

The development set was written from how people write to clinics and booking bots (SMS shorthand,
typos, older adults, parents, non-native English), before and independently of the parser. The
held-out set is never read here. Thresholds sit about 5 points under the measured dev figures."""

import json
from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest

from careline.scheduling.parse import (
    parse_birth_date,
    parse_choice,
    parse_day,
    parse_name,
    parse_preferences,
    parse_yes_no,
)

DEV = Path(__file__).resolve().parent / "scheduling_replies_dev.jsonl"
# As careline/scheduling/dialogue.py passes them: a provider's name and role, a location's name and
# address (knowledge/clinic/schedule.yml), so "the nurse practitioner" and "the one on Lakeview" match.
PROVIDERS = [
    ("patel", "Dr. Maya Patel Family physician"),
    ("okafor", "Dr. James Okafor Family physician"),
    ("reyes", "Ana Reyes, NP Nurse practitioner"),
    ("brooks", "Daniel Brooks, PA Physician assistant"),
]
LOCATIONS = [
    ("main", "Maplewood Main 1200 Oak Street, Maplewood"),
    ("east", "Maplewood East 45 Lakeview Drive, Maplewood"),
]
CHOICES = 4  # three slots and "Other times"

# Measured dev accuracy (274 cases), first as written: day 0.887, birth_date 0.956, preferences 0.825,
# choice 0.861, yes_no 0.929, name 0.594; after fixing mechanisms (names inside longer replies, days
# just gone by, misspelt day words, roles and addresses, hedged yes/no): day 0.984, birth_date 0.956,
# preferences 0.895, choice 0.861, yes_no 1.0, name 1.0; then (the second day of "Dec 10 or 11",
# "3:30 or later", a 2-digit year after a month in words): birth_date 1.0, preferences 0.927.
# Thresholds about 5 points under.
THRESHOLDS = {
    "day": 0.93,
    "birth_date": 0.95,
    "preferences": 0.88,
    "choice": 0.81,
    "yes_no": 0.95,
    "name": 0.95,
}


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def date_answer(answer) -> dict:
    got = {"kind": answer.kind}
    if answer.kind == "date" and answer.value is not None:
        got["date"] = answer.value.isoformat()
    return got


def preferences(prefs) -> dict:
    """The parser's Preferences in the set's vocabulary; empty values left out."""
    got = {
        "weekdays": sorted(prefs.weekdays),
        "days": sorted(d.isoformat() for d in prefs.days),
        "parts_of_day": sorted(prefs.parts_of_day),
        "after": prefs.after_time.strftime("%H:%M") if prefs.after_time else None,
        "before": prefs.before_time.strftime("%H:%M") if prefs.before_time else None,
        "asap": prefs.asap or None,
        "provider": prefs.provider_id,
        "location": prefs.location_id,
    }
    return {key: value for key, value in got.items() if value}


# Keys the patient did not mention must stay empty; unmentioned time bounds and asap are not judged.
MUST_BE_EMPTY = ("weekdays", "days", "parts_of_day", "provider", "location")


def preferences_match(expected: dict, got: dict) -> bool:
    for key, value in expected.items():
        if isinstance(value, list):
            if sorted(got.get(key, [])) != sorted(value):
                return False
        elif got.get(key) != value:
            return False
    return all(key in expected or key not in got for key in MUST_BE_EMPTY)


def run_case(case: dict) -> tuple[bool, object]:
    text, today, expected = case["text"], date.fromisoformat(case["today"]), case["expected"]
    field = case["field"]
    if field == "day":
        got = date_answer(parse_day(text, today))
        return got == expected, got
    if field == "birth_date":
        got = date_answer(parse_birth_date(text, today))
        return got == expected, got
    if field == "preferences":
        got = preferences(parse_preferences(text, today, PROVIDERS, LOCATIONS))
        return preferences_match(expected, got), got
    if field == "choice":
        got = parse_choice(text, CHOICES)
        return got == expected["index"], {"index": got}
    if field == "yes_no":
        got = parse_yes_no(text)
        return got == expected["answer"], {"answer": got}
    if field == "name":
        got = parse_name(text)
        return got == expected["name"], {"name": got}
    raise ValueError(f"unknown field {field}")


def evaluate(cases: list[dict]) -> tuple[dict[str, float], list[dict]]:
    right: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    failures = []
    for case in cases:
        ok, got = run_case(case)
        total[case["field"]] += 1
        right[case["field"]] += ok
        if not ok:
            failures.append({"id": case["id"], "text": case["text"], "expected": case["expected"], "got": got})
    return {field: right[field] / total[field] for field in total}, failures


@pytest.fixture(scope="module")
def dev_cases() -> list[dict]:
    return load(DEV)


def test_dev_set_size_and_mix(dev_cases):
    assert len(dev_cases) >= 200
    fields = [c["field"] for c in dev_cases]
    for field in THRESHOLDS:
        assert fields.count(field) >= 25, field
    assert {"sms", "web", "older", "parent", "non_native", "typo"} <= {c["voice"] for c in dev_cases}
    assert len({c["id"] for c in dev_cases}) == len(dev_cases)


def test_scheduling_replies_gate(dev_cases):
    accuracy, failures = evaluate(dev_cases)
    for field, value in sorted(accuracy.items()):
        print(f"{field:12s} {value:.3f}")
    below = {field: value for field, value in accuracy.items() if value < THRESHOLDS[field]}
    assert not below, (below, failures)
