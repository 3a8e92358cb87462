"""Reading what patients type while booking: a day, a date of birth, when they would like to come
(day, time, provider, location), a choice from a list, yes or no, a full name, and the wish to go
back, to stop or to talk to a person.

Pure functions: no model, no network, no clock (the caller passes `today`, in the clinic's time
zone). Every rule is a case in tests/unit/careline/scheduling/test_parse.py. Conventions, chosen
once:

- Numeric dates are US month/day ("12/5" is December 5), unless the first number cannot be a month
  and the second can ("14/03/1985" is March 14). A numeric date with "-" or "." needs a year
  ("3-14-85"): without one, "2-4" is more often a time than a date.
- A weekday alone ("tuesday", "this tuesday") is its next occurrence, today included: on a
  Tuesday, "tuesday" is today. "next tuesday" is the Tuesday of next week (weeks start on Monday);
  "last tuesday" is in the past.
- A day and month without a year is their next occurrence on or after today ("Feb 29" waits for a
  leap year). Two-digit years are 20yy for an appointment; for a birth date 20yy unless that is
  in the future, then 19yy.
- Clock hours without am/pm are read as clinic hours: 1 to 6 are pm, 7 to 11 am ("after 3" is
  15:00, "before 10" is 10:00). `after_time` is inclusive, `before_time` exclusive; "at 3" and
  "around 3" ask for 14:00 to 16:00.
- When a text names several days, the last one wins in parse_day: a correction ("no, Wednesday
  instead") carries the new value. "not Monday" names no day.
- Reason codes, never text: no_such_day, no_such_month, weekday_mismatch ("Tuesday, December 9"
  when the 9th is a Wednesday), past, too_old, missing_year.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from calendar import monthrange
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any

from careline.scheduling.identity import name_key

# --- words -----------------------------------------------------------------------------------

MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9,
    "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}  # fmt: skip
WEEKDAYS = {
    "monday": 0, "mon": 0, "tuesday": 1, "tues": 1, "tue": 1, "wednesday": 2, "weds": 2, "wed": 2,
    "thursday": 3, "thurs": 3, "thur": 3, "thu": 3, "friday": 4, "fri": 4, "saturday": 5, "sat": 5,
    "sunday": 6, "sun": 6,
}  # fmt: skip
CARDINALS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}  # fmt: skip
_UNIT_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth")
_TEEN_ORDINALS = ("tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth")
_TEEN_ORDINALS += ("seventeenth", "eighteenth", "nineteenth")
ALL_WEEKDAYS = frozenset(range(7))
PARTS_OF_DAY = frozenset({"morning", "afternoon", "evening"})


def _ordinal_words() -> dict[str, int]:
    """ "first" -> 1 ... "thirty-first" -> 31, also spelt "twenty first" and "twentyfirst"."""
    words = {w: i + 1 for i, w in enumerate(_UNIT_ORDINALS)}
    words |= {w: i + 10 for i, w in enumerate(_TEEN_ORDINALS)}
    words |= {"twentieth": 20, "thirtieth": 30}
    for tens, base in (("twenty", 20), ("thirty", 30)):
        for i, unit in enumerate(_UNIT_ORDINALS[: 9 if base == 20 else 1]):
            for sep in (" ", "-", ""):
                words[f"{tens}{sep}{unit}"] = base + i + 1
    return words


ORDINAL_WORDS = _ordinal_words()


def _alternation(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_MON = _alternation(MONTHS)
_WD = _alternation(WEEKDAYS)
_ORD = _alternation(ORDINAL_WORDS)
_CARD = _alternation(CARDINALS)


def _norm(text: str | None) -> str:
    """Lower case, one space between words, typographic apostrophes made plain."""
    text = unicodedata.normalize("NFKC", text or "").lower().replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.split())


_DAY_WORDS = (
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "mondays", "tuesdays",
    "wednesdays", "thursdays", "fridays", "saturdays", "sundays", "morning", "mornings", "afternoon",
    "afternoons", "evening", "evenings", "tomorrow",
)  # fmt: skip


def _spelled(norm: str) -> str:
    """Misspelt day and time-of-day words put right ("wendsday", "thrusday", "mornigs",
    "afternon"): a word of 5 letters or more within one or two slips of exactly one of them."""
    words = []
    for word in norm.split(" "):
        bare = word.strip(".,!?;:")
        if len(bare) >= 5 and bare.isalpha() and bare not in _DAY_WORDS:
            close = difflib.get_close_matches(bare, _DAY_WORDS, n=2, cutoff=0.8)
            if len(close) == 1 or (len(close) == 2 and close[0].rstrip("s") == close[1].rstrip("s")):
                word = word.replace(bare, close[0])
        words.append(word)
    return " ".join(words)


# --- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DateAnswer:
    kind: str  # "date" | "impossible" | "past" | "none" (and "future" from parse_birth_date)
    value: date | None = None
    detail: str = ""  # a reason code: no_such_day, no_such_month, weekday_mismatch, too_old, missing_year


NONE = DateAnswer("none")


def _impossible(detail: str, value: date | None = None) -> DateAnswer:
    return DateAnswer("impossible", value, detail)


def _calendar_date(year: int, month: int, day: int) -> DateAnswer:
    if not 1 <= month <= 12:
        return _impossible("no_such_month")
    if not 1 <= year <= 9999 or not 1 <= day <= monthrange(year, month)[1]:
        return _impossible("no_such_day")
    return DateAnswer("date", date(year, month, day))


RECENTLY_PAST_DAYS = 90  # "Dec 1st" said on Dec 3 is a day gone by, not next year's


def _next_occurrence(month: int, day: int, today: date) -> DateAnswer:
    """Month and day without a year: this year's if it is still to come; a day gone by in the
    last RECENTLY_PAST_DAYS is past; else next year's. Feb 29 is impossible when the February
    meant has none."""
    if not 1 <= month <= 12:
        return _impossible("no_such_month")
    if not 1 <= day <= (29 if month == 2 else monthrange(2001, month)[1]):
        return _impossible("no_such_day")
    for year in (today.year, today.year + 1):
        if year > 9999:
            break
        if day > monthrange(year, month)[1]:
            if date(year, month, 1) >= today.replace(day=1):
                return _impossible("no_such_day")  # Feb 29 of a year without one
            continue
        wanted = date(year, month, day)
        if wanted >= today:
            return DateAnswer("date", wanted)
        if (today - wanted).days <= RECENTLY_PAST_DAYS:
            return DateAnswer("past", wanted)
    return _impossible("no_such_day")


def _next_day_of_month(day: int, today: date) -> DateAnswer:
    """ "the 5th": this month's if it is still to come, else the next month that has that day."""
    if not 1 <= day <= 31:
        return _impossible("no_such_day")
    year, month = today.year, today.month
    for _ in range(13):
        if day <= monthrange(year, month)[1] and date(year, month, day) >= today:
            return DateAnswer("date", date(year, month, day))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        if year > 9999:
            break
    return _impossible("no_such_day")


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _years_before(day: date, years: int) -> date:
    if day.year - years < 1:
        return date.min
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # February 29
        return day.replace(year=day.year - years, day=28)


