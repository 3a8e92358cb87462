"""Vital signs and lab values written in a message, and the danger zones they fall in.

`read_vitals(text)` reads the numbers a patient or a clinician wrote ("HR 126, RR 28, BP 80/64,
SpO2 96% on a non-rebreather", "my bp was 190 over 115", "sugar is 45", "K 6.8") from the raw
message. `assess_vitals(vitals, age_months, pregnant)` compares them with the thresholds in
knowledge/triage/vitals.yml (each with its public source) and returns one finding per danger:
the AHRQ ESI danger-zone vital signs by age, NEWS2 for adults (single red parameters and the
aggregate score), fever in young babies, hypertensive crisis (and ACOG's thresholds in
pregnancy), ADA blood sugar levels, potassium, sodium, haemoglobin, GCS and troponin.

Reading is one pass over tokens: a tokenizer that cannot backtrack, then, at each label ("HR",
"heart rate", "sats", "blood sugar", ...), a look-ahead of a few filler words ("is", "was like",
"(RR),") to a number and its unit. Every look-ahead is bounded, so the time is linear in the text
whatever it holds; the phrases that say the vital signs are normal run on RE2. A number is a
vital sign only after a label or with a unit that names it ("130 bpm", "101.4 F", "88% on room
air"): ages, durations, doses, dates, times, pain scores and phone numbers are not read. When a
vital sign is stated more than once, the reading furthest from normal is kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import re2
import yaml

from knowledge.triage.redflags import Source

VITALS_FILE = Path(__file__).resolve().parent / "vitals.yml"
LEVEL_RANK = {"routine": 0, "urgent": 1, "emergency": 2}


@dataclass(frozen=True)
class Vitals:
    """What a message states. None = not stated."""

    heart_rate: float | None = None
    resp_rate: float | None = None
    systolic: float | None = None
    diastolic: float | None = None
    spo2: float | None = None
    on_oxygen: bool = False
    temperature_c: float | None = None
    glucose_mg_dl: float | None = None
    gcs: float | None = None
    labs: dict[str, float] = field(default_factory=dict, hash=False)  # potassium, sodium (mmol/L), haemoglobin (g/dL)
    normal_stated: bool = False  # "vital signs normal", "VS WNL", "vitals stable", "afebrile"
    normal_stated_about: frozenset[str] = frozenset()  # "vitals" (all of them) and/or "temperature" (afebrile)

    def stated(self) -> tuple[str, ...]:
        """The names of the values the message gave."""
        names = [n for n in _VITAL_FIELDS if getattr(self, n) is not None]
        return tuple(names + sorted(self.labs))


@dataclass(frozen=True)
class VitalFinding:
    name: str  # heart_rate_high, spo2_low, systolic_low, news2_high, glucose_low, potassium_high, ...
    level: str  # emergency | urgent | routine
    reason: str  # plain language, for the patient
    source: Source


_VITAL_FIELDS = (
    "heart_rate",
    "resp_rate",
    "systolic",
    "diastolic",
    "spo2",
    "temperature_c",
    "glucose_mg_dl",
    "gcs",
)

# --- reading ------------------------------------------------------------------------------------

# Numbers, words (with "k+", "spo2", "o2", "hba1c", "bm25" kept whole) and single symbols. Case is kept:
# a one-letter label ("P 52", "T 38.9C", "K 6.8") counts only in capitals. Python's `re` runs this
# one: every alternative is a run of one class with optional tails that can always match empty,
# so nothing backtracks (safe_regex.ambiguity() finds nothing; the tests time it on adversarial
# text), and it is a hundred times faster per token than the RE2 wrapper's match objects.
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[A-Za-z]+(?:'[A-Za-z]+)?\+?(?:[0-9]+[A-Za-z]*)?|[^\sA-Za-z0-9]")
_FOLD = str.maketrans(
    {
        "°": " deg ",
        "º": " deg ",
        "˚": " deg ",
        "’": "'",
        "‘": "'",
        "“": '"',
        "”": '"',
        "–": "-",
        "—": "-",
        "−": "-",
        "\u00a0": " ",
        "％": "%",
        "≤": "<",
        "≥": ">",
    }
)

HR, RR, BP, SBP, DBP, SPO2, TEMP, GLUCOSE, K, NA, HGB, GCS = (
    "heart_rate",
    "resp_rate",
    "bp",
    "systolic",
    "diastolic",
    "spo2",
    "temperature",
    "glucose",
    "potassium",
    "sodium",
    "haemoglobin",
    "gcs",
)


def _phrases(kind: str, *phrases: str) -> dict[tuple[str, ...], str]:
    return {tuple(p.split()): kind for p in phrases}


_LABELS: dict[tuple[str, ...], str] = {
    **_phrases(HR, "hr", "heart rate", "heartrate", "heart rates", "pulse", "pulse rate", "resting heart rate"),
    **_phrases(HR, "resting pulse", "apical pulse", "apical rate", "heart beat", "heartbeat", "heart"),
    **_phrases(RR, "rr", "resp", "resps", "resp rate", "respiratory rate", "respiration", "respirations"),
    **_phrases(RR, "respiration rate", "breathing rate", "breath rate", "rate of breathing", "breathing"),
    **_phrases(BP, "bp", "blood pressure", "blood pressures", "b / p", "nibp", "pressure", "bps"),
    **_phrases(SBP, "sbp", "systolic", "systolic bp", "systolic blood pressure", "systolic pressure", "top number"),
    **_phrases(DBP, "dbp", "diastolic", "diastolic bp", "diastolic blood pressure", "diastolic pressure"),
    **_phrases(DBP, "bottom number", "lower number"),
    **_phrases(SPO2, "spo2", "sao2", "sp 02", "sa 02", "o2 sat", "o2 sats", "o2 saturation", "o2sat", "o2sats"),
    **_phrases(SPO2, "02 sat", "02 sats", "02 saturation", "oxygen saturation", "oxygen sat", "oxygen sats"),
    **_phrases(SPO2, "oxygen level", "oxygen levels", "o2 level", "o2 levels", "oxygen saturation level", "sat"),
    **_phrases(SPO2, "sats", "saturation", "saturations", "saturating", "satting", "sating", "pulse ox", "pulseox"),
    **_phrases(SPO2, "pulse oximeter", "pulse oximetry", "pulse ox reading", "oximeter", "oximetry", "oxygen"),
    **_phrases(SPO2, "o2", "blood oxygen", "blood oxygen level"),
    **_phrases(TEMP, "temp", "temps", "temperature", "body temperature", "tmax", "t max", "fever", "febrile"),
    **_phrases(TEMP, "oral temp", "oral temperature", "rectal temp", "rectal temperature", "tympanic temperature"),
    **_phrases(TEMP, "tympanic temp", "axillary temp", "axillary temperature", "forehead temp", "high temp"),
    **_phrases(GLUCOSE, "glucose", "blood glucose", "blood sugar", "blood sugars", "sugar", "sugars", "bg", "bgl"),
    **_phrases(GLUCOSE, "cbg", "fsbg", "fsbs", "fsg", "fingerstick", "finger stick", "fingerstick glucose"),
    **_phrases(GLUCOSE, "glucose level", "sugar level", "sugar levels", "blood sugar level", "blood glucose level"),
    **_phrases(GLUCOSE, "accucheck", "accuchek", "accu chek", "glucometer", "poc glucose", "bsl", "rbs", "fbs"),
    **_phrases(GLUCOSE, "fbg", "dextro", "dexcom", "libre", "cgm", "serum glucose", "glucose reading"),
    **_phrases(K, "k+", "potassium", "serum potassium", "potassium level", "serum k", "serum k+"),
    **_phrases(NA, "na+", "sodium", "serum sodium", "sodium level", "serum na"),
    **_phrases(HGB, "hgb", "hb", "hemoglobin", "haemoglobin", "hemoglobin level", "haemoglobin level"),
    **_phrases(GCS, "gcs", "glasgow coma scale", "glasgow coma score", "glasgow"),
}
# Labels that count only when written in capitals ("P 52", "T 38.9C", "K 6.8", "Na 118").
_CAPITAL_LABELS = {("p",): HR, ("r",): RR, ("t",): TEMP, ("k",): K, ("na",): NA, ("bs",): GLUCOSE, ("bm",): GLUCOSE}
_MAX_PHRASE = max(len(p) for p in [*_LABELS, *_CAPITAL_LABELS])
_FIRST_WORDS = frozenset(p[0] for p in [*_LABELS, *_CAPITAL_LABELS])

# Words that may stand between a label and its number ("my heart rate is like 140", "blood sugar
# reading of 30", "respiratory rate (RR), 28"): at most _MAX_FILL of them.
_FILLERS = frozenset(
    """is was were are be been being has have had of at around about approx approximately roughly like
    reading readings read reads reached reaching says said say showed shows showing show measured measuring
    measures checked check came comes back now still currently up down to only just went gone goes dropped
    dropping drops fell falling a an the level levels rate value values in into high low running runs run
    going racing beating pounding over under below above almost nearly near close hit hitting hits spiked
    spiking peaked peaking stays staying stayed sitting sits keeps kept consistently constantly always
    ranges ranging from between elevated repeat recheck rechecked initial initially today tonight this
    morning earlier again number numbers it its it's my his her their upto apparently maybe probably
    really very super so quite pretty extremely dangerously way too
    ~ : = , - ( ) ; " '""".split()
)
_MAX_FILL = 6
# Everyday words that are labels only sometimes ("sugar 1 spoon", "oxygen 2 days", "sat 3 kids"):
# after them the number must end the phrase, or carry the vital sign's own unit.
_LOOSE_LABELS = frozenset("sugar sugars heart oxygen o2 pressure fever sat sats saturation breathing".split())
_CONTINUATIONS = frozenset(
    """and but or so this that today tonight now then again also i im i'm my he she it its it's we they
    after before when while since at on in morning evening night yesterday earlier last which with despite
    even though although right according per from by was is has been please help what should do does can
    fasting s mg mmol bpm breaths times beats percent pct deg degree degrees f c fahrenheit celsius mmhg over
    ra room for x all past every each during until till through overnight off without""".split()
)
# A label right after one of these is not a reading of now ("target sats 88-92%", "normal heart
# rate is 60-100", "vitamin K 5"); "max" only for a heart rate (exercise), not a temperature.
_NOT_A_READING = frozenset("target goal aim keep normal normally usual usually ideal should vitamin".split())
_NOT_A_HEART_READING = frozenset("max maximum peak".split())
# A number followed by one of these is a dose, a duration, a count or a size, not a vital sign.
_NOT_VITAL_UNITS = frozenset(
    """mg mcg ug g gm gms gram grams kg kgs lb lbs pound pounds oz ml mls cc l liter liters litre litres lpm
    tablet tablets tab tabs pill pills capsule capsules caps unit units iu dose doses puff puffs drop drops
    year years yr yrs yo y month months mo mos week weeks wk wks day days d hour hours hr hrs h minute minutes
    min mins second seconds sec secs time times x am pm cm mm inch inches ft feet foot mile miles km step steps
    out th st nd rd percentile cups cup glasses servings carbs calories kcal dollars people kids children
    pack packs cigarettes beers drinks spoons teaspoons tsp tbsp o'clock deg degree degrees""".split()
)
_ALLOWED_UNITS = {RR: frozenset("times breaths breath min mins minute".split()), HGB: frozenset("g gm".split())}
_RANGES = {  # plausible values; anything outside is not read
    HR: (20, 300),
    RR: (3, 90),
    SBP: (40, 300),
    DBP: (20, 200),
    SPO2: (50, 100),
    GLUCOSE: (10, 2000),
    K: (1.0, 10.0),
    NA: (90, 200),
    HGB: (2.0, 25.0),
    GCS: (3, 15),
}
_OXYGEN_DEVICES = frozenset(
    """o2 oxygen nrb nonrebreather rebreather non nc cannula nasal mask facemask venturi bipap cpap niv hfnc
    hfno high vent ventilator fio2 optiflow""".split()
)
_DEVICE_FILLERS = frozenset("a the supplemental home some her his my - % high non nasal".split())
_LITRES = frozenset("l lpm liter liters litre litres".split())
_TROPONIN = frozenset("troponin troponins trop trops tni tnt hstni hstnt".split())
_POSITIVE = frozenset("positive elevated raised high up abnormal rising bumped leak pos +".split())
_CHANGE_WORDS = frozenset(
    """- to and then now but later dropped dropping went gone goes up down fell falling rose rising climbed
    increased decreased is was it's its , again after repeat recheck rechecked back at only just""".split()
)
_POSITIVE_BEFORE = frozenset("positive elevated raised high abnormal rising".split())
_NEGATIVE = frozenset("negative neg normal undetectable flat".split())
_SENTENCE_END = frozenset(". ; ! ?".split())

