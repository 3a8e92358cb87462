"""What patients type while booking, read by careline/scheduling/parse.py: one table per reader.

TODAY is Tuesday, December 1, 2026 unless a case says otherwise."""

from __future__ import annotations

from datetime import date, time

import pytest

from careline.scheduling.parse import (
    DateAnswer,
    Preferences,
    parse_birth_date,
    parse_choice,
    parse_day,
    parse_name,
    parse_preferences,
    parse_yes_no,
    wants_back,
    wants_person,
    wants_stop,
)

TODAY = date(2026, 12, 1)
assert TODAY.weekday() == 1  # a Tuesday


def d(month: int, day: int, year: int = 2026) -> date:
    return date(year, month, day)


# --- parse_day ----------------------------------------------------------------------------------

DAYS = [
    ("today", DateAnswer("date", d(12, 1))),
    ("Tonight", DateAnswer("date", d(12, 1))),
    ("tomorrow", DateAnswer("date", d(12, 2))),
    ("tmrw pls", DateAnswer("date", d(12, 2))),
    ("the day after tomorrow", DateAnswer("date", d(12, 3))),
    ("tuesday", DateAnswer("date", d(12, 1))),  # a bare weekday: today counts
    ("Wednesday", DateAnswer("date", d(12, 2))),
    ("monday", DateAnswer("date", d(12, 7))),
    ("next tuesday", DateAnswer("date", d(12, 8))),  # the Tuesday of next week
    ("next thursday", DateAnswer("date", d(12, 10))),
    ("this friday", DateAnswer("date", d(12, 4))),
    ("on the 5th", DateAnswer("date", d(12, 5))),
    ("the 1st", DateAnswer("date", d(12, 1))),
    ("on the 30th", DateAnswer("date", d(12, 30))),
    ("Dec 5", DateAnswer("date", d(12, 5))),
    ("5 December", DateAnswer("date", d(12, 5))),
    ("december 5th", DateAnswer("date", d(12, 5))),
    ("December the fifth", DateAnswer("date", d(12, 5))),
    ("the fifth of january", DateAnswer("date", d(1, 5, 2027))),
    ("12/5", DateAnswer("date", d(12, 5))),  # US month/day
    ("1/4", DateAnswer("date", d(1, 4, 2027))),  # no year: the next one
    ("nov 30", DateAnswer("past", d(11, 30, 2026))),  # yesterday, not next year's (a day gone by)
    ("2026-12-05", DateAnswer("date", d(12, 5))),
    ("12/5/2026", DateAnswer("date", d(12, 5))),
    ("January 8, 2027", DateAnswer("date", d(1, 8, 2027))),
    ("25/12", DateAnswer("date", d(12, 25))),  # only day/month can be a date
    ("in 3 days", DateAnswer("date", d(12, 4))),
    ("a week from today", DateAnswer("date", d(12, 8))),
    ("tuesday next week", DateAnswer("date", d(12, 8))),
    ("next week on friday", DateAnswer("date", d(12, 11))),
    ("Tuesday, December 8", DateAnswer("date", d(12, 8))),
    ("Tuesday Dec 9", DateAnswer("impossible", d(12, 9), "weekday_mismatch")),
    ("the 31st of February", DateAnswer("impossible", None, "no_such_day")),
    ("feb 30th", DateAnswer("impossible", None, "no_such_day")),
    ("april 31", DateAnswer("impossible", None, "no_such_day")),
    ("13/45", DateAnswer("impossible", None, "no_such_month")),
    ("the 32nd", DateAnswer("impossible", None, "no_such_day")),
    ("2026-13-01", DateAnswer("impossible", None, "no_such_month")),
    ("feb 29", DateAnswer("impossible", None, "no_such_day")),  # the coming February has no 29th
    ("2028-02-29", DateAnswer("date", d(2, 29, 2028))),
    ("2/29/2027", DateAnswer("impossible", None, "no_such_day")),
    ("yesterday", DateAnswer("past", d(11, 30))),
    ("last friday", DateAnswer("past", d(11, 27))),
    ("2020-01-01", DateAnswer("past", d(1, 1, 2020))),
    ("monday, no wait, thursday", DateAnswer("date", d(12, 3))),  # the last day named wins
    ("no, Wednesday instead", DateAnswer("date", d(12, 2))),
    ("actually friday", DateAnswer("date", d(12, 4))),
    ("December 5th at 3pm", DateAnswer("date", d(12, 5))),
    ("not monday", DateAnswer("none")),
    ("next week", DateAnswer("none")),
    ("whenever", DateAnswer("none")),
    ("after 3pm", DateAnswer("none")),
    ("I may be free", DateAnswer("none")),
    ("", DateAnswer("none")),
]