# --- dates written out: 2026-12-05, 12/5, 3-14-85, Dec 5, the 5th of December -----------------

_ISO = re.compile(r"(?<![\d/.-])(?P<y>\d{4})[-/.](?P<a>\d{1,2})[-/.](?P<b>\d{1,2})(?!\d)")
_NUMERIC = re.compile(
    r"(?<![\d/.:-])(?P<a>\d{1,2})(?P<sep>[/.-])(?P<b>\d{1,2})(?:(?P=sep)(?P<y>\d{4}|\d{2}))?(?![\d/:]|[.-]\d)"
)
_DAY = rf"(?:(?P<d>\d{{1,2}})(?:st|nd|rd|th)?|(?P<dw>{_ORD}))"
_YEAR = r"(?:,?\s*(?P<y>\d{4})\b)?"
_MONTH_DAY = re.compile(rf"\b(?P<mon>{_MON})\b\.?\s*(?:the\s+)?{_DAY}\b(?!\s*(?::|[ap]\.?m\b)){_YEAR}")
_DAY_MONTH = re.compile(rf"\b(?:the\s+)?{_DAY}\s*(?:of\s+)?(?P<mon>{_MON})\b\.?{_YEAR}")
# the second day of "Dec 10 or 11", "january 4th & 5th": the same month
_SAME_MONTH_TOO = re.compile(
    rf"\b(?P<mon>{_MON})\b\.?\s*(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)?\s*(?:or|and|&)\s*(?:the\s+)?"
    rf"(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\b(?!\s*(?::|[ap]\.?m\b|[,/]?\s*\d))"
)
# a date of birth with its month in words and two digits of year: "jan 5th 78", "5 January '78"
_SHORT_YEAR_AFTER = re.compile(r"\A,?\s*'?(?P<y>\d{2})\b(?![:/.-]?\d)")


@dataclass(frozen=True)
class _Written:
    """A date as written, before its year is settled."""

    start: int
    end: int
    month: int
    day: int
    year: int | None = None
    short_year: bool = False  # two digits: the caller settles the century


def _numeric_order(a: int, b: int) -> tuple[int, int]:
    """(month, day): US order, unless only the other order can be a date ("14/03")."""
    return (b, a) if a > 12 and 1 <= b <= 12 else (a, b)


def _written_dates(text: str) -> list[_Written]:
    found = [_Written(m.start(), m.end(), int(m["a"]), int(m["b"]), int(m["y"])) for m in _ISO.finditer(text)]
    for m in _NUMERIC.finditer(text):
        if m["y"] is None and m["sep"] != "/":
            continue
        month, day = _numeric_order(int(m["a"]), int(m["b"]))
        year = int(m["y"]) if m["y"] else None
        found.append(_Written(m.start(), m.end(), month, day, year, bool(m["y"]) and len(m["y"]) == 2))
    for pattern in (_MONTH_DAY, _DAY_MONTH):
        for m in pattern.finditer(text):
            day = int(m["d"]) if m["d"] else ORDINAL_WORDS[m["dw"]]
            found.append(_Written(m.start(), m.end(), MONTHS[m["mon"]], day, int(m["y"]) if m["y"] else None))
    return _outermost(found)


def _outermost(items: list[Any]) -> list[Any]:
    """Of overlapping matches (objects with start and end), the longest; in text order."""
    kept: list[Any] = []
    for item in sorted(items, key=lambda i: (i.start - i.end, i.start)):
        if all(item.end <= k.start or item.start >= k.end for k in kept):
            kept.append(item)
    return sorted(kept, key=lambda i: i.start)


# --- days named in a sentence: mentions --------------------------------------------------------


@dataclass(frozen=True)
class _Mention:
    start: int
    end: int
    answer: DateAnswer  # kind "none" for a set of weekdays ("weekends")
    last: date | None = None  # a range (a week, a month): its last day; answer.value is its first
    weekdays: frozenset[int] = frozenset()  # any of these weekdays would do ("tuesday", "weekends")
    named: int | None = None  # the weekday named, if one is ("this tuesday")
    week: bool = False  # the range is a calendar week
    monday: date | None = None  # a weekday of a named week ("thursday next week"): that week's Monday


_RELATIVE = re.compile(
    r"\b(?:(?P<dat>(?:the\s+)?day\s+after\s+(?:tomm?orr?ow|tmrw?))|(?P<dby>(?:the\s+)?day\s+before\s+yesterday)"
    r"|(?P<today>today|tonight|this\s+(?:morning|afternoon|evening))|(?P<tomorrow>tomm?orr?ow|tmrw?|2morrow|2moro)"
    r"|(?P<yesterday>yesterday))\b"
)
_IN_DAYS = re.compile(
    r"\b(?:in|within)\s+(?P<n>an?|one|two|three|four|five|six|\d{1,2})\s+(?P<unit>days?|weeks?)\b"
    r"|\b(?P<n2>an?|one|two|three|\d)\s+(?P<unit2>days?|weeks?)\s+from\s+(?:today|now)\b"
)
_WEEKDAY = re.compile(rf"\b(?:(?P<mod>next|this\s+coming|this|coming|last|past)\s+)?(?P<wd>{_WD})s?\b\.?")
_DAY_OF_MONTH = re.compile(
    rf"\b(?:(?P<d>\d{{1,2}})(?:st|nd|rd|th)|the\s+(?P<dw>{_ORD}))\b"
    r"(?!\s+(?:one|option|choice|slot|time|thing|floor|week|available|appointment|opening|visit|of)\b)"
)
_RANGE = re.compile(
    r"\b(?P<what>(?:the\s+)?week\s+after\s+next|(?:later\s+)?this\s+week(?:end)?|next\s+week(?:end)?"
    r"|(?:the\s+)?following\s+week|(?:later\s+)?this\s+month|next\s+month)\b"
)
_WEEKDAY_SETS = re.compile(
    r"\b(?:(?P<weekend>(?:on\s+)?weekends?)|(?P<weekday>weekdays?|during\s+the\s+week|on\s+a\s+weekday))\b"
)
_WEEKDAY_RANGE = re.compile(rf"\b(?P<a>{_WD})\s*(?:-|\u2013|to|through|thru|till|until)\s*(?P<b>{_WD})\b")
_NUMBER_WORDS = {"a": 1, "an": 1, **CARDINALS}