_NORMAL_VITALS = re2.compile(
    r"\b(?:vital signs?|vitals|vs|v/s|obs|observations)\b[ :,]{0,3}"
    r"(?:(?:are|were|is|was|all|remain|remained|have|has|been|otherwise|appear|appeared|seem|seemed|essentially"
    r"|entirely|completely|within|in|the) ){0,5}"
    r"(?:normal|wnl|stable|unremarkable|fine|ok|okay|good|reassuring|normal limits|normal range)\b"
    r"|\bvss\b|\b(?:normal|stable|unremarkable) (?:vital signs|vitals)\b",
)
_AFEBRILE = re2.compile(r"\bafebrile\b")


@dataclass
class _Reading:
    """Values read so far: every reading of each kind, the worst chosen at the end."""

    values: dict[str, list[float]] = field(default_factory=dict)
    on_oxygen: bool = False

    def add(self, kind: str, value: float) -> None:
        self.values.setdefault(kind, []).append(value)


def read_vitals(text: str) -> Vitals:
    """The vital signs and lab values stated in a message (the raw text, as the patient wrote it)."""
    folded = text.translate(_FOLD)
    if not folded.isascii():
        folded = folded.encode("ascii", "replace").decode("ascii")
    raw = _TOKEN.findall(folded)
    low = [t.lower() for t in raw]
    reading = _Reading()
    i, n = 0, len(low)
    while i < n:
        i = _read_at(raw, low, i, reading)
    lowered = folded.lower()
    about = set()
    if _NORMAL_VITALS.search(lowered):
        about.add("vitals")
    if _AFEBRILE.search(lowered):
        about.add("temperature")
    values = {kind: _worst(kind, vs) for kind, vs in reading.values.items()}
    labs = {k: values[k] for k in (K, NA, HGB) if k in values}
    if "troponin_positive" in values:
        labs["troponin_positive"] = values["troponin_positive"]
    return Vitals(
        heart_rate=values.get(HR),
        resp_rate=values.get(RR),
        systolic=values.get(SBP),
        diastolic=values.get(DBP),
        spo2=values.get(SPO2),
        on_oxygen=reading.on_oxygen,
        temperature_c=values.get(TEMP),
        glucose_mg_dl=values.get(GLUCOSE),
        gcs=values.get(GCS),
        labs=labs,
        normal_stated=bool(about),
        normal_stated_about=frozenset(about),
    )