@pytest.mark.parametrize(("text", "expected"), DAYS, ids=[t or "empty" for t, _ in DAYS])
def test_parse_day(text, expected):
    assert parse_day(text, TODAY) == expected


def test_parse_day_on_a_sunday_and_at_the_end_of_the_year():
    sunday = date(2026, 12, 27)
    assert parse_day("next tuesday", sunday).value == date(2026, 12, 29)
    assert parse_day("sunday", sunday).value == sunday
    assert parse_day("jan 2", sunday).value == date(2027, 1, 2)
    assert parse_day("the 3rd", sunday).value == date(2027, 1, 3)
    assert parse_day("the 31st", date(2027, 4, 2)).value == date(2027, 5, 31)  # April has no 31st


# --- parse_birth_date ---------------------------------------------------------------------------

BIRTH_DATES = [
    ("03/14/1985", DateAnswer("date", d(3, 14, 1985))),
    ("3/14/85", DateAnswer("date", d(3, 14, 1985))),
    ("3-14-85", DateAnswer("date", d(3, 14, 1985))),
    ("14 March 1985", DateAnswer("date", d(3, 14, 1985))),
    ("March 14, 1985", DateAnswer("date", d(3, 14, 1985))),
    ("march 14th 1985", DateAnswer("date", d(3, 14, 1985))),
    ("March fourteenth, 1985", DateAnswer("date", d(3, 14, 1985))),
    ("1985-03-14", DateAnswer("date", d(3, 14, 1985))),
    ("14/03/1985", DateAnswer("date", d(3, 14, 1985))),  # day > 12: day first
    ("14.03.1985", DateAnswer("date", d(3, 14, 1985))),
    ("born on the 14th of March 1985", DateAnswer("date", d(3, 14, 1985))),
    ("it's 7/4/1990", DateAnswer("date", d(7, 4, 1990))),
    ("1/2/03", DateAnswer("date", d(1, 2, 2003))),
    ("12/25/25", DateAnswer("date", d(12, 25, 2025))),
    ("12/2/26", DateAnswer("date", d(12, 2, 1926))),  # 2026-12-02 is tomorrow: 19xx
    ("1/1/30", DateAnswer("date", d(1, 1, 1930))),
    ("2/29/2000", DateAnswer("date", d(2, 29, 2000))),
    ("02/29/2028", DateAnswer("future", d(2, 29, 2028))),
    ("02/30/1990", DateAnswer("impossible", None, "no_such_day")),
    ("2/29/1900", DateAnswer("impossible", None, "no_such_day")),
    ("2/29/1999", DateAnswer("impossible", None, "no_such_day")),
    ("13/13/1990", DateAnswer("impossible", None, "no_such_month")),
    ("April 31 1980", DateAnswer("impossible", None, "no_such_day")),
    ("1/1/2030", DateAnswer("future", d(1, 1, 2030))),
    ("12/2/2026", DateAnswer("future", d(12, 2, 2026))),
    ("1/1/1900", DateAnswer("impossible", d(1, 1, 1900), "too_old")),
    ("12/1/1906", DateAnswer("date", d(12, 1, 1906))),  # 120 years exactly
    ("11/30/1906", DateAnswer("impossible", d(11, 30, 1906), "too_old")),
    ("March 14", DateAnswer("none", None, "missing_year")),
    ("jan 5th 78", DateAnswer("date", d(1, 5, 1978))),  # the month in words, two digits of year
    ("5 January '78", DateAnswer("date", d(1, 5, 1978))),
    ("march 3rd 05", DateAnswer("date", d(3, 3, 2005))),
    ("March 14 at 10", DateAnswer("none", None, "missing_year")),  # a time, not a year
    ("March 14 10:30", DateAnswer("none", None, "missing_year")),
    ("I don't know", DateAnswer("none")),
    ("1985", DateAnswer("none")),
]