def _relative(m: re.Match, today: date) -> DateAnswer:
    if m["dat"]:
        return DateAnswer("date", today + timedelta(days=2))
    if m["dby"]:
        return DateAnswer("past", today - timedelta(days=2))
    if m["tomorrow"]:
        return DateAnswer("date", today + timedelta(days=1))
    if m["yesterday"]:
        return DateAnswer("past", today - timedelta(days=1))
    return DateAnswer("date", today)


def _in_days(m: re.Match, today: date) -> DateAnswer:
    n, unit = (m["n"], m["unit"]) if m["n"] else (m["n2"], m["unit2"])
    count = int(n) if n.isdigit() else _NUMBER_WORDS[n]
    return DateAnswer("date", today + timedelta(days=count * (7 if unit.startswith("week") else 1)))


def _weekday_mention(m: re.Match, today: date) -> _Mention:
    wd, mod = WEEKDAYS[m["wd"]], (m["mod"] or "").split()
    if mod == ["next"]:
        answer = DateAnswer("date", _monday(today) + timedelta(days=7 + wd))
    elif mod and mod[0] in ("last", "past"):
        answer = DateAnswer("past", today - timedelta(days=(today.weekday() - wd) % 7 or 7))
    else:
        answer = DateAnswer("date", today + timedelta(days=(wd - today.weekday()) % 7))
    return _Mention(m.start(), m.end(), answer, weekdays=frozenset({wd}) if not mod else frozenset(), named=wd)


def _range_mention(m: re.Match, today: date) -> _Mention:
    what = " ".join(m["what"].split())
    later = what.startswith("later ")
    if what.endswith("month"):
        year, month = (today.year, today.month) if what.endswith("this month") else _month_after(today)
        first = today + timedelta(days=later) if what.endswith("this month") else date(year, month, 1)
        return _Mention(m.start(), m.end(), DateAnswer("date", first), date(year, month, monthrange(year, month)[1]))
    weeks = 2 if "after next" in what else 0 if "this" in what else 1
    monday = _monday(today) + timedelta(days=7 * weeks)
    if what.endswith("weekend"):
        first = max(monday + timedelta(days=5), today)
        return _Mention(m.start(), m.end(), DateAnswer("date", first), monday + timedelta(days=6))
    first = max(monday, today + timedelta(days=later))
    return _Mention(m.start(), m.end(), DateAnswer("date", first), monday + timedelta(days=6), week=True)


def _month_after(today: date) -> tuple[int, int]:
    return (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)


def _booking_date(written: _Written, today: date) -> DateAnswer:
    if written.year is None:
        return _next_occurrence(written.month, written.day, today)
    answer = _calendar_date(2000 + written.year if written.short_year else written.year, written.month, written.day)
    if answer.kind == "date" and answer.value < today:
        return DateAnswer("past", answer.value)
    return answer


def _mentions(text: str, today: date) -> list[_Mention]:
    """Every day, weekday and range the text names, in text order; a weekday next to a date or a
    week is one mention with it ("Tuesday, Dec 8", "tuesday next week")."""
    found = [_Mention(w.start, w.end, _booking_date(w, today)) for w in _written_dates(text)]
    for m in _SAME_MONTH_TOO.finditer(text):  # before the bare "11th": it is in that month
        found.append(_Mention(m.start("d"), m.end(), _next_occurrence(MONTHS[m["mon"]], int(m["d"]), today)))
    taken = {f.start for f in found}
    for m in _DAY_OF_MONTH.finditer(text):
        day = int(m["d"]) if m["d"] else ORDINAL_WORDS[m["dw"]]
        if m.start("d" if m["d"] else "dw") not in taken:
            found.append(_Mention(m.start(), m.end(), _next_day_of_month(day, today)))
    found += [_Mention(m.start(), m.end(), _relative(m, today)) for m in _RELATIVE.finditer(text)]
    found += [_Mention(m.start(), m.end(), _in_days(m, today)) for m in _IN_DAYS.finditer(text)]
    found += [_weekday_mention(m, today) for m in _WEEKDAY.finditer(text)]
    found += [_range_mention(m, today) for m in _RANGE.finditer(text)]
    for m in _WEEKDAY_SETS.finditer(text):
        days = frozenset({5, 6}) if m["weekend"] else frozenset(range(5))
        found.append(_Mention(m.start(), m.end(), NONE, weekdays=days))
    for m in _WEEKDAY_RANGE.finditer(text):  # "mon-fri", "tuesday to thursday"
        first, last = WEEKDAYS[m["a"]], WEEKDAYS[m["b"]]
        days = frozenset((first + i) % 7 for i in range((last - first) % 7 + 1))
        found.append(_Mention(m.start(), m.end(), NONE, weekdays=days))
    return _join_weekdays(text, _outermost(found), today)


_JOINER = re.compile(r"[\s,(]*(?:(?:of|on)\s+)?(?:the\s+)?$")


def _join_weekdays(text: str, mentions: list[_Mention], today: date) -> list[_Mention]:
    joined: list[_Mention] = []
    for mention in mentions:
        previous = joined[-1] if joined else None
        if previous is not None and _JOINER.fullmatch(text[previous.end : mention.start]):
            pair = _joined(previous, mention, today)
            if pair is not None:
                joined[-1] = pair
                continue
        joined.append(mention)
    return joined


def _joined(first: _Mention, second: _Mention, today: date) -> _Mention | None:
    """ "Tuesday, December 8" (checked: a mismatch is reported), "tuesday next week", "next week tuesday"."""
    weekday, other = (first, second) if first.named is not None else (second, first)
    if weekday.named is None or other.named is not None or not other.answer.value:
        return None
    if other.week:
        day = _monday(other.answer.value) + timedelta(days=weekday.named)
        answer = DateAnswer("past", day) if day < today else DateAnswer("date", day)
        return _Mention(first.start, second.end, answer, monday=_monday(day))
    if other.last is not None or other is not second:
        return None
    answer = other.answer
    if answer.kind == "date" and answer.value.weekday() != weekday.named:
        answer = _impossible("weekday_mismatch", answer.value)
    return _Mention(first.start, second.end, answer)


_NEGATION = re.compile(
    r"(?:\bnot|\bexcept(?:\s+for)?|\bbut|\bno|\bnever|\bcan'?t\s+(?:do|make)|\bcannot\s+(?:do|make)"
    r"|\bapart\s+from|\bother\s+than|\bexcluding)\s+(?:on\s+)?(?:the\s+|a\s+)?$"
)
_STILL_WANTED = re.compile(r"\s*,?\s*(?:instead|then|works|is\s+(?:fine|better|good|ok))\b")


def _negated(text: str, start: int, end: int) -> bool:
    """ "not monday", "any day but monday", "no mornings"; not "no wednesday instead"."""
    return bool(_NEGATION.search(text[max(0, start - 40) : start])) and not _STILL_WANTED.match(text[end:])


# --- a day to book; a date of birth --------------------------------------------------------------