def _read_at(raw: list[str], low: list[str], i: int, reading: _Reading) -> int:
    """Reads what starts at token i; returns the index to go on from (always > i)."""
    tok = low[i]
    if tok == "on":
        _read_oxygen_delivery(low, i, reading)
        return i + 1
    if tok in _TROPONIN:
        _read_troponin(low, i, reading)
        return i + 1
    if tok in _POSITIVE_BEFORE and i + 1 < len(low) and low[i + 1] in _TROPONIN:
        if not (i > 0 and low[i - 1] in ("no", "not")):
            reading.add("troponin_positive", 1.0)
        return i + 2
    label = _label_at(raw, low, i)
    if label is None:
        return _read_unlabelled(low, i, reading) if _is_number(tok) else i + 1
    kind, end = label
    before = _words_before(low, i)
    if _NOT_A_READING.intersection(before) or (kind == HR and _NOT_A_HEART_READING.intersection(before)):
        return end
    j, fill = end, 0
    while j < len(low) and fill < _MAX_FILL:
        if _is_number(low[j]):
            if not _is_time_or_date(low, j):
                break
            j += 4 if j + 3 < len(low) and low[j + 3] in ("am", "pm") else 3  # "BP at 10:30 was 150/90"
        elif low[j] in _FILLERS or (low[j - 1] == "(" and len(low[j]) <= 6) or (low[j] == "." and j == end):
            j += 1  # "is like", "(RR),", "T. 98"
        elif kind == SPO2 and low[j] == "on" and (on := _oxygen_phrase(low, j)) is not None:
            j, oxygen = on  # "SpO2 on room air is 86 percent", "sats on 2L 94%"
            reading.on_oxygen = reading.on_oxygen or oxygen
        else:
            return i + 1
        fill += 1
    if j >= len(low) or not _is_number(low[j]):
        return i + 1
    if low[i] in _LOOSE_LABELS:  # the reading must end the phrase: "sugar 45, ..." but not "sugar 2 spoons"
        trial = _Reading()
        after = _read_value(raw, low, i, end, j, kind, trial)
        if after <= j or not _ends_reading(low, after):
            return i + 1
        for k, values in trial.values.items():
            reading.values.setdefault(k, []).extend(values)
        reading.on_oxygen = reading.on_oxygen or trial.on_oxygen
        return after
    after = _read_value(raw, low, i, end, j, kind, reading)
    return after if after > j else i + 1