@pytest.mark.parametrize(("text", "expected"), BIRTH_DATES, ids=[t for t, _ in BIRTH_DATES])
def test_parse_birth_date(text, expected):
    assert parse_birth_date(text, TODAY) == expected


# --- parse_preferences --------------------------------------------------------------------------

PROVIDERS = [
    ("patel", "Dr. Maya Patel"),
    ("okafor", "Dr. James Okafor"),
    ("reyes", "Ana Reyes, NP"),
    ("lee", "Dr. Sam Lee"),
    ("early", "Dr. June Early"),
]
LOCATIONS = [("main", "Maplewood Main"), ("east", "Maplewood East"), ("downtown", "Downtown Office")]
NEXT_WEEK = frozenset(d(12, 7 + i) for i in range(7))
P = Preferences

PREFERENCES = [
    ("Tuesday morning", P(weekdays=frozenset({1}), parts_of_day=frozenset({"morning"}))),
    ("mornings", P(parts_of_day=frozenset({"morning"}))),
    ("any afternoon next week", P(days=NEXT_WEEK, parts_of_day=frozenset({"afternoon"}))),
    ("next week", P(days=NEXT_WEEK)),
    ("next week but not monday", P(days=NEXT_WEEK - {d(12, 7)})),
    ("tuesday or thursday next week", P(days=frozenset({d(12, 8), d(12, 10)}))),
    ("mondays next week", P(days=frozenset({d(12, 7)}))),
    ("tomorrow or friday", P(days=frozenset({d(12, 2), d(12, 4)}))),
    ("Dec 10", P(days=frozenset({d(12, 10)}))),
    ("next tuesday evening", P(days=frozenset({d(12, 8)}), parts_of_day=frozenset({"evening"}))),
    ("this weekend", P(days=frozenset({d(12, 5), d(12, 6)}))),
    ("weekends", P(weekdays=frozenset({5, 6}))),
    ("mon-fri", P(weekdays=frozenset(range(5)))),
    ("tuesdays or thursdays after 4", P(weekdays=frozenset({1, 3}), after_time=time(16))),
    ("after 3pm", P(after_time=time(15))),
    ("after 3", P(after_time=time(15))),  # clinic hours: 3 is 3 pm
    ("before 10", P(before_time=time(10))),
    ("not before 9:30am", P(after_time=time(9, 30))),
    ("no later than 4pm", P(before_time=time(16))),
    ("between 10 and 2", P(after_time=time(10), before_time=time(14))),
    ("2-4pm", P(after_time=time(14), before_time=time(16))),
    ("11-1pm", P(after_time=time(11), before_time=time(13))),
    ("around 3:30", P(after_time=time(14, 30), before_time=time(16, 30))),
    ("3:30 or later", P(after_time=time(15, 30))),
    ("9 or earlier", P(before_time=time(9, 1))),  # 9:00 itself is fine
    ("dec 10 or 11", P(days=frozenset({d(12, 10), d(12, 11)}))),
    ("january 4th & 5th", P(days=frozenset({d(1, 4, 2027), d(1, 5, 2027)}))),
    ("dec 10 or later", P(not_before=d(12, 10))),  # a day, not 10 o'clock
    ("Jan 5 or later", P(not_before=d(1, 5, 2027))),
    ("dec 10 onwards", P(not_before=d(12, 10))),
    ("dec 10 at 3 or later", P(days=frozenset({d(12, 10)}), after_time=time(15))),
    ("the 5th at 10am", P(days=frozenset({d(12, 5)}), after_time=time(9), before_time=time(11))),
    ("after lunch", P(after_time=time(13))),
    ("by noon", P(before_time=time(12))),
    ("tuesday am", P(weekdays=frozenset({1}), parts_of_day=frozenset({"morning"}))),
    ("first thing tomorrow", P(days=frozenset({d(12, 2)}), parts_of_day=frozenset({"morning"}))),
    ("not mornings", P(parts_of_day=frozenset({"afternoon", "evening"}))),
    ("not Monday", P(weekdays=frozenset({1, 2, 3, 4, 5, 6}))),
    ("any day but friday", P(weekdays=frozenset({0, 1, 2, 3, 5, 6}), asap=True)),
    ("after dec 5", P(not_before=d(12, 6))),
    ("from the 10th", P(not_before=d(12, 10))),
    ("not this week", P(not_before=d(12, 7))),
    ("before friday", P(days=frozenset({d(12, 1), d(12, 2), d(12, 3)}))),
    ("with Dr Lee", P(provider_id="lee")),
    ("Dr. Patel please", P(provider_id="patel")),
    ("lee", P(provider_id="lee")),
    ("with maya", P(provider_id="patel")),
    ("Ana Reyes, the NP", P(provider_id="reyes")),
    ("early morning", P(parts_of_day=frozenset({"morning"}))),  # not Dr. Early: the word is the parser's
    ("with dr early", P(provider_id="early")),
    ("not with dr lee, okafor", P(provider_id="okafor")),
    ("at the downtown office", P(location_id="downtown")),
    ("the East location on friday", P(weekdays=frozenset({4}), location_id="east")),
    ("maplewood", P()),  # both locations have it
    ("asap", P(asap=True)),
    ("earliest", P(asap=True)),
    ("soonest you have", P(asap=True)),
    ("whenever", P(asap=True)),
    ("first available with Dr Okafor", P(asap=True, provider_id="okafor")),
    ("actually Tuesday", P(weekdays=frozenset({1}))),
    ("no, Wednesday instead", P(weekdays=frozenset({2}))),
    ("feb 30", P(impossible="no_such_day")),
    ("13/45 at 2pm", P(after_time=time(13), before_time=time(15), impossible="no_such_month")),
    ("yesterday", P(impossible="past")),
    ("ok", P()),
    ("", P()),
]