def parse_day(text: str, today: date) -> DateAnswer:
    """The day a patient asks for: "tomorrow", "next tuesday", "Dec 5", "12/5", "the 5th",
    "2026-12-05". impossible ("Feb 31": no_such_day, "13/45": no_such_month, "Tuesday, Dec 9" when
    the 9th is a Wednesday: weekday_mismatch), past ("yesterday", "2020-01-01"), or none (no single
    day: "next week", "not monday", "whenever")."""
    norm = _spelled(_norm(text))
    mentions = [
        m
        for m in _mentions(norm, today)
        if m.last is None and m.answer.kind != "none" and not _negated(norm, m.start, m.end)
    ]
    return mentions[-1].answer if mentions else NONE


def parse_birth_date(text: str, today: date) -> DateAnswer:
    """A date of birth: "03/14/1985", "3-14-85", "14 March 1985", "March 14, 1985", "1985-03-14",
    "14/03/1985". Kinds: date, impossible (no_such_day, no_such_month, too_old: over 120 years),
    future, none (detail missing_year when the year is left out)."""
    written = _written_dates(_norm(text))
    if not written:
        return NONE
    w = written[-1]
    short = _SHORT_YEAR_AFTER.match(_norm(text)[w.end :]) if w.year is None else None
    if short:
        w = replace(w, year=int(short["y"]), short_year=True)
    if w.year is None:
        return DateAnswer("none", detail="missing_year")
    year = w.year
    if w.short_year:
        year = 2000 + w.year
        if year > today.year or (year == today.year and (w.month, w.day) > (today.month, today.day)):
            year -= 100
    answer = _calendar_date(year, w.month, w.day)
    if answer.kind != "date":
        return answer
    if answer.value > today:
        return DateAnswer("future", answer.value)
    if answer.value < _years_before(today, 120):
        return _impossible("too_old", answer.value)
    return answer


# --- preferences -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preferences:
    """When, with whom and where a patient would like to come. Empty means not said. `days` and
    `not_before` are dates in the clinic's time zone; `after_time` is inclusive and `before_time`
    exclusive (local wall-clock times of the slot's start)."""

    days: frozenset[date] = frozenset()
    weekdays: frozenset[int] = frozenset()  # 0 = Monday
    parts_of_day: frozenset[str] = frozenset()  # morning | afternoon | evening
    not_before: date | None = None
    after_time: time | None = None
    before_time: time | None = None
    provider_id: str | None = None
    location_id: str | None = None
    asap: bool = False
    impossible: str = ""  # a reason code when the text names an impossible (or past) date

    def merge(self, newer: Preferences) -> Preferences:
        """These preferences corrected by newer ones ("actually Tuesday" after "Monday morning":
        the day replaced, the morning kept). Which day (days, weekdays, not_before, asap) and which
        time of day (parts_of_day, after_time, before_time) are each replaced as a whole when the
        newer text says anything about them; provider and location one by one."""
        merged = self
        for group in (_DAY_FIELDS, _TIME_FIELDS):
            if any(getattr(newer, name) for name in group):
                merged = replace(merged, **{name: getattr(newer, name) for name in group})
        return replace(
            merged,
            provider_id=newer.provider_id or merged.provider_id,
            location_id=newer.location_id or merged.location_id,
            impossible=newer.impossible,
        )


_DAY_FIELDS = ("days", "weekdays", "not_before", "asap")
_TIME_FIELDS = ("parts_of_day", "after_time", "before_time")


def parse_preferences(
    text: str,
    today: date,
    providers: Sequence[tuple[str, str]] = (),
    locations: Sequence[tuple[str, str]] = (),
) -> Preferences:
    """ "Tuesday morning", "any afternoon next week" (the days of next week), "after 3pm",
    "before 10", "with Dr Lee", "at the downtown office", "asap", "not Monday" (every other
    weekday). `providers` and `locations` are (id, display name) pairs; a name matches by a word of
    it that the others do not share ("lee", "Dr. Patel", "downtown")."""
    norm = _spelled(_norm(text))
    gathered = _DayPrefs()
    for mention in _mentions(norm, today):
        gathered.add(norm, mention)
    days, weekdays = gathered.result(today)
    after, before = _time_bounds(_blank_dates(norm))  # "Dec 10 or later": a day, not 10 o'clock
    return Preferences(
        days=days,
        weekdays=weekdays,
        parts_of_day=_parts_of_day(norm),
        not_before=gathered.not_before,
        after_time=after,
        before_time=before,
        provider_id=_match_name(norm, providers, _PROVIDER_WORDS),
        location_id=_match_name(norm, locations, _PLACE_WORDS),
        asap=bool(_ASAP.search(norm)),
        impossible=gathered.impossible,
    )


_AFTER_DAY = re.compile(r"\b(?:after|later\s+than)\s+(?:on\s+)?(?:the\s+)?$")
_FROM_DAY = re.compile(
    r"\b(?:from|starting(?:\s+(?:on|from))?|beginning|no\s+earlier\s+than|not\s+before|on\s+or\s+after)"
    r"\s+(?:on\s+)?(?:the\s+)?$"
)
_OR_LATER_DAY = re.compile(r"\s*,?\s*(?:(?:or|and|&)\s+(?:later|after(?:wards)?)|onwards?)\b")
_BEFORE_DAY = re.compile(r"\b(?P<word>before|by|no\s+later\s+than|until|till)\s+(?:on\s+)?(?:the\s+)?$")