def _ends_reading(low: list[str], k: int) -> bool:
    """Whether the number before k ends its phrase: end of text, a symbol, a unit or a linking word."""
    return k >= len(low) or not low[k][0].isalpha() or low[k] in _CONTINUATIONS


def _words_before(low: list[str], i: int) -> list[str]:
    """Up to two words right before token i, not across punctuation."""
    words = []
    for word in reversed(low[max(0, i - 2) : i]):
        if not word[0].isalnum():
            break
        words.append(word)
    return words


def _label_at(raw: list[str], low: list[str], i: int) -> tuple[str, int] | None:
    if low[i] not in _FIRST_WORDS:
        return None
    for size in range(min(_MAX_PHRASE, len(low) - i), 0, -1):
        phrase = tuple(low[i : i + size])
        kind = _LABELS.get(phrase)
        if kind is not None:
            return kind, i + size
        kind = _CAPITAL_LABELS.get(phrase)
        if kind is not None and raw[i][0].isupper():
            return kind, i + size
    return None


def _is_number(tok: str) -> bool:
    return tok[0].isdigit()


def _read_value(raw: list[str], low: list[str], start: int, end: int, j: int, kind: str, reading: _Reading) -> int:
    """The number at j after the label low[start:end]; returns the index after the reading, or j
    when nothing was read."""
    label = " ".join(low[start:end])
    if kind in (BP, SBP, DBP):
        return _read_pressure(low, j, kind, label, reading)
    if kind == TEMP:
        return _read_temperature(low, j, reading)
    if kind == GLUCOSE:
        return _read_glucose(low, j, reading)
    value = float(low[j])
    k = j + 1
    if kind in (K, NA):
        k = _skip_units(low, k, ("mmol", "/", "l"), ("meq", "/", "l"), ("mmol",), ("meq",))
    elif kind == HGB:
        per_litre = _skip_units(low, k, ("g", "/", "l"), ("g", "l"))
        if per_litre > k or value > 25:
            value /= 10  # g/L, as UK labs write it
            k = per_litre
        else:
            k = _skip_units(low, k, ("g", "/", "dl"), ("gm", "/", "dl"), ("g", "dl"), ("g",))
    elif kind == HR:
        k = _skip_units(low, k, ("bpm",), ("beats", "per", "minute"), ("beats", "a", "minute"), ("beats",))
    elif kind == RR:
        k2 = _skip_units(low, k, *_RR_UNITS)
        if k2 == k and label in ("breathing",):
            return j  # "breathing 30" alone is not a rate: "breathing 30 times a minute" is
        k = k2
    elif kind == SPO2:
        k = _skip_units(low, k, ("%",), ("percent",), ("pct",))
        if k < len(low) and low[k] in _LITRES:
            return j
    elif kind == GCS:
        k = _skip_units(low, k, ("/", "15"), ("out", "of", "15"))
    if _followed_by_other_unit(low, k, kind):
        return j
    lo, hi = _RANGES[kind]
    if not lo <= value <= hi:
        return j
    reading.add(kind, value)
    if kind == SPO2:
        _read_oxygen_after(low, k, reading)
    return _more_values(low, k, kind, reading)


_RR_UNITS = (
    ("breaths", "per", "minute"),
    ("breaths", "a", "minute"),
    ("breaths", "per", "min"),
    ("breaths", "/", "min"),
    ("breaths", "/", "minute"),
    ("times", "a", "minute"),
    ("times", "per", "minute"),
    ("times", "per", "min"),
    ("times", "each", "minute"),
    ("times", "in", "a", "minute"),
    ("breaths", "in", "a", "minute"),
    ("breaths", "a", "min"),
    ("/", "min"),
    ("/", "minute"),
    ("per", "minute"),
    ("a", "minute"),
    ("breaths",),
    ("bpm",),
)


_BREATHS_PER_MINUTE = tuple(u for u in _RR_UNITS if u[0] == "breaths" and len(u) > 1)


def _skip_units(low: list[str], k: int, *units: tuple[str, ...]) -> int:
    """The index after the first of `units` found at k (k when none is)."""
    for unit in units:
        if tuple(low[k : k + len(unit)]) == unit:
            return k + len(unit)
    return k


def _followed_by_other_unit(low: list[str], k: int, kind: str) -> bool:
    if k >= len(low):
        return False
    word = low[k]
    if word == "s":  # "in the 140s"
        return False
    if word in _NOT_VITAL_UNITS and word not in _ALLOWED_UNITS.get(kind, ()):
        return True
    if word == "/" and k + 1 < len(low) and _is_number(low[k + 1]):
        return True  # a fraction, a date or a pain score ("8/10")
    return word == "-" and k + 2 < len(low) and _is_number(low[k + 1]) and low[k + 2] in ("-", ":")


def _is_time_or_date(low: list[str], j: int) -> bool:
    """10:30, 12/3/2024, 555-123-4567."""
    nxt = low[j + 1] if j + 1 < len(low) else ""
    if nxt == ":" and j + 2 < len(low) and _is_number(low[j + 2]):
        return True
    return nxt == "-" and j + 3 < len(low) and _is_number(low[j + 2]) and low[j + 3] == "-"


def _next_reading(low: list[str], k: int) -> int | None:
    """The index of a number after a few words of change at k ("then dropped to", "and now it's",
    "-", "to"), if there is one."""
    m, steps = k, 0
    while m < len(low) and steps < 5 and low[m] in _CHANGE_WORDS:
        m, steps = m + 1, steps + 1
    return m if steps and m < len(low) and _is_number(low[m]) else None