@pytest.mark.parametrize(("text", "expected"), PREFERENCES, ids=[t or "empty" for t, _ in PREFERENCES])
def test_parse_preferences(text, expected):
    assert parse_preferences(text, TODAY, PROVIDERS, LOCATIONS) == expected


def test_no_providers_or_locations_means_no_match():
    assert parse_preferences("with Dr Lee at the downtown office", TODAY) == P()


MERGES = [
    # a correction replaces the day and keeps the time of day
    ("Monday morning", "actually Tuesday", P(weekdays=frozenset({1}), parts_of_day=frozenset({"morning"}))),
    ("Monday morning", "afternoon instead", P(weekdays=frozenset({0}), parts_of_day=frozenset({"afternoon"}))),
    ("Monday with Dr Lee", "Dr. Patel", P(weekdays=frozenset({0}), provider_id="patel")),
    ("tuesday", "asap", P(asap=True)),
    ("asap", "with Dr Lee", P(asap=True, provider_id="lee")),
    ("next week mornings", "after 10", P(days=NEXT_WEEK, after_time=time(10))),
    ("tuesday at the east office", "tomorrow", P(days=frozenset({d(12, 2)}), location_id="east")),
    ("tuesday", "feb 30", P(weekdays=frozenset({1}), impossible="no_such_day")),
]


@pytest.mark.parametrize(("first", "then", "expected"), MERGES)
def test_merge_keeps_what_the_correction_does_not_name(first, then, expected):
    older = parse_preferences(first, TODAY, PROVIDERS, LOCATIONS)
    assert older.merge(parse_preferences(then, TODAY, PROVIDERS, LOCATIONS)) == expected


# --- parse_choice -------------------------------------------------------------------------------

CHOICES = [
    ("2", 3, 1),
    ("#2", 3, 1),
    ("option 2", 3, 1),
    ("Option 3 please", 3, 2),
    ("number two", 3, 1),
    ("no. 1", 3, 0),
    ("slot 3", 3, 2),
    ("the second", 3, 1),
    ("2nd one", 3, 1),
    ("I'll take the 3rd", 3, 2),
    ("first", 3, 0),
    ("the first one please", 3, 0),
    ("one", 3, 0),
    ("two", 3, 1),
    ("the last one", 3, 2),
    ("last", 5, 4),
    ("the middle one", 3, 1),
    ("3.", 3, 2),
    ("yes 2", 3, 1),
    ("not the first, the second", 3, 1),
    ("4", 3, None),  # out of range
    ("0", 3, None),
    ("the fifth", 3, None),
    ("2pm", 3, None),  # a time, not a number in the list
    ("the one at 3pm", 3, None),
    ("the 2:30 one", 3, None),
    ("1 or 2", 3, None),
    ("that one", 3, None),
    ("first available", 3, None),
    ("last week", 3, None),
    ("the middle one", 4, None),
    ("hello", 3, None),
    ("2", 0, None),
]