@dataclass
class _DayPrefs:
    """The days a text asks for, gathered mention by mention."""

    singles: set[date] = field(default_factory=set)
    spans: set[date] = field(default_factory=set)
    weekdays: set[int] = field(default_factory=set)
    excluded: set[int] = field(default_factory=set)
    not_before: date | None = None
    impossible: str = ""
    monday: date | None = None  # of the week named with a weekday ("tuesday or thursday next week")

    def add(self, text: str, m: _Mention) -> None:
        if m.answer.kind in ("impossible", "past"):
            self.impossible = m.answer.detail or m.answer.kind
            return
        before = text[max(0, m.start - 40) : m.start]
        until = _BEFORE_DAY.search(before)
        if _negated(text, m.start, m.end):
            self.excluded |= m.weekdays or ({m.named} if m.named is not None else set())
            if m.last is not None:  # "not this week"
                self.not_before = m.last + timedelta(days=1)
        elif m.answer.value is None:
            self.weekdays |= m.weekdays
        elif _AFTER_DAY.search(before):
            self.not_before = (m.last or m.answer.value) + timedelta(days=1)
        elif _FROM_DAY.search(before) or _OR_LATER_DAY.match(text, m.end):  # "from Dec 10", "Dec 10 or later"
            self.not_before = m.answer.value
        elif until:  # "before Dec 5": from today; "by Friday", "until Friday": that day too
            end = m.answer.value + timedelta(days=0 if until["word"] == "before" else 1)
            self.spans |= set(_span(end - timedelta(days=BEFORE_DAY_HORIZON), end))
        elif m.last is not None:
            self.spans |= set(_span(m.answer.value, m.last + timedelta(days=1)))
        elif m.weekdays:
            self.weekdays |= m.weekdays
        else:
            self.singles.add(m.answer.value)
            self.monday = m.monday or self.monday

    def result(self, today: date) -> tuple[frozenset[date], frozenset[int]]:
        """(days, weekdays): weekdays narrow a range ("mornings next week but not monday"), join
        named days ("tomorrow or friday") and are dropped then; alone, they stay weekdays."""
        spans = {d for d in self.spans if d >= today}
        singles = set(self.singles)
        if not spans and not singles:
            if self.excluded:
                return frozenset(), frozenset((self.weekdays or set(ALL_WEEKDAYS)) - self.excluded)
            return frozenset(), frozenset(self.weekdays)
        if self.weekdays and spans:
            spans = {d for d in spans if d.weekday() in self.weekdays}
        elif self.weekdays and self.monday:  # "tuesday or thursday next week"
            singles |= {
                self.monday + timedelta(days=wd) for wd in self.weekdays if self.monday + timedelta(days=wd) >= today
            }
        elif self.weekdays:  # "tomorrow or friday"
            singles |= {today + timedelta(days=(wd - today.weekday()) % 7) for wd in self.weekdays}
        return frozenset(d for d in singles | spans if d.weekday() not in self.excluded), frozenset()


BEFORE_DAY_HORIZON = 90  # "before Dec 5": every day from today to then, looking this many days back


def _span(first: date, end: date) -> list[date]:
    """Days from `first` up to, not including, `end`."""
    return [first + timedelta(days=i) for i in range(max(0, (end - first).days))]


_PARTS = re.compile(
    r"\b(?:(?P<morning>(?:early\s+|late\s+)?mornings?|first\s+thing)|(?P<afternoon>(?:early\s+|late\s+)?afternoons?)"
    r"|(?P<evening>evenings?|nights?|tonight))\b"
    rf"|(?<!\d)(?<!\d\s)\b(?P<pm>pm|p\.m\.?)(?!\w)|\b(?:{_WD}|today|tomorrow|tmrw)\s+(?P<am>am|a\.m\.?)(?!\w)"
)


def _parts_of_day(text: str) -> frozenset[str]:
    wanted, unwanted = set(), set()
    for m in _PARTS.finditer(text):
        part = next(p for p in ("morning", "afternoon", "evening", "pm", "am") if m[p])
        part = {"pm": "afternoon", "am": "morning"}.get(part, part)
        start = m.start("am") if m["am"] else m.start()
        (unwanted if _negated(text, start, m.end()) else wanted).add(part)
    if unwanted:
        return frozenset((wanted or set(PARTS_OF_DAY)) - unwanted)
    return frozenset(wanted)


# --- clock times ---------------------------------------------------------------------------------


def _clock_pattern(name: str) -> str:
    return (
        rf"(?:(?<![\d/.:])(?P<{name}h>\d{{1,2}})(?::(?P<{name}m>[0-5]\d))?\s*(?P<{name}ap>[ap]\.?m\b\.?)?"
        rf"(?![\d/:]|\s*(?:st|nd|rd|th)\b)|(?P<{name}w>\b(?:noon|midday|lunch(?:time)?|work|school)\b))"
    )


_T1, _T2 = _clock_pattern("a"), _clock_pattern("b")
_BETWEEN = re.compile(rf"(?:\b(?P<lead>between|from)\s+)?{_T1}\s*(?:-|\u2013|to|until|till|and|&)\s*{_T2}")
_AFTER_WORDS = (
    r"not\s+before|no\s+earlier\s+than|later\s+than|any\s*time\s+after|after|from|past|starting\s+(?:at|from)"
)
_BEFORE_WORDS = r"not\s+after|no\s+later\s+than|earlier\s+than|before|by|until|till|til|up\s+to"
_OR_LATER = re.compile(
    rf"{_T1}\s*(?:or|and|&)\s+(?:(?P<later>later|after(?:wards)?)|(?P<earlier>earlier|before|sooner))\b"
)
_BOUND = re.compile(rf"\b(?:(?P<after>{_AFTER_WORDS})|(?P<before>{_BEFORE_WORDS}))\s+(?:about\s+|around\s+)?{_T1}")
_AROUND = re.compile(rf"(?P<cue>\b(?:at|around|about|near|close\s+to|approximately|approx\.?)\s+|~\s*)?{_T1}")
_WORD_TIMES = {
    ("noon", "at"): time(12), ("noon", "after"): time(12), ("noon", "before"): time(12),
    ("lunch", "at"): time(12), ("lunch", "after"): time(13), ("lunch", "before"): time(12),
    ("work", "after"): time(17), ("work", "before"): time(9), ("school", "after"): time(15),
}  # fmt: skip


def _clock(m: re.Match, name: str, role: str, ap: str | None = None) -> time | None:
    """One clock time of a match; `role` (at, after, before) settles lunch, work and school."""
    if m[f"{name}w"]:
        word = {"midday": "noon", "lunchtime": "lunch"}.get(m[f"{name}w"], m[f"{name}w"])
        return _WORD_TIMES.get((word, role))
    hour, minute = int(m[f"{name}h"]), int(m[f"{name}m"] or 0)
    ap = (m[f"{name}ap"] or ap or "")[:1]
    if ap:
        if not 1 <= hour <= 12:
            return None
        return time(hour % 12 + (12 if ap == "p" else 0), minute)
    if 1 <= hour <= 6:  # clinic hours: "after 3" is 3 pm
        hour += 12
    return time(hour, minute) if hour <= 23 else None


def _shift(value: time, minutes: int) -> time:
    moved = datetime.combine(date(2000, 1, 2), value) + timedelta(minutes=minutes)
    return moved.time() if moved.date() == date(2000, 1, 2) else (time(0) if minutes < 0 else time(23, 59))


def _time_bounds(text: str) -> tuple[time | None, time | None]:
    """(after_time, before_time): "between 2 and 4", "2-4pm", "after 3pm", "not before 9",
    "before 10", "by noon", "after lunch", "at 3" / "around 3:30" / "3pm" (an hour either side).
    Each pattern blanks what it read, so a later one does not read it again; the last of each wins."""
    after = before = None
    for m in _BETWEEN.finditer(text):
        span = _between(m)
        if span:
            after, before = span
            text = _blank(text, m)
    for m in _OR_LATER.finditer(text):  # "3:30 or later", "9 or earlier" (9:00 itself included)
        value = _clock(m, "a", "after" if m["later"] else "before")
        if value and m["later"]:
            after = value
        elif value:
            before = _shift(value, 1)
        text = _blank(text, m)
    for m in _BOUND.finditer(text):
        value = _clock(m, "a", "after" if m["after"] else "before")
        if value and m["after"]:
            after = value
        elif value:
            before = value
        text = _blank(text, m)
    for m in _AROUND.finditer(text):
        said = m["cue"] or m["aap"] or m["am"] or m["aw"] in ("noon", "midday", "lunchtime")
        value = _clock(m, "a", "at") if said else None
        if value:
            after, before = _shift(value, -60), _shift(value, 60)
    return after, before