def _more_values(low: list[str], k: int, kind: str, reading: _Reading) -> int:
    """Later readings of the same kind right after the first: a range ("120-130", "99 to 103") or
    a change ("sats 96%, then dropped to 88%", "oxygen was 95 and now it's 87")."""
    while (m := _next_reading(low, k)) is not None:
        value = float(low[m])
        after = _skip_units(low, m + 1, ("%",), ("percent",)) if kind == SPO2 else m + 1
        lo, hi = _RANGES[kind]
        if not lo <= value <= hi or not _ends_reading(low, after) or _followed_by_other_unit(low, after, kind):
            break
        reading.add(kind, value)
        k = after
    return k


def _read_pressure(low: list[str], j: int, kind: str, label: str, reading: _Reading) -> int:
    got = _pressure_at(low, j, kind, label)
    if got is None:
        return j
    k, pairs = got[0], [got[1:]]
    while (m := _next_reading(low, k)) is not None:  # "bp 150/90, then went up to 190/110"
        more = _pressure_at(low, m, kind, label)
        if more is None or not _ends_reading(low, more[0]):
            break
        k = more[0]
        pairs.append(more[1:])
    for top, bottom in pairs:
        if bottom is not None:
            reading.add(SBP, top)
            reading.add(DBP, bottom)
        else:
            reading.add(DBP if kind == DBP else SBP, top)
    return k


def _pressure_at(low: list[str], j: int, kind: str, label: str) -> tuple | None:
    """(index after, top, bottom) of "190/115", "190 over 115", "190/palp" or, for a systolic or
    diastolic label, one number (then bottom is None)."""
    top = float(low[j])
    k = j + 1
    bottom = None
    if k + 1 < len(low) and low[k] in ("/", "over", "\\") and _is_number(low[k + 1]):
        bottom = float(low[k + 1])
        k += 2
    k = _skip_units(low, k, ("mmhg",), ("mm", "hg"), ("s",))
    if bottom is not None:
        if not (_RANGES[SBP][0] <= top <= _RANGES[SBP][1] and _RANGES[DBP][0] <= bottom < top):
            return None
        return k, top, bottom
    if label in ("pressure", "bps") or _followed_by_other_unit(low, k, kind):
        return None  # "pressure" alone is too common a word to go without both numbers
    if k < len(low) and low[k] in ("%", "percent"):
        return None
    lo, hi = _RANGES[DBP if kind == DBP else SBP]
    return (k, top, None) if lo <= top <= hi else None


def _temperature_c(value: float, unit: str | None) -> float | None:
    if unit == "c":
        celsius = value
    elif unit == "f":
        celsius = (value - 32) * 5 / 9
    elif 35 <= value <= 43:  # a bare number in the body's range: Celsius, 95-110: Fahrenheit
        celsius = value
    elif 95 <= value <= 110:
        celsius = (value - 32) * 5 / 9
    else:
        return None
    return round(celsius, 2) if 28 <= celsius <= 45 else None


_TEMP_UNITS = {"f": "f", "fahrenheit": "f", "farenheit": "f", "c": "c", "celsius": "c", "centigrade": "c"}


def _temperature_unit(low: list[str], k: int) -> tuple[str | None, int, bool]:
    """(unit, index after it, whether a degree sign or word was written)."""
    degree = False
    if k < len(low) and low[k] in ("deg", "degree", "degrees"):
        degree, k = True, k + 1
    if k < len(low) and low[k] in _TEMP_UNITS:
        return _TEMP_UNITS[low[k]], k + 1, degree
    return None, k, degree


def _read_temperature(low: list[str], j: int, reading: _Reading) -> int:
    unit, k, _ = _temperature_unit(low, j + 1)
    celsius = _temperature_c(float(low[j]), unit)
    if celsius is None or (unit is None and _followed_by_other_unit(low, k, TEMP)):
        return j
    reading.add(TEMP, celsius)
    while (m := _next_reading(low, k)) is not None:  # "temp 99 to 103", "temp was 101, now 104.5"
        unit_m, after, _ = _temperature_unit(low, m + 1)
        celsius = _temperature_c(float(low[m]), unit_m or unit)
        if celsius is None or not _ends_reading(low, after):
            break
        reading.add(TEMP, celsius)
        k = after
    return k


def _read_glucose(low: list[str], j: int, reading: _Reading) -> int:
    got = _glucose_at(low, j, mmol_before=False)
    if got is None:
        return j
    value, k, mmol = got
    reading.add(GLUCOSE, value)
    while (m := _next_reading(low, k)) is not None:  # "sugar was 12, now 15" (both mmol/L)
        got = _glucose_at(low, m, mmol_before=mmol)
        if got is None or not _ends_reading(low, got[1]):
            break
        reading.add(GLUCOSE, got[0])
        k = got[1]
    return k


def _glucose_at(low: list[str], j: int, mmol_before: bool) -> tuple[float, int, bool] | None:
    """(mg/dL, index after the reading, whether it was in mmol/L) of the number at j."""
    value = float(low[j])
    k = j + 1
    mg = _skip_units(low, k, ("mg", "/", "dl"), ("mg", "dl"), ("mgdl",), ("mg", "%"))
    mmol_unit = _skip_units(low, k, ("mmol", "/", "l"), ("mmol", "l"), ("mmol",))
    mmol = False
    if mg > k:
        k = mg
    elif mmol_unit > k or (value < 35 and ("." in low[j] or value < 20 or mmol_before)):
        value *= 18  # mmol/L: written so, or a decimal or a number too small to be mg/dL
        k, mmol = max(k, mmol_unit), True
    elif k < len(low) and low[k] == "mg":
        return None  # a dose ("glucose 500 mg")
    lo, hi = _RANGES[GLUCOSE]
    if _followed_by_other_unit(low, k, GLUCOSE) or not lo <= value <= hi:
        return None
    return round(value, 1), k, mmol