@pytest.mark.parametrize(("text", "count", "expected"), CHOICES)
def test_parse_choice(text, count, expected):
    assert parse_choice(text, count) == expected


# --- parse_yes_no -------------------------------------------------------------------------------

YES_NO = [
    ("yes", True),
    ("Yeah", True),
    ("yep!", True),
    ("sure", True),
    ("Sure thing", True),
    ("ok", True),
    ("okay 👍", True),
    ("correct", True),
    ("that's right", True),
    ("confirm", True),
    ("please do", True),
    ("go ahead", True),
    ("sounds good", True),
    ("👍", True),
    ("no problem", True),
    ("no", False),
    ("No.", False),
    ("nope", False),
    ("nah", False),
    ("don't", False),
    ("please don't", False),
    ("cancel that", False),
    ("wrong", False),
    ("that's not right", False),
    ("no thanks", False),
    ("👎", False),
    ("not sure", None),
    ("I don't know", None),
    ("maybe", None),
    ("stop", None),
    ("hello", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), YES_NO)
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) is expected


# --- parse_name ---------------------------------------------------------------------------------

NAMES = [
    ("my name is Jane Doe", "Jane Doe"),
    ("Jane Doe", "Jane Doe"),
    ("it's jane o'neil", "Jane O'Neil"),
    ("I'm José García-López", "José García-López"),
    ("JANE DOE", "Jane Doe"),
    ("Hi, my name is Mary-Kate van der Berg.", "Mary-Kate van der Berg"),
    ("maria de la cruz", "Maria de la Cruz"),
    ("yes it's John Smith", "John Smith"),
    ("Jane Doe here", "Jane Doe"),
    ("name: Jane Doe", "Jane Doe"),
    ("J. R. R. Tolkien", "J. R. R. Tolkien"),
    ("Sean O\u2019Connor", "Sean O'Connor"),
    ("call me Jane Doe", "Jane Doe"),
    ("Jane", None),  # a full name is needed
    ("my name is Jane", None),
    ("jane doe 123", "Jane Doe"),  # what follows the name (a date of birth) is not part of it
    ("I want to book", None),
    ("tuesday morning", None),
    ("a b c d e f g", None),  # more than six words
    ("Anna Maria Luisa de la Cruz Fernández", None),
    ("jane@example.com", None),
    ("ok", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), NAMES)
def test_parse_name(text, expected):
    assert parse_name(text) == expected


# --- going back, a person, stopping -------------------------------------------------------------

BACK = [
    ("go back", True),
    ("Back", True),
    ("previous", True),
    ("undo", True),
    ("wait, go back please", True),
    ("can we go back to the previous step", True),
    ("my back hurts", False),
    ("back pain", False),
    ("I'm back", False),
    ("call me back", False),
]


@pytest.mark.parametrize(("text", "expected"), BACK)
def test_wants_back(text, expected):
    assert wants_back(text) is expected


PERSON = [
    ("talk to a person", True),
    ("can I speak with someone", True),
    ("agent", True),
    ("HUMAN", True),
    ("receptionist please", True),
    ("the front desk", True),
    ("call me", True),
    ("can someone call me back?", True),
    ("call me tomorrow", True),
    ("call me Jane", False),  # a name, not a request
    ("are you a human?", False),
    ("I don't want to talk to anyone", False),
    ("tuesday morning", False),
]


@pytest.mark.parametrize(("text", "expected"), PERSON)
def test_wants_person(text, expected):
    assert wants_person(text) is expected


STOP = [
    ("stop booking", True),
    ("never mind", True),
    ("Nevermind.", True),
    ("forget it", True),
    ("cancel this", True),
    ("I'll do it later", True),
    ("stop please", True),
    ("cancel my appointment", False),  # a cancellation, not the end of a booking
    ("cancel this appointment", False),
    ("STOP", False),  # the SMS opt-out keyword, handled by the channel
    ("stop", False),
    ("quit", False),
    ("never mind, tuesday works", False),  # a correction
    ("forget it, the second one", False),
    ("tuesday", False),
]


@pytest.mark.parametrize(("text", "expected"), STOP)
def test_wants_stop(text, expected):
    assert wants_stop(text) is expected