def _between(m: re.Match) -> tuple[time, time] | None:
    """ "between 10 and 2", "from 9 to 11", "2-4pm" ("11-1pm" is 11 am to 1 pm); a bare "2-4" is
    not read as times."""
    if not (m["lead"] or m["aap"] or m["bap"] or m["am"] or m["bm"]):
        return None
    first, second = _clock(m, "a", "after", m["bap"]), _clock(m, "b", "before")
    if first and second and not m["aap"] and m["bap"] and first > second:
        first = _clock(m, "a", "after", "am")
    return (first, second) if first and second else None


def _blank_dates(text: str) -> str:
    for w in _written_dates(text):
        text = _blank_span(text, w.start, w.end)
    return text


def _blank(text: str, m: re.Match) -> str:
    return _blank_span(text, m.start(), m.end())


def _blank_span(text: str, start: int, end: int) -> str:
    """The text with [start, end) made spaces: what was read is not read again, and offsets hold."""
    return text[:start] + " " * (end - start) + text[end:]


# --- providers and locations; asap -------------------------------------------------------------

_PROVIDER_WORDS = frozenset({"dr", "doctor", "md", "do", "np", "pa", "rn", "nurse", "practitioner", "prof"})
_PROVIDER_WORDS |= {"mr", "mrs", "ms", "miss", "dnp", "fnp", "pac", "aprn", "phd", "jr", "sr"}
_PLACE_WORDS = frozenset({"clinic", "office", "center", "centre", "health", "medical", "family", "location"})
_PLACE_WORDS |= {"site", "branch", "campus", "practice", "care", "the", "of", "at", "and", "primary"}
# Words this module reads for themselves: a name made of one needs a title or "with" before it.
_BOOKING_WORDS = frozenset(MONTHS) | frozenset(WEEKDAYS) | PARTS_OF_DAY
_BOOKING_WORDS |= {"early", "late", "soon", "next", "this", "week", "day", "any", "first", "last", "noon", "today"}
_BOOKING_WORDS |= {"tomorrow", "after", "before", "am", "pm", "not", "no", "can", "will", "best", "free", "open"}
_NAME_CUE = re.compile(r"(?:\bdr|\bdoctor|\bwith|\bsee|\bseeing)\s+$")
_NOT_NAME = re.compile(r"(?:\bnot|\bno|\bexcept|\bbut|\bother\s+than)\s+(?:with\s+|see\s+)?(?:dr\s+|doctor\s+)?$")


def _match_name(text: str, options: Sequence[tuple[str, str]], generic: frozenset[str]) -> str | None:
    """The one option whose distinctive name words the text has the most of (a tie: None)."""
    if not options:
        return None
    folded = name_key(text)
    tokens = {oid: {t for t in name_key(name).split() if len(t) > 1 and t not in generic} for oid, name in options}
    shared = {t for t in set().union(*tokens.values()) if sum(t in ts for ts in tokens.values()) > 1}
    scores = {oid: sum(_names(folded, t) for t in ts - shared) for oid, ts in tokens.items()}
    best = max(scores.values())
    winners = [oid for oid, score in scores.items() if score == best]
    return winners[0] if best > 0 and len(winners) == 1 else None


def _names(folded: str, token: str) -> bool:
    for m in re.finditer(rf"\b{re.escape(token)}\b", folded):
        before = folded[: m.start()]
        if _NOT_NAME.search(before):
            continue
        if token not in _BOOKING_WORDS or _NAME_CUE.search(before):
            return True
    return False


_ASAP = re.compile(
    r"\b(?:asap|a\.s\.a\.p|as\s+soon\s+as\s+(?:possible|you\s+can|i\s+can)|(?:the\s+)?earliest|soonest|soon"
    r"|first\s+available|next\s+available|first\s+(?:free\s+)?(?:opening|slot|appointment)|whenever"
    r"|any\s*time|any\s+day|no\s+preference|(?:it\s+)?doesn'?t\s+matter|don'?t\s+mind|right\s+away"
    r"|as\s+early\s+as\s+possible)\b"
)


# --- a choice from a list ------------------------------------------------------------------------

_CHOICE_ORDINALS = {w: i + 1 for i, w in enumerate(_UNIT_ORDINALS + ("tenth",))}
_CHOICE_PREFIXED = re.compile(
    rf"(?:\b(?:option|number|no\.?|num|choice|slot|appointment)\s*#?\s*|#\s*)(?P<n>\d{{1,2}}|{_CARD})\b"
    r"(?!\s*(?::|[ap]\.?m\b))"
)
_CHOICE_ORDINAL = re.compile(
    rf"\b(?:(?P<d>\d{{1,2}})(?:st|nd|rd|th)|(?P<w>{_alternation(_CHOICE_ORDINALS)}))\b"
    r"(?!\s+(?:of|thing|available|time|week|day|visit|opening|free)\b)"
)
_CHOICE_LAST = re.compile(r"\b(?:last|final|bottom)\b(?!\s+(?:week|time|month|year|visit|appointment|name|night))")
_CHOICE_MIDDLE = re.compile(r"\bmiddle\b")
_CHOICE_FILLER = re.compile(
    r"\b(?:i'?ll\s+take|i'?ll\s+have|i'?d\s+like|i\s+want|i\s+choose|i\s+pick|let'?s\s+do|let'?s\s+go\s+with"
    r"|go\s+with|take|give\s+me|please|pls|plz|ok(?:ay)?|yes|yeah|sure|the|number|option|choice|thanks"
    r"|thank\s+you|works|is\s+good|is\s+fine|one\s+please)\b|[#.,!]"
)


def parse_choice(text: str, count: int) -> int | None:
    """The 0-based index of the option a patient picks from `count` listed ones: "2", "#2",
    "option 2", "number two", "the second", "2nd one", "the last one", "the middle one". None when
    it names none, several, or one out of range ("2pm" and "the one at 3" are not numbers here)."""
    norm = _norm(text)
    picked = _choices(norm, count)
    if len(picked) != 1:
        return None
    (n,) = picked
    return n - 1 if 1 <= n <= count else None