def _read_unlabelled(low: list[str], j: int, reading: _Reading) -> int:
    """A number with a unit that names the vital sign: 130 bpm, 101.4 F, 88% on room air,
    40 breaths a minute, 190/115 mmHg, "a 103 fever"."""
    if j > 0 and low[j - 1] in ("-", "/", ":", "."):  # the tail of a date, a time or a range already read
        return j + 1
    value = float(low[j])
    k = j + 1
    if k >= len(low):
        return k
    nxt = low[k]
    hr_end = _skip_units(low, k, ("bpm",), ("beats", "per", "minute"), ("beats", "a", "minute"))
    if hr_end > k:
        if _RANGES[HR][0] <= value <= _RANGES[HR][1]:
            reading.add(HR, value)
        return hr_end
    rr_end = _skip_units(low, k, *_BREATHS_PER_MINUTE)
    if rr_end > k:
        if _RANGES[RR][0] <= value <= _RANGES[RR][1]:
            reading.add(RR, value)
        return rr_end
    unit, after, degree = _temperature_unit(low, k)
    if unit is not None and (degree or low[k] in _TEMP_UNITS):
        celsius = _temperature_c(value, unit)
        # Without a label, only a fever-range body temperature: "it's 35 C today" is the weather,
        # "30 degrees celsius in fahrenheit" a conversion.
        if celsius is not None and 36.0 <= celsius <= 43.0 and not _about_weather(low, after):
            reading.add(TEMP, celsius)
        return after
    if nxt in ("deg", "degree", "degrees") and after < len(low) and low[after] in ("fever", "temp", "temperature"):
        celsius = _temperature_c(value, None)
        if celsius is not None:
            reading.add(TEMP, celsius)
        return after + 1
    if nxt in ("fever", "temp", "temperature") and (j == 0 or low[j - 1] in ("a", "of", "with", "had", "has")):
        celsius = _temperature_c(value, None)
        if celsius is not None:
            reading.add(TEMP, celsius)
        return k + 1
    if nxt == "%" and 50 <= value <= 100 and (j == 0 or low[j - 1] != "on"):  # not "on 100% oxygen"
        on = _oxygen_phrase(low, k + 1) if low[k + 1 : k + 2] == ["on"] else None
        if on is not None or low[k + 1 : k + 2] in (["ra"], ["sat"], ["sats"], ["saturation"], ["spo2"]):
            reading.add(SPO2, value)  # "88% RA", "88% on room air", "91% on 2L", "94% sats"
            reading.on_oxygen = reading.on_oxygen or bool(on and on[1])
            return on[0] if on else k + 2
    if nxt == "/" and k + 2 < len(low) and _is_number(low[k + 1]) and low[k + 2] in ("mmhg", "mm"):
        top, bottom = value, float(low[k + 1])
        if _RANGES[SBP][0] <= top <= _RANGES[SBP][1] and _RANGES[DBP][0] <= bottom < top:
            reading.add(SBP, top)
            reading.add(DBP, bottom)
        return k + 3
    return k


_WEATHER = frozenset("outside out weather oven water bath room house car inside heat heatwave sun shade".split())


def _about_weather(low: list[str], k: int) -> bool:
    """The weather, an oven or a unit conversion ("... in fahrenheit"), not a body temperature."""
    if low[k : k + 1] and low[k] in ("in", "to", "into") and low[k + 1 : k + 2] and low[k + 1] in _TEMP_UNITS:
        return True
    return bool(_WEATHER.intersection(low[k : k + 3]))


def _read_oxygen_after(low: list[str], k: int, reading: _Reading) -> None:
    """After an oxygen level: "on 2L", "on a non-rebreather", "RA" (room air)."""
    window = low[k : k + 6]
    for m, word in enumerate(window):
        if word in _SENTENCE_END:
            break
        if word == "ra" or (word == "room" and window[m + 1 : m + 2] == ["air"]):
            return  # on room air
        if word == "on":
            _read_oxygen_delivery(low, k + m, reading)
            return


def _read_oxygen_delivery(low: list[str], i: int, reading: _Reading) -> None:
    """ "on" at i: on oxygen, on 2L, on a non-rebreather, on BiPAP (not "not on oxygen")."""
    if i > 0 and low[i - 1] in ("not", "off", "never", "no", "without"):
        return
    nxt = low[i + 1 : i + 5]
    for m, word in enumerate(nxt):
        if word in _OXYGEN_DEVICES:
            if word == "high" and nxt[m + 1 : m + 2] != ["flow"]:
                continue
            if word == "non" and not (set(nxt[m + 1 : m + 3]) & {"rebreather", "rebreathing"}):
                continue
            reading.on_oxygen = True
            return
        if _is_number(word) and m + 1 < len(nxt) and nxt[m + 1] in _LITRES:
            reading.on_oxygen = True
            return
        if word not in _DEVICE_FILLERS and not _is_number(word):
            return


def _oxygen_phrase(low: list[str], i: int) -> tuple[int, bool] | None:
    """ "on" at i followed by room air or an oxygen device: (index after it, on oxygen)."""
    nxt = low[i + 1 : i + 4]
    if nxt[:1] == ["ra"]:
        return i + 2, False
    if nxt[:2] == ["room", "air"]:
        return i + 3, False
    if nxt[:1] and nxt[0] in ("o2", "oxygen", "nrb", "nonrebreather", "bipap", "cpap", "hfnc"):
        return i + 2, True
    if len(nxt) >= 2 and _is_number(nxt[0]) and nxt[1] in _LITRES:
        return i + 3, True
    return None


def _read_troponin(low: list[str], i: int, reading: _Reading) -> None:
    for word in low[i + 1 : i + 5]:
        if word in _SENTENCE_END:
            return
        if word in ("not", "no"):
            return
        if word in _NEGATIVE:
            reading.add("troponin_positive", 0.0)
            return
        if word in _POSITIVE:
            reading.add("troponin_positive", 1.0)
            return