def _choices(norm: str, count: int) -> set[int]:
    picked: set[int] = set()
    for m in _CHOICE_PREFIXED.finditer(norm):
        picked.add(int(m["n"]) if m["n"].isdigit() else CARDINALS[m["n"]])
    for m in _CHOICE_ORDINAL.finditer(norm):
        if not _negated(norm, m.start(), m.end()):
            picked.add(int(m["d"]) if m["d"] else _CHOICE_ORDINALS[m["w"]])
    if any(not _negated(norm, m.start(), m.end()) for m in _CHOICE_LAST.finditer(norm)):
        picked.add(count)
    if _CHOICE_MIDDLE.search(norm) and count % 2 == 1 and count >= 3:
        picked.add(count // 2 + 1)
    bare = " ".join(_CHOICE_FILLER.sub(" ", norm).split())
    if re.fullmatch(r"\d{1,2}", bare):
        picked.add(int(bare))
    elif bare in CARDINALS and (bare != "one" or norm.strip(" .!") == "one"):
        picked.add(CARDINALS[bare])
    return picked


# --- yes or no -----------------------------------------------------------------------------------

_YES_FIRST = frozenset({"yes", "y", "yeah", "yea", "yah", "ya", "yep", "yup", "sure", "ok", "okay", "k", "kk"})
_YES_FIRST |= {"correct", "absolutely", "definitely", "confirm", "confirmed", "yess", "yesss", "affirmative"}
_YES_FIRST |= {"si", "sí", "oui"}  # a patient's own language, as the bot's buttons are in English
_NO_FIRST = frozenset({"no", "n", "nope", "nah", "naw", "nay", "wrong", "incorrect", "negative"})
_UNSURE = re.compile(r"\b(?:not\s+sure|unsure|maybe|perhaps|don'?t\s+know|do\s+not\s+know|dunno|idk|not\s+certain)\b")
_NO_PROBLEM = re.compile(r"^(?:no\s+(?:problem|worries|prob))\b")
_NO = re.compile(
    r"\b(?:no|nope|nah|don'?t|do\s+not|cancel\s+that|wrong|incorrect|not\s+(?:right|correct|ok|okay|that|really"
    r"|now|yet|good|fine)|negative|never|isn'?t|wasn'?t|that'?s\s+not"
    r"|(?:doesn'?t|does\s+not|won'?t|will\s+not|can'?t|cannot)\s+(?:work|do|make)\b)\b|[\U0001F44E\u274C\u2716]"
)
_YES = re.compile(
    r"\b(?:yes|yeah|yea|yep|yup|sure|ok|okay|correct|confirm(?:ed)?|please\s+do|do\s+it|go\s+ahead"
    r"|that'?s\s+(?:right|it|fine|good|perfect)|right|absolutely|definitely|of\s+course|sounds\s+good|perfect"
    r"|great|affirmative|book\s+it|that\s+works|works\s+for\s+me|fine|alright|all\s+right|exactly|please"
    r"|(?:i\s+)?guess\s+so|i\s+think\s+so)\b"
    r"|[\U0001F44D\U0001F44C\u2705\u2714]"
)


def parse_yes_no(text: str) -> bool | None:
    """True for yes ("yeah", "sure", "ok", "correct", "please do", a thumbs up), False for no
    ("nope", "nah", "don't", "cancel that", "wrong"), None when unsure or neither."""
    norm = _norm(text)
    first = re.sub(r"[^\w']", "", norm.split(" ", 1)[0]) if norm else ""
    if _NO_PROBLEM.match(norm):
        return True
    if first in _YES_FIRST:
        return True
    if first in _NO_FIRST:
        return False
    if _UNSURE.search(norm):
        return None
    if _NO.search(norm):
        return False
    if _YES.search(norm):
        return True
    return None


# --- a full name ---------------------------------------------------------------------------------

MAX_NAME_WORDS = 6
_NAME_PREFIX = re.compile(
    r"^(?:(?:hi|hello|hey|yes|ok|okay|sure)\b[\s,!.]*)?"
    r"(?:(?:my|the|his|her|their|patient'?s)\s+(?:full\s+)?name\s+is|my\s+name'?s|(?:full\s+)?name\s*[:=-]?"
    r"|i\s+am|i'?m|it'?s|its|it\s+is|this\s+is|call\s+me|patient\s*[:=]|he\s+is|she\s+is|he'?s|she'?s)\s+",
    re.IGNORECASE,
)
_NAME_SUFFIX = re.compile(r"[\s,]+(?:here|speaking|thanks|thank\s+you|please)[.!]*$", re.IGNORECASE)
_NAME_WORD = re.compile(r"[^\W\d_]+(?:['\u2019.-][^\W\d_]*)*")
_NOT_NAMES = frozenset({
    "i", "me", "my", "you", "your", "we", "it", "this", "that", "is", "are", "am", "was", "be", "to", "the",
    "a", "an", "and", "or", "for", "with", "on", "at", "in", "of", "want", "need", "book", "booking",
    "appointment", "please", "help", "can", "could", "would", "should", "not", "no", "yes", "what", "why",
    "how", "when", "where", "who", "don't", "dont", "know", "have", "has", "do", "sorry", "thanks", "thank",
    "hi", "hello", "hey", "ok", "okay", "sure", "today", "tomorrow", "morning", "afternoon", "evening",
    "doctor", "dr", "cancel", "reschedule", "go", "back", "stop", "name", "just", "like", "patient", "again",
    "never", "mind", "person", "human", "agent", "about", "call", "time", "pm", "first", "last",
    "nope", "yeah", "yep", "idk", "dunno", "tell", "you're", "it's", "i'm", "im", "asap", "sick", "pain",
})  # fmt: skip
_NOT_NAMES |= frozenset(WEEKDAYS)
_PARTICLES = frozenset({"de", "del", "della", "der", "den", "van", "von", "da", "di", "du", "la", "le", "dos", "das"})


# Where a name starts inside a longer reply: "it's for my son Liam Chen", "my daughter's name is
# Sofia Alvarez", "the patient is Emma Wilson, I'm her mom", "I am called Olga Petrova".
_NAME_CUES = re.compile(
    r"(?:\bname(?:'s|\s+is|\s*[:=-])?|\bis\s+called|\bcalled|\bpatient(?:'s\s+name)?\s+is"
    r"|\bfor\s+(?:my|our)\s+(?:son|daughter|child|kid|boy|girl|baby|husband|wife|partner|mother|mom|mum|father"
    r"|dad|grandmother|grandma|grandfather|grandpa|brother|sister|friend)(?:'s\s+name\s+is)?,?)\s+",
    re.IGNORECASE,
)
_FIRST_LAST = re.compile(
    r"\bfirst\s+name\s*(?:is\s+)?([^\W\d_][\w'-]*)[\s,]+last\s+name\s*(?:is\s+)?([^\W\d_][\w'-]*)", re.I
)
_TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "mister", "dr"})