_NORMAL_BAND = {  # (low, high) of normal, to choose the worst of several readings; all values are > 0
    HR: (60, 100),
    RR: (12, 20),
    SBP: (100, 140),
    DBP: (60, 90),
    SPO2: (96, 100),
    TEMP: (36.1, 38.0),
    GLUCOSE: (70, 180),
    K: (3.5, 5.0),
    NA: (135, 145),
    HGB: (12, 17),
    GCS: (15, 15),
    "troponin_positive": (0, 0),
}


def _worst(kind: str, values: list[float]) -> float:
    """The reading furthest from normal, as a ratio (a sugar of 35 is further out than 250)."""
    lo, hi = _NORMAL_BAND[kind]
    if hi <= 0:
        return max(values)  # troponin: positive (1) over negative (0)
    return max(values, key=lambda v: max(lo / v, v / hi))


# --- assessing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    finding: str
    parameter: str
    test: Callable[[float], bool]
    level: str
    source: Source
    reason: str
    adults_only: bool = False
    from_months: float | None = None
    below_months: float | None = None
    pregnant: bool = False
    with_parameter: str | None = None
    with_test: Callable[[float], bool] | None = None


@dataclass(frozen=True)
class Thresholds:
    sources: dict[str, Source]
    danger_zone: dict[str, Any]
    news2: dict[str, Any]
    rules: tuple[_Rule, ...]


class VitalsFileError(ValueError):
    pass


_COMPARISONS = {
    "at_least": lambda limit: lambda v: v >= limit,
    "at_most": lambda limit: lambda v: v <= limit,
    "above": lambda limit: lambda v: v > limit,
    "below": lambda limit: lambda v: v < limit,
}
_PARAMETERS = frozenset(
    [*_VITAL_FIELDS, "potassium", "sodium", "haemoglobin", "troponin_positive"],
)
NEWS2_PARAMETERS = ("resp_rate", "spo2", "systolic", "heart_rate", "temperature_c", "gcs")


def load_thresholds(path: Path = VITALS_FILE) -> Thresholds:
    data = yaml.safe_load(path.read_text())
    sources = {key: Source(**s) for key, s in (data.get("sources") or {}).items()}

    def source(key: str, where: str) -> Source:
        if key not in sources:
            raise VitalsFileError(f"{path.name}: {where}: unknown source {key!r}")
        return sources[key]

    def comparison(spec: dict[str, Any], where: str) -> Callable[[float], bool]:
        keys = [k for k in _COMPARISONS if k in spec]
        if len(keys) != 1:
            raise VitalsFileError(f"{path.name}: {where}: needs exactly one of {', '.join(_COMPARISONS)}")
        return _COMPARISONS[keys[0]](float(spec[keys[0]]))

    rules = []
    for n, r in enumerate(data.get("rules") or []):
        where = f"rule {n + 1} ({r.get('finding')})"
        if r.get("parameter") not in _PARAMETERS:
            raise VitalsFileError(f"{path.name}: {where}: unknown parameter {r.get('parameter')!r}")
        if r.get("level") not in LEVEL_RANK:
            raise VitalsFileError(f"{path.name}: {where}: unknown level {r.get('level')!r}")
        with_spec = r.get("with")
        if with_spec is not None and with_spec.get("parameter") not in _PARAMETERS:
            raise VitalsFileError(f"{path.name}: {where}: unknown parameter in with")
        rules.append(
            _Rule(
                finding=r["finding"],
                parameter=r["parameter"],
                test=comparison(r, where),
                level=r["level"],
                source=source(r["source"], where),
                reason=r["reason"],
                adults_only=bool(r.get("adults_only", False)),
                from_months=r.get("from_months"),
                below_months=r.get("below_months"),
                pregnant=bool(r.get("pregnant", False)),
                with_parameter=with_spec["parameter"] if with_spec else None,
                with_test=comparison(with_spec, where + " with") if with_spec else None,
            )
        )
    danger_zone = dict(data["danger_zone"])
    danger_zone["source"] = source(danger_zone["source"], "danger_zone")
    news2_spec = dict(data["news2"])
    news2_spec["source"] = source(news2_spec["source"], "news2")
    if set(news2_spec["scores"]) != set(NEWS2_PARAMETERS):
        raise VitalsFileError(f"{path.name}: news2 scores must cover {', '.join(NEWS2_PARAMETERS)}")
    levels = [danger_zone["one"], danger_zone["spo2"], danger_zone["several"]]
    for level in levels + [band["level"] for band in news2_spec["levels"]]:
        if level not in LEVEL_RANK:
            raise VitalsFileError(f"{path.name}: danger_zone or news2: unknown level {level!r}")
    thresholds = Thresholds(sources=sources, danger_zone=danger_zone, news2=news2_spec, rules=tuple(rules))
    for text in _all_reasons(thresholds):  # a typo in a placeholder fails here, not in front of a patient
        try:
            text.format_map(_SAMPLE_VALUES)
        except (KeyError, ValueError) as exc:
            raise VitalsFileError(f"{path.name}: reason {text!r}: {exc}") from exc
    return thresholds


def _all_reasons(t: Thresholds) -> list[str]:
    reasons = [r.reason for r in t.rules] + [lv["reason"] for lv in t.news2["levels"]]
    return reasons + list(t.danger_zone["reasons"].values())


@lru_cache(maxsize=1)
def default_thresholds() -> Thresholds:
    return load_thresholds()


def __getattr__(name: str) -> Any:
    # VITAL_SOURCES is read from vitals.yml on first use, not at import.
    if name == "VITAL_SOURCES":
        return vital_sources()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def vital_sources(thresholds: Thresholds | None = None) -> list[Source]:
    """Every source the thresholds cite, in the file's order."""
    return list((thresholds or default_thresholds()).sources.values())