def parse_name(text: str) -> str | None:
    """A full name: "my name is Jane Doe", "Jane Doe", "it's jane o'neil", "I'm José García-López",
    "it's for my son Liam Chen", "DOE, JANE", "Ms. Patricia Kowalski" (the title dropped). None for
    a single word, more than six words, or words that are not names ("I want to book"). Words typed
    all in lower case (or the whole name in capitals) come back capitalised; others as typed."""
    norm = " ".join(unicodedata.normalize("NFKC", text or "").replace("\u2019", "'").split())
    split = _FIRST_LAST.search(norm)
    if split:
        return _as_name(f"{split[1]} {split[2]}")
    cues = list(_NAME_CUES.finditer(norm))
    if cues:
        norm = norm[cues[-1].end() :]
    else:
        prefix = _NAME_PREFIX.match(norm)
        norm = norm[prefix.end() if prefix else 0 :]
    norm = re.split(r"\d|\s[-\u2013]\s|[;!?()]", norm, maxsplit=1)[0]  # "jane doe 3/14/85", "tom baker - me"
    parts = [p.strip(' .,"') for p in norm.split(",")]
    if len(parts) == 2 and len(parts[0].split()) == 1 and len(parts[1].split()) == 1 and parts[1]:
        return _as_name(f"{parts[1]} {parts[0]}")  # "DOE, JANE"
    return _as_name(_NAME_SUFFIX.sub("", parts[0]).strip(' .,!?;:"'))


def _as_name(text: str) -> str | None:
    words = [w.rstrip(",") for w in text.split()]
    while words and _norm(words[0]).rstrip(".") in _TITLES:
        words = words[1:]
    if not 2 <= len(words) <= MAX_NAME_WORDS:
        return None
    if not all(_NAME_WORD.fullmatch(w) for w in words):
        return None
    refused = [w for w in words if _norm(w) in _NOT_NAMES]
    # A short function word can be a name after the first ("Nguyen Van An", "Anh Thu Tran").
    if refused and (len(refused) > 1 or _norm(words[0]) in _NOT_NAMES or len(refused[0]) > 3):
        return None
    name = " ".join(words)
    if name.isupper():
        return _capitalised(name)
    return " ".join(
        _capitalised(w) if w.islower() and (i == 0 or w not in _PARTICLES) else w for i, w in enumerate(words)
    )


def _capitalised(name: str) -> str:
    words = []
    for i, word in enumerate(name.lower().split()):
        if i and word in _PARTICLES:
            words.append(word)
            continue
        words.append(re.sub(r"(^|['\u2019-])([^\W\d_])", lambda m: m[1] + m[2].upper(), word))
    return " ".join(words)


# --- going back, stopping, a person ------------------------------------------------------------

_BACK = re.compile(
    r"(?:(?:oops|oh|wait|sorry|hmm+|um+|no|actually|please|can\s+we|can\s+i|could\s+we|let'?s|let\s+me"
    r"|i\s+want\s+to|i\s+need\s+to)[\s,!.]+)*"
    r"(?:go\s+back(?:\s+(?:a\s+step|one\s+step|to\s+the\s+(?:previous|last)\s+(?:step|question)))?|back(?:\s+up)?"
    r"|previous(?:\s+(?:step|question|page|one))?|undo(?:\s+(?:that|it|this))?|step\s+back|take\s+me\s+back"
    r"|one\s+step\s+back|return\s+to\s+the\s+previous\s+(?:step|question))"
    r"(?:[\s,!.]+(?:please|pls|plz|thanks))*[\s.!]*"
)
_PERSON = re.compile(
    r"\b(?:(?:talk|speak|chat)\s+(?:to|with)\s+(?:a\s+|an\s+|the\s+|some\s+|your\s+|my\s+)?(?:someone|somebody"
    r"|anyone|anybody|real|live|human|person|people|staff|receptionist|nurse|doctor|front\s+desk|office)"
    r"|real\s+person|live\s+(?:person|agent|chat)|human(?:\s+being)?|agent|operator|representative"
    r"|receptionist|front\s+desk|staff\s+member|member\s+of\s+(?:the\s+)?staff)\b"
)
_CALL_ME = re.compile(
    r"\b(?:call|phone|ring)\s+me\b(?:\s+back)?(?!\s+(?!please\b|instead\b|asap\b|now\b|today\b|tomorrow\b|later\b"
    r"|about\b|at\b|on\b|when\b|to\b|so\b|if\b|and\b|pls\b|plz\b|this\b|in\b|soon\b)[^\W\d_])"
    r"|\b(?:give\s+me\s+a\s+call|have\s+(?:someone|somebody)\s+call)\b"
)
_NOT_PERSON = re.compile(
    r"\b(?:don'?t|do\s+not|no\s+need\s+to|not)\s+(?:want\s+to\s+|need\s+to\s+)?(?:talk|speak|call)"
    r"|\b(?:are|r)\s+(?:you|u)\s+(?:a\s+)?(?:real|human|person|bot|robot)"
)
_STOP = re.compile(
    r"\b(?:stop\s+(?:booking|this|it|that|the\s+booking|please|now|asking)|never\s*mind|nvm|forget\s+(?:it|about\s+it"
    r"|this|that)|cancel\s+(?:this(?!\s+(?:appointment|visit))|the\s+booking|booking)|i\s+don'?t\s+want\s+to\s+book"
    r"|don'?t\s+book|no\s+longer\s+(?:want|need)|changed\s+my\s+mind|quit\s+(?:this|booking)|exit|abort"
    r"|not\s+now|maybe\s+later|i'?ll\s+(?:do\s+it|book|call|try)\s+later|leave\s+it)\b"
)
# The SMS opt-out keywords (Twilio's): alone, they are the channel's business, not a booking's.
OPT_OUT_WORDS = frozenset({"stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"})
_ANY_DAY = date(2001, 1, 1)


def wants_back(text: str) -> bool:
    """ "go back", "back", "previous", "undo" (the whole message: "my back hurts" is not)."""
    return bool(_BACK.fullmatch(_norm(text)))


def wants_person(text: str) -> bool:
    """ "talk to a person", "agent", "human", "receptionist", "call me" (not "call me Jane")."""
    norm = _norm(text)
    if _NOT_PERSON.search(norm):
        return False
    return bool(_PERSON.search(norm) or _CALL_ME.search(norm))


def wants_stop(text: str) -> bool:
    """ "stop booking", "never mind", "forget it", "cancel this". Not "cancel my appointment" (that
    is a cancellation), not a bare SMS opt-out word ("STOP"), and not a correction that follows
    ("never mind, Tuesday works")."""
    norm = _norm(text)
    if norm.strip(" .!") in OPT_OUT_WORDS:
        return False
    m = _STOP.search(norm)
    if m is None:
        return False
    rest = norm[m.end() :]
    return parse_preferences(rest, _ANY_DAY) == Preferences() and parse_choice(rest, 10) is None