def _value(v: Vitals, parameter: str) -> float | None:
    if parameter in _VITAL_FIELDS:
        return getattr(v, parameter)
    return v.labs.get(parameter)


def _is_adult(age_months: float | None, news2_spec: dict[str, Any]) -> bool:
    return age_months is None or age_months >= news2_spec["adult_from_months"]


def news2(v: Vitals, thresholds: Thresholds | None = None) -> int | None:
    """The NEWS2 aggregate (SpO2 scale 1) when at least 3 of its parameters are stated. For adults
    (16 and over): the caller checks the age, assess_vitals() does."""
    spec = (thresholds or default_thresholds()).news2
    stated = [p for p in NEWS2_PARAMETERS if _value(v, p) is not None]
    if len(stated) < spec["min_parameters"]:
        return None
    total = spec["on_oxygen_score"] if v.on_oxygen else 0
    for p in stated:
        value = _value(v, p)
        value = round(value, 1) if p == "temperature_c" else round(value)
        for at_most, score in spec["scores"][p]:
            if at_most is None or value <= at_most:
                total += score
                break
    return total


def assess_vitals(
    v: Vitals, age_months: float | None, pregnant: bool | None = None, thresholds: Thresholds | None = None
) -> list[VitalFinding]:
    """The danger zones the stated values fall in, most urgent first. Values inside the normal
    range give no finding. Unknown age counts as adult."""
    t = thresholds or default_thresholds()
    found: dict[str, VitalFinding] = {}
    values = _display_values(v)

    def add(name: str, level: str, reason: str, source: Source) -> None:
        old = found.get(name)
        if old is None or LEVEL_RANK[level] > LEVEL_RANK[old.level]:
            found[name] = VitalFinding(name, level, reason.format_map(values), source)

    _danger_zone(v, age_months, t, add)
    adult = _is_adult(age_months, t.news2)
    for rule in t.rules:
        value = _value(v, rule.parameter)
        if value is None or not rule.test(value):
            continue
        if rule.adults_only and not adult:
            continue
        if rule.from_months is not None and (age_months is None or age_months < rule.from_months):
            continue
        if rule.below_months is not None and (age_months is None or age_months >= rule.below_months):
            continue
        if rule.pregnant and pregnant is not True:
            continue
        if rule.with_parameter is not None:
            other = _value(v, rule.with_parameter)
            if other is None or not rule.with_test(other):
                continue
        add(rule.finding, rule.level, rule.reason, rule.source)
    if adult:
        score = news2(v, t)
        if score is not None:
            values["news2"] = str(score)
            for band in t.news2["levels"]:
                if score >= band["at_least"]:
                    add(band["finding"], band["level"], band["reason"], t.news2["source"])
                    break
    return sorted(found.values(), key=lambda f: -LEVEL_RANK[f.level])


def _danger_zone(v: Vitals, age_months: float | None, t: Thresholds, add: Callable[..., None]) -> None:
    spec = t.danger_zone
    age = math.inf if age_months is None else age_months
    band = next(b for b in spec["bands"] if b["below_months"] is None or age < b["below_months"])
    reasons, source = spec["reasons"], spec["source"]
    several = []
    if v.heart_rate is not None and v.heart_rate > band["heart_rate_above"]:
        add("heart_rate_high", spec["one"], reasons["heart_rate"], source)
        several.append(f"heart rate {_num(v.heart_rate)}")
    if v.resp_rate is not None and v.resp_rate > band["resp_rate_above"]:
        add("resp_rate_high", spec["one"], reasons["resp_rate"], source)
        several.append(f"breathing rate {_num(v.resp_rate)}")
    if v.spo2 is not None and v.spo2 < spec["spo2_below"]:
        add("spo2_low", spec["spo2"], reasons["spo2"], source)
        several.append(f"oxygen level {_num(v.spo2)}%")
    if len(several) >= 2:
        text = reasons["several"].replace("{several}", ", ".join(several))
        add("danger_zone_vitals", spec["several"], text, source)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class _Values(dict):
    """Placeholders for reasons; one that was not stated reads as "not stated"."""

    def __missing__(self, key: str) -> str:
        return "not stated"


def _display_values(v: Vitals) -> _Values:
    values = _Values()
    if v.heart_rate is not None:
        values["heart_rate"] = _num(v.heart_rate)
    if v.resp_rate is not None:
        values["resp_rate"] = _num(v.resp_rate)
    if v.systolic is not None:
        values["systolic"] = _num(v.systolic)
        values["bp"] = _num(v.systolic) + (f"/{_num(v.diastolic)}" if v.diastolic is not None else "")
    if v.diastolic is not None:
        values["diastolic"] = _num(v.diastolic)
        values.setdefault("bp", f"?/{_num(v.diastolic)}")
    if v.spo2 is not None:
        values["spo2"] = f"{_num(v.spo2)}%"
    if v.temperature_c is not None:
        c = v.temperature_c
        values["temperature"] = f"{c:.1f}°C ({c * 9 / 5 + 32:.1f}°F)"
    if v.glucose_mg_dl is not None:
        mg = v.glucose_mg_dl
        values["glucose"] = f"{_num(round(mg))} mg/dL ({mg / 18:.1f} mmol/L)"
    if v.gcs is not None:
        values["gcs"] = _num(v.gcs)
    for lab in ("potassium", "sodium", "haemoglobin"):
        if lab in v.labs:
            values[lab] = _num(v.labs[lab])
    return values


_SAMPLE_VALUES = dict(
    heart_rate="120",
    resp_rate="24",
    bp="80/50",
    systolic="80",
    diastolic="50",
    spo2="88%",
    temperature="38.5°C (101.3°F)",
    glucose="45 mg/dL (2.5 mmol/L)",
    potassium="6.8",
    sodium="118",
    haemoglobin="6.9",
    gcs="13",
    news2="7",
    several="heart rate 120, breathing rate 24",
)
