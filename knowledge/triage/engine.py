"""Symptom triage to a level of care, from protocols as data (knowledge/triage/protocols/*.yml).

Facts come from what the patient typed (one-shot narrative) and from their answers to the
triage form's questions. `assess(facts)` applies, in order: the red-flag rules (any hit is an
emergency), then each matched protocol's rules (first match wins per protocol; the highest level
over all protocols wins). A finding the patient was not sure about counts as present, capped at
`urgent`: unknown answers push the level up, not down.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import re2
import yaml

from careline.contracts import ScreenOutcome
from knowledge.messages import MessageError, msg
from knowledge.triage.redflags import RedFlagRules, RuleFileError, Source, default_rules
from knowledge.triage.safe_regex import any_of
from knowledge.triage.textmatch import (
    RULES_DIR,
    Clause,
    Lexicon,
    as_list,
    in_history,
    in_negated_list,
    negated,
    normalise,
    sentences,
)
from knowledge.triage.vitals import Vitals, assess_vitals, read_vitals


class TriageLevel(StrEnum):
    """Levels of care, lowest first: the order is the rank."""

    SELF_CARE = "self_care"
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"


LEVELS = tuple(level.value for level in TriageLevel)  # plain strings, as the rule files write them
RANK = {level: i for i, level in enumerate(TriageLevel)}


def higher(a: str, b: str) -> str:
    return a if RANK[a] >= RANK[b] else b


@dataclass(frozen=True)
class Finding:
    name: str
    patterns: tuple[Any, ...]
    label: str  # plain language, used in reasons and questions' summaries
    unless: tuple[Any, ...] = ()  # a sentence matching one of these says nothing about the finding
    shared: bool = False  # defined once in common.yml, usable by every protocol
    history_ok: bool = False  # a state anchored in the past ("last period 7 weeks ago"), read in history too


@dataclass(frozen=True)
class Question:
    id: str
    ask: str  # may use {you}, {your}, {are_you}, {do_you}, {have_you}
    kind: str  # yes_no | who | duration | severity | conditions | pregnant
    finding: str | None = None


@dataclass(frozen=True)
class ProtocolRule:
    level: TriageLevel
    reason: str
    source: Source
    when: dict[str, Any]
    id: str = ""  # generic.yml names its rules


@dataclass(frozen=True)
class Protocol:
    id: str
    title: str
    complaint: tuple[Any, ...]
    findings: dict[str, Finding]
    questions: tuple[Question, ...]
    rules: tuple[ProtocolRule, ...]
    default: ProtocolRule
    self_care: dict[str, Any]
    sources: dict[str, Source]
    priority: int = 50
    complaint_unless: tuple[Any, ...] = ()  # a sentence matching one of these names no complaint
    when_pregnant: bool = False  # applies to anything a pregnant patient reports
    self_limited: bool = False  # its problems usually get better on their own (self-care criteria)


@dataclass(frozen=True)
class Generic:
    """Discriminators applied to every message (generic.yml): every rule that holds contributes."""

    findings: dict[str, Finding]
    rules: tuple[ProtocolRule, ...]
    self_care: dict[str, Any]
    sources: dict[str, Source]


@dataclass
class Facts:
    """What is known about the patient and the complaint. None = not known (not asked yet)."""

    complaints: list[str] = field(default_factory=list)
    who: str | None = None  # adult | older_adult | child | infant
    age_months: float | None = None
    pregnant: bool | None = None
    duration_hours: float | None = None
    severity: str | None = None  # mild | moderate | severe
    temperature_f: float | None = None
    conditions: set[str] = field(default_factory=set)
    conditions_known: bool = False
    findings: dict[str, bool] = field(default_factory=dict)  # True present, False absent
    unsure: set[str] = field(default_factory=set)  # findings or facts answered "not sure"
    red_flags: list[str] = field(default_factory=list)  # rule ids of the safety screen
    vitals: dict[str, Any] = field(default_factory=dict)  # numbers read from the text (knowledge/triage/vitals.py)

    def to_dict(self) -> dict[str, Any]:
        return {
            "complaints": self.complaints,
            "who": self.who,
            "age_months": self.age_months,
            "pregnant": self.pregnant,
            "duration_hours": self.duration_hours,
            "severity": self.severity,
            "temperature_f": self.temperature_f,
            "conditions": sorted(self.conditions),
            "conditions_known": self.conditions_known,
            "findings": self.findings,
            "unsure": sorted(self.unsure),
            "red_flags": self.red_flags,
            "vitals": self.vitals,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Facts:
        data = dict(data or {})
        data["conditions"] = set(data.get("conditions") or [])
        data["unsure"] = set(data.get("unsure") or [])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class _Reading:
    """One message cut once: its sentences, the parts of each that speak of now, and both
    joined with spaces for the gates."""

    text: str
    clauses: list[Clause]
    current: list[list[str]]
    plain: str
    now: str
    negated: dict[tuple[str, int, int], bool] = field(default_factory=dict)  # per match, found once


@dataclass
class Assessment:
    level: TriageLevel
    complaint: str | None
    reasons: list[str]
    rules: list[str]
    sources: list[Source]
    red_flags: bool = False  # a red-flag finding or rule contributed
    self_care: dict[str, Any] | None = None
    # every complaint and discriminator that was assessed: {"part", "level", "reasons", "rules"}
    parts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "complaint": self.complaint,
            "reasons": self.reasons,
            "rules": self.rules,
            "sources": [{"organisation": s.organisation, "title": s.title, "url": s.url} for s in self.sources],
            "red_flags": self.red_flags,
            "parts": self.parts,
        }


# --- facts from text ----------------------------------------------------------------------------

_NUM_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "twelve": 12,
    "few": 3,
    "couple": 2,
    "several": 4,
}
_UNIT_HOURS = {"minute": 1 / 60, "hour": 1, "day": 24, "night": 24, "week": 168, "month": 720, "year": 8760}
# The spaces after the lead word belong to it, and a number starts where its digits start: a
# search from every space of a long run, or every digit of a long number, would otherwise read
# the rest of it again each time (tests/unit/knowledge/triage/test_safe_regex.py).
_DURATION = re.compile(
    r"(?:(?:for|since|past|last|about|around|over|almost|nearly|x)\s*)?(?:the )?(?:past |last )?"
    r"((?<![0-9])\d+(?:\.\d+)?|a|an|one|two|three|four|five|six|seven|eight|nine|ten|twelve|few|couple|several)"
    r"(?: of)? (minute|hour|day|night|week|month|year)s?(?! old)"
)
_SINCE = [
    (re.compile(r"since (this morning|earlier today|today|a few hours ago|an hour ago|lunch|breakfast)"), 6),
    (re.compile(r"since (last night|yesterday|yesterday morning|yesterday evening)"), 24),
    (re.compile(r"since (the weekend|monday|tuesday|wednesday|thursday|friday|saturday|sunday)"), 96),
    (re.compile(r"since last week"), 168),
    (re.compile(r"since last month"), 720),
    (re.compile(r"\b(just started|just now|all of a sudden|suddenly|out of nowhere|started (\d+ )?minutes ago)\b"), 1),
    (re.compile(r"\b(this morning|tonight|today)\b"), 6),
    (re.compile(r"\b(yesterday|last night|overnight)\b"), 24),
]
# RE2 (linear time): the lead words overlap the fillers ("at at at ... 101"), so a backtracking
# search would read the run of fillers again from each of them.
_TEMP = re2.compile(
    r"(?:fever|temp|temperature|febrile|t|tmax|of|is|was|at|reading|hit|spiked to)\s*"
    r"(?:of |is |was |at |to |around |about |like )*(\d{2,3}(?:\.\d)?)\s*(f|c)?\b"
    r"|\b(\d{2,3}(?:\.\d)?)\s*(f|c)\b"
    # a bare reading with where it was taken: "38.2 under the arm", "100.8 rectal"
    r"|\b(\d{2,3}(?:\.\d)?)\s*(f|c)?\s*(?:under (?:the|her|his|their|my) arm"
    r"|in (?:the|her|his|their|my) (?:armpit|ear|mouth|bottom)|axillary|rectal|rectally|orally|tympanic)"
)
_AGE_YEARS = re.compile(
    r"\b(\d{1,3}) year olds?\b|\bage (\d{1,3})\b|\baged (\d{1,3})\b|\b(\d{1,3}) years old\b|\bim (\d{2})\b"
    r"|\b(?:mom|mum|mother|dad|father|husband|wife|grandma|grandpa|grandmother|grandfather|son|daughter|"
    r"brother|sister|partner|roommate|neighbou?r|he|she|hes|shes|who) (?:is |was |turned )?(\d{1,3})\b"
    r"(?![.\d]| (?:percent|f|c|lbs|pounds|kg|minutes|hours|days|weeks|months|times|mg|out|and a half))"
)
_NOW_AFTER = re.compile(
    r"(?<![a-z0-9])(?:and|but|,|so|then|until) (?:now|today|tonight|this (?:morning|afternoon|evening)) (?=[a-z])"
)
_NOW_FINE = re.compile(
    r"(?:(?:im|i am|i feel|feeling|hes|shes|he is|she is|its|it is|all|doing|were|theyre) )?"
    r"(?:totally |completely |much |a lot |all )?"
    r"(?:fine|better|ok|okay|well|good|great|normal|recovered|healed|resolved)\b"
)
_AGE_MONTHS = re.compile(r"\b(\d{1,2}) month old\b")
_AGE_WEEKS = re.compile(r"\b(\d{1,2}) week olds?\b|\b(\d{1,2}) (?:days?) olds?\b")


def _number(token: str) -> float:
    return float(_NUM_WORDS.get(token, token)) if not token.replace(".", "").isdigit() else float(token)


_SHORTHAND = re.compile(
    r"\bx ?(\d+(?:\.\d+)?) ?(min|minutes|h|hr|hrs|hours|d|days|w|wk|wks|weeks|mo|months)\b"
    r"|\b(\d+(?:\.\d+)?)(h|d|wk|wks|mo)\b"
)
_GESTATION = re.compile(
    r"\b(?:im |i am |shes |she is |at )?\d{1,2} (?:weeks?|wks?) (?:pregnant|along|gestation)\b"
    r"|(?:^|[.;!?] )(?:im |i am )?\d{1,2} weeks?(?= and\b| ,)|\b(?:im|i am|shes|she is) \d{1,2} weeks?(?= and\b| ,|$)"
    r"|\b(?:im|i am|shes|she is|were|we are) \d{1,2} (?:weeks|wks) (?:with|gone|along)\b"
)
_SHORT_UNIT = {
    "min": "minute",
    "minutes": "minute",
    "h": "hour",
    "hr": "hour",
    "hrs": "hour",
    "hours": "hour",
    "d": "day",
    "days": "day",
    "w": "week",
    "wk": "week",
    "wks": "week",
    "weeks": "week",
    "mo": "month",
    "months": "month",
}


def parse_duration_hours(text: str) -> float | None:
    """Longest duration stated ("for 3 days", "since yesterday", "2 wks", clinicians' "x3d") in hours."""
    best = None
    text = _GESTATION.sub(" ", text)  # "24 weeks pregnant" is not how long a symptom has lasted
    for m in _SHORTHAND.finditer(text):  # "x3d", "x 2 wk", "48h"
        value = float(m.group(1) or m.group(3)) * _UNIT_HOURS[_SHORT_UNIT[m.group(2) or m.group(4)]]
        best = value if best is None else max(best, value)
    for m in _DURATION.finditer(text):
        value = _number(m.group(1)) * _UNIT_HOURS[m.group(2)]
        best = value if best is None else max(best, value)
    if best is None:
        for pattern, hours in _SINCE:
            if pattern.search(text):
                return float(hours)
    return best


def parse_temperature_f(text: str) -> float | None:
    best = None
    for m in _TEMP.finditer(text):
        raw = m.group(1) or m.group(3) or m.group(5)
        unit = m.group(2) or m.group(4) or m.group(6)
        value = float(raw)
        if unit == "c" or (unit is None and 35 <= value <= 43):
            value = value * 9 / 5 + 32
        if 95 <= value <= 110:
            best = value if best is None else max(best, value)
    return best


class TriageEngine:
    def __init__(
        self, protocols: list[Protocol], common: dict[str, Any], redflags: RedFlagRules, generic: Generic | None = None
    ):
        self.protocols = {p.id: p for p in protocols}
        self.generic = generic or Generic({}, (), {}, {})
        self.common = common
        self.redflags = redflags
        self.lexicon: Lexicon = redflags.lexicon
        lx = self.lexicon
        self._who = {k: [lx.compile(p) for p in v] for k, v in common["who"].items()}
        self._pregnant = [lx.compile(p) for p in common["pregnant"]]
        self._pregnant_unless = [lx.compile(p) for p in common.get("pregnant_unless") or []]
        self._recent_states = [lx.compile(p) for p in common.get("recent_states") or []]
        self._common_findings = _findings(common.get("findings") or {}, lx, "common.yml")
        self._severity = {k: [lx.compile(p) for p in v] for k, v in common["severity"].items()}
        self._conditions = {k: [lx.compile(p) for p in v] for k, v in common["conditions"].items()}
        # One RE2 search per list of patterns and message: a list it cannot match is not tried
        # sentence by sentence (a message of a thousand short sentences stays cheap).
        groups = (
            [p.complaint for p in protocols]
            + list(self._who.values())
            + [self._pregnant]
            + list(self._severity.values())
            + list(self._conditions.values())
            + [f.patterns for f in self._common_findings.values()]
            + [f.patterns for p in protocols for f in p.findings.values()]
            + [f.patterns for f in self.generic.findings.values()]
        )
        self._gates = {id(g): any_of([p.body for p in g]) for g in groups if g}

    @classmethod
    def load(cls, directory: Path = RULES_DIR, redflags: RedFlagRules | None = None) -> TriageEngine:
        redflags = redflags or RedFlagRules.load(directory)
        common = _with_texts(yaml.safe_load((directory / "common.yml").read_text()))
        protocols = [
            _load_protocol(p, redflags.lexicon, common) for p in sorted((directory / "protocols").glob("*.yml"))
        ]
        owner: dict[str, str] = {name: "common" for name in (common.get("findings") or {})}
        for protocol in protocols:  # facts hold findings by name: one name, one meaning
            for name in protocol.findings:
                if name in owner and owner[name] == "common" and protocol.findings[name].shared:
                    continue
                if name in owner:
                    raise RuleFileError(f"{protocol.id}.yml: finding {name} is also defined in {owner[name]}.yml")
                owner[name] = protocol.id
        generic = _load_generic(directory / "generic.yml", redflags.lexicon)
        for name in generic.findings:
            if name in owner:
                raise RuleFileError(f"generic.yml: finding {name} is also defined in {owner[name]}.yml")
        return cls(protocols, common, redflags, generic)

    # -- reading text ---------------------------------------------------------------------------
    def _reading(self, text: str) -> _Reading:
        clauses = sentences(text)
        current = [self._current_parts(c.text) for c in clauses]
        return _Reading(
            text,
            clauses,
            current,
            " ".join(c.text for c in clauses),
            " ".join(part for parts in current for part in parts),
        )

    def _matches(
        self, patterns, text: str, unless=(), history: bool = True, reading: _Reading | None = None
    ) -> bool | None:
        """True if a pattern matches un-negated, False if it matches only negated, else None."""
        if reading is None or reading.text != text:
            reading = self._reading(text)
        gate = self._gates.get(id(patterns))
        if gate is not None and gate.search(reading.now if history else reading.plain) is None:
            return None  # every sentence (or part of one) is in the text the gate searched
        seen_negated = False
        for clause, current in zip(reading.clauses, reading.current, strict=False):
            if any(u.search(clause.text) for u in unless):
                continue
            for part in current if history else [clause.text]:
                for pattern in patterns:
                    for m in pattern.finditer(part):
                        key = (part, m.start(), m.end())
                        if key not in reading.negated:  # many findings match the same words
                            reading.negated[key] = negated(part, m.start(), self.lexicon) or in_negated_list(
                                part, m.start(), m.end()
                            )
                        if reading.negated[key]:
                            seen_negated = True
                        else:
                            return True
        return False if seen_negated else None

    def _current_parts(self, sentence: str) -> list[str]:
        """A history cue ("positive test last week") rules out its own comma-separated part of
        the sentence, not what the rest of the sentence says is happening now. A recent state
        ("had my baby 2 weeks ago", "started iron tablets 2 weeks ago") is not history, and what
        follows "and now" / "but now" is happening now ("... and now I'm constipated")."""
        probe = sentence
        for state in self._recent_states:
            probe = state.sub(lambda m: "_" * len(m.group(0)), probe)
        if not in_history(probe, self.lexicon):
            return [sentence]

        def current(part: str, probe_part: str) -> str:
            if not in_history(probe_part, self.lexicon):
                return part
            m = _NOW_AFTER.search(part)
            if m and not _NOW_FINE.match(part, m.end()):
                return " " * m.start() + part[m.start() :]
            return " " * len(part)

        # blank the historical parts in place, so that a negation before them still reaches on
        parts, probes = sentence.split(" , "), probe.split(" , ")
        if len(parts) != len(probes):
            probes = parts
        return [" , ".join(current(a, b) for a, b in zip(parts, probes, strict=False))]

    def read(self, text: str, facts: Facts | None = None, protocols: list[str] | None = None) -> Facts:
        """Update facts with everything this message says. Later statements override earlier ones."""
        facts = facts or Facts()
        norm = normalise(text, self.lexicon)
        reading = self._reading(norm)
        for pid, protocol in sorted(self.protocols.items(), key=lambda kv: kv[1].priority):
            if pid not in facts.complaints and self._matches(
                protocol.complaint, norm, protocol.complaint_unless, reading=reading
            ):
                facts.complaints.append(pid)
        self._read_who(norm, reading, facts)
        self._read_pregnancy(norm, reading, facts)
        duration = parse_duration_hours(norm)
        if duration is not None:
            facts.duration_hours = duration
        temperature = parse_temperature_f(norm)
        if temperature is not None:
            facts.temperature_f = temperature
        for level in ("severe", "moderate", "mild"):
            if self._matches(self._severity[level], norm, reading=reading):
                facts.severity = level
                break
        for condition, patterns in self._conditions.items():  # a long-term condition is a state, not history
            if self._matches(patterns, norm, history=False, reading=reading):
                facts.conditions.add(condition)
                facts.conditions_known = True
        self._read_findings(norm, reading, facts, protocols or list(self.protocols))
        for name, finding in self.generic.findings.items():
            present = self._matches(
                finding.patterns, norm, finding.unless, history=not finding.history_ok, reading=reading
            )
            if present is not None:
                facts.findings[name] = present
        facts.vitals.update(_stated(read_vitals(text)))
        screening = self.redflags.screen(text)
        if screening.outcome in (ScreenOutcome.EMERGENCY, ScreenOutcome.CRISIS):
            facts.red_flags = sorted(set(facts.red_flags) | set(screening.rules))
        return facts

    def _read_who(self, norm: str, reading: _Reading, facts: Facts) -> None:
        """Who the patient is: from a stated age if there is one, else from words ("my baby")."""
        months = _AGE_MONTHS.search(norm)
        weeks = _AGE_WEEKS.search(norm)
        years = _AGE_YEARS.search(norm)
        if weeks:
            facts.age_months = float(next(g for g in weeks.groups() if g)) / 4.3
        elif months:
            facts.age_months = float(months.group(1))
        elif years:
            facts.age_months = 12 * float(next(g for g in years.groups() if g))
        if facts.age_months is not None:
            facts.who = (
                "infant"
                if facts.age_months < 12
                else "child"
                if facts.age_months < 18 * 12
                else "older_adult"
                if facts.age_months >= 65 * 12
                else "adult"
            )
        else:
            for who in ("infant", "child", "older_adult", "adult"):
                if self._matches(self._who.get(who, []), norm, reading=reading):
                    facts.who = who
                    break

    def _read_pregnancy(self, norm: str, reading: _Reading, facts: Facts) -> None:
        # "6 weeks pregnant (positive test last week)": being pregnant is a state, not history
        if self._matches(self._pregnant, norm, self._pregnant_unless, history=False, reading=reading):
            facts.pregnant = True
            # "baby is moving normally" speaks of the fetus: the patient is the pregnant woman
            if facts.age_months is None and facts.who in (None, "infant"):
                facts.who = "adult"
        if facts.pregnant:  # being pregnant changes every complaint's meaning
            for pid, protocol in self.protocols.items():
                if protocol.when_pregnant and pid not in facts.complaints:
                    facts.complaints.append(pid)

    def _read_findings(self, norm: str, reading: _Reading, facts: Facts, wanted: list[str]) -> None:
        """The common findings, and those of the `wanted` protocols, said present or absent."""
        for name, finding in self._common_findings.items():
            present = self._matches(finding.patterns, norm, finding.unless, reading=reading)
            if present is not None:
                facts.findings[name] = present
                facts.unsure.discard(name)
        for pid in wanted:
            for name, finding in self.protocols[pid].findings.items():
                if finding.shared:
                    continue
                present = self._matches(finding.patterns, norm, finding.unless, reading=reading)
                if present is not None:
                    facts.findings[name] = present
                    facts.unsure.discard(name)

    # -- deciding -------------------------------------------------------------------------------
    def assess(self, facts: Facts) -> Assessment:
        """Every complaint's protocol, the generic discriminators and the vital signs; the highest
        level wins, with the reasons of everything that reached it."""
        if facts.red_flags:
            rules = [r for r in self.redflags.rules if r.id in facts.red_flags]
            return Assessment(
                TriageLevel.EMERGENCY,
                facts.complaints[0] if facts.complaints else None,
                [r.reason for r in rules] or [msg("triage.reason.red_flag")],
                list(facts.red_flags),
                _unique([r.source for r in rules]),
                red_flags=True,
                parts=[{"part": "screen", "level": TriageLevel.EMERGENCY, "rules": list(facts.red_flags)}],
            )
        # A protocol that matched only in passing and fell through to a routine or self-care
        # default ("not sure, have it checked") does not outrank a protocol whose own rule
        # recognised the problem.
        results = [self._assess_protocol(self.protocols[pid], facts) for pid in facts.complaints]
        decided = [a for a, by_default in results if not by_default or RANK[a.level] >= RANK[TriageLevel.URGENT]]
        pool = decided or [a for a, _ in results]
        generic = self._assess_generic(facts)
        everything = pool + generic
        if not everything:
            unmatched = self.common["unmatched"]
            return Assessment(TriageLevel(unmatched["level"]), None, [unmatched["reason"]], ["unmatched"], [])
        top = max(RANK[a.level] for a in everything)
        winners = [a for a in everything if RANK[a.level] == top]
        best = winners[0]
        parts = [
            {"part": a.complaint or "generic", "level": a.level, "reasons": a.reasons, "rules": a.rules}
            for a in everything
        ]
        if best.level == TriageLevel.ROUTINE and not generic:
            care = self._self_care(facts, [(a, d) for a, d in results if a in winners])
            if care is not None:
                return replace(care, parts=parts)
        floor = _below_routine_is_unsafe(facts, self.generic.self_care)
        if best.level == TriageLevel.SELF_CARE and floor:
            return Assessment(
                TriageLevel.ROUTINE,
                best.complaint,
                [msg(floor)],
                [*best.rules, "generic:never_below_routine"],
                [self.generic.self_care["source"]],
                parts=parts,
            )
        return Assessment(
            best.level,
            best.complaint or (facts.complaints[0] if facts.complaints else None),
            _unique_texts([r for a in winners for r in a.reasons]),
            _unique_texts([r for a in winners for r in a.rules]),
            _unique([s for a in winners for s in a.sources]),
            red_flags=any(a.red_flags for a in winners),
            self_care=best.self_care,
            parts=parts,
        )

    def _assess_generic(self, facts: Facts) -> list[Assessment]:
        """Every generic discriminator that holds, and every danger-zone vital sign."""
        out = [
            Assessment(
                rule.level,
                None,
                [rule.reason],
                [f"generic:{rule.id}"],
                [rule.source],
                red_flags=RANK[rule.level] >= RANK[TriageLevel.URGENT],
            )
            for rule in self.generic.rules
            if _holds(rule.when, facts, unsure_as_present=False)
        ]
        if facts.vitals:
            for found in assess_vitals(_vitals(facts.vitals), facts.age_months or _age_of(facts.who), facts.pregnant):
                out.append(
                    Assessment(
                        TriageLevel(found.level),
                        None,
                        [found.reason],
                        [f"vitals:{found.name}"],
                        [found.source],
                        # a number is a warning sign for staff when it is an emergency's
                        red_flags=found.level == TriageLevel.EMERGENCY,
                    )
                )
        return out

    def _self_care(self, facts: Facts, routine: list[tuple[Assessment, bool]]) -> Assessment | None:
        """Self-care when every explicit criterion holds (generic.yml `self_care`), else None."""
        criteria = self.generic.self_care
        if not criteria or not routine or not all(by_default for _, by_default in routine):
            return None
        protocols = [self.protocols[a.complaint] for a, _ in routine]
        if not all(p.self_limited and p.self_care for p in protocols):
            return None  # its course is not typically self-limited, or there is no home-care advice
        well = facts.findings.get("reassuring") is True or facts.severity == "mild"
        short = facts.duration_hours is None or facts.duration_hours < 24 * criteria.get("max_days", 7)
        cool = facts.temperature_f is None or facts.temperature_f < criteria.get("max_temperature_f", 102.2)
        at_risk = (
            facts.who in criteria.get("risk_groups", ())
            or bool(facts.pregnant)
            or bool(facts.conditions & set(criteria.get("risk_conditions", ())))
            or facts.severity == "severe"
        )
        if not (well and short and cool) or at_risk:
            return None
        protocol = protocols[0]
        return Assessment(
            TriageLevel.SELF_CARE,
            protocol.id,
            [criteria["reason"]],
            [f"{protocol.id}:self_care_criteria"],
            [criteria["source"]],
            self_care=protocol.self_care,
        )

    def _assess_protocol(self, protocol: Protocol, facts: Facts) -> tuple[Assessment, bool]:
        """The protocol's assessment, and whether it fell through to the protocol's default."""
        known = _first(protocol, facts, unsure_as_present=False)
        result = known
        if facts.unsure:
            pushed = _first(protocol, facts, unsure_as_present=True)
            pushed_level = pushed.level if pushed.level != TriageLevel.EMERGENCY else TriageLevel.URGENT
            if RANK[pushed_level] > RANK[known.level]:
                labels = [protocol.findings[f].label for f in sorted(facts.unsure) if f in protocol.findings]
                reason = (
                    msg("triage.reason.unsure_findings", findings=", ".join(labels))
                    if labels
                    else msg("triage.reason.unsure")
                )
                result = ProtocolRule(pushed_level, reason, pushed.source, pushed.when)
        red = any(k in result.when for k in ("any", "all")) and RANK[result.level] >= RANK[TriageLevel.URGENT]
        return Assessment(
            result.level,
            protocol.id,
            [result.reason],
            [f"{protocol.id}:{result.level}"],
            [result.source],
            red_flags=red,
            self_care=protocol.self_care if result.level == TriageLevel.SELF_CARE else None,
        ), result is protocol.default

    # -- the form -------------------------------------------------------------------------------
    def next_question(self, facts: Facts) -> Question | None:
        """The next question worth asking, or None when the level is decided."""
        if facts.red_flags or not facts.complaints:
            return None
        protocol = self.protocols[facts.complaints[0]]
        if self.assess(facts).level == TriageLevel.EMERGENCY:
            return None
        for q in protocol.questions:
            if self._answered(q, facts, protocol):
                continue
            return q
        return None

    def _answered(self, q: Question, facts: Facts, protocol: Protocol) -> bool:
        if q.kind == "who":
            return facts.who is not None
        if q.kind == "age":  # asked for babies and children, whose age changes the level
            return facts.age_months is not None or facts.who in ("adult", "older_adult") or "age" in facts.unsure
        if q.kind == "pregnant":
            return (
                facts.pregnant is not None
                or facts.who in ("infant", "child", "older_adult")
                or "pregnant" in facts.unsure
            )
        if q.kind == "duration":
            return facts.duration_hours is not None or "duration" in facts.unsure
        if q.kind == "severity":
            return facts.severity is not None or "severity" in facts.unsure
        if q.kind == "temperature":
            return facts.temperature_f is not None or "temperature" in facts.unsure
        if q.kind == "conditions":
            return facts.conditions_known or "conditions" in facts.unsure
        return q.finding in facts.findings or q.finding in facts.unsure

    def protocol(self, pid: str) -> Protocol:
        return self.protocols[pid]


def _holds(cond: dict[str, Any], facts: Facts, unsure_as_present: bool) -> bool:
    def present(name: str) -> bool:
        return facts.findings.get(name) is True or (unsure_as_present and name in facts.unsure)

    for key, value in cond.items():
        if key == "any" and not any(present(f) for f in as_list(value)):
            return False
        if key == "all" and not all(present(f) for f in as_list(value)):
            return False
        if key == "none" and any(present(f) for f in as_list(value)):
            return False
        if key == "who" and facts.who not in as_list(value):
            return False
        if key == "pregnant" and bool(facts.pregnant) != bool(value):
            return False
        if (
            key == "age_months_below"
            and not (facts.age_months is not None and facts.age_months < value)
            and not (unsure_as_present and facts.age_months is None and "age" in facts.unsure)
        ):
            return False
        if key == "temperature_f_at_least" and not (facts.temperature_f is not None and facts.temperature_f >= value):
            return False
        if key == "duration_days_at_least" and not (
            facts.duration_hours is not None and facts.duration_hours >= 24 * value
        ):
            return False
        if key == "duration_days_below" and not (
            facts.duration_hours is not None and facts.duration_hours < 24 * value
        ):
            return False
        if (
            key == "severity"
            and facts.severity not in as_list(value)
            and not (unsure_as_present and "severity" in facts.unsure and "severe" in as_list(value))
        ):
            return False
        if key == "conditions" and not (facts.conditions & set(as_list(value))):
            return False
        if key == "conditions_count_at_least" and len(facts.conditions) < value:
            return False
        if key == "complaints" and not (set(facts.complaints) & set(as_list(value))):
            return False
    return True


def _first(protocol: Protocol, facts: Facts, unsure_as_present: bool) -> ProtocolRule:
    for rule in protocol.rules:
        if _holds(rule.when, facts, unsure_as_present):
            return rule
    return protocol.default


def _unique_texts(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def _below_routine_is_unsafe(facts: Facts, criteria: dict[str, Any]) -> str | None:
    """Why home care alone is not enough whatever a protocol's self-care rule says (the id of
    the reason's text), or None: a weak immune system, or a high temperature in an adult."""
    floor = criteria.get("never_below_routine") or {}
    if facts.conditions & set(as_list(floor.get("conditions"))):
        return "triage.reason.risk_group"
    hot = floor.get("adult_temperature_f_at_least")
    grown = facts.who in (None, "adult", "older_adult")
    if hot and grown and facts.temperature_f is not None and facts.temperature_f >= hot:
        return "triage.reason.high_temperature"
    return None


def _stated(vitals: Vitals) -> dict[str, Any]:
    """The numbers a message stated, as plain JSON (facts are kept in the tracker's slots)."""
    plain = {k: sorted(v) if isinstance(v, frozenset) else v for k, v in asdict(vitals).items()}
    return {k: v for k, v in plain.items() if v not in (None, False, {}, [])}


def _vitals(stated: dict[str, Any]) -> Vitals:
    given = {k: frozenset(v) if k == "normal_stated_about" else v for k, v in stated.items()}
    return Vitals(**{k: v for k, v in given.items() if k in {f.name for f in fields(Vitals)}})


_TYPICAL_AGE_MONTHS = {"infant": 6.0, "child": 96.0, "adult": 480.0, "older_adult": 900.0}


def _age_of(who: str | None) -> float | None:
    """An age for the vital-sign bands when only the group is known (a baby, a child, ...)."""
    return _TYPICAL_AGE_MONTHS.get(who or "")


def _unique(sources: list[Source]) -> list[Source]:
    seen: dict[str, Source] = {}
    for s in sources:
        seen.setdefault(s.url, s)
    return list(seen.values())


CONDITION_KEYS = {
    "any",
    "all",
    "none",
    "who",
    "pregnant",
    "age_months_below",
    "temperature_f_at_least",
    "duration_days_at_least",
    "duration_days_below",
    "severity",
    "conditions",
    "conditions_count_at_least",
    "complaints",
}
QUESTION_KINDS = {"yes_no", "who", "age", "duration", "severity", "conditions", "pregnant", "temperature"}


def _load_protocol(path: Path, lexicon: Lexicon, common: dict[str, Any]) -> Protocol:
    data = yaml.safe_load(path.read_text())
    pid = data.get("id") or path.stem
    sources = _protocol_sources(path, data)

    def compile_all(items, where):
        try:
            return tuple(lexicon.compile(p) for p in as_list(items))
        except Exception as exc:
            raise RuleFileError(f"{path.name}: {where}: {exc}") from exc

    findings = _findings(common.get("findings") or {}, lexicon, "common.yml")
    for name, raw in (data.get("findings") or {}).items():
        if name in findings:
            raise RuleFileError(f"{path.name}: finding {name} is already defined in common.yml")
        findings[name] = Finding(
            name,
            compile_all(raw.get("patterns"), f"finding {name}"),
            str(raw.get("label", name)),
            compile_all(raw.get("unless"), f"finding {name} unless"),
        )
    rules = tuple(
        _protocol_rule(path, r, f"rule {i + 1}", sources, findings) for i, r in enumerate(data.get("rules") or [])
    )
    questions = _protocol_questions(path, data, common, findings)
    self_care = dict(data.get("self_care") or {})
    if self_care.get("source") and self_care["source"] in sources:
        self_care["source"] = sources[self_care["source"]]
    return Protocol(
        pid,
        str(data.get("title", pid)),
        compile_all(data.get("complaint"), "complaint"),
        findings,
        questions,
        rules,
        _protocol_rule(path, data.get("default") or {}, "default", sources, findings),
        self_care,
        sources,
        int(data.get("priority", 50)),
        compile_all(data.get("complaint_unless"), "complaint_unless"),
        bool(data.get("when_pregnant", False)),
        bool(data.get("self_limited", False)),
    )


def _protocol_sources(path: Path, data: dict[str, Any]) -> dict[str, Source]:
    sources = {}
    for key, raw in (data.get("sources") or {}).items():
        try:
            sources[key] = Source(str(raw["organisation"]), str(raw["title"]), str(raw["url"]))
        except (KeyError, TypeError) as exc:
            raise RuleFileError(f"{path.name}: source {key} needs organisation, title and url") from exc
    if not sources:
        raise RuleFileError(f"{path.name}: a protocol needs at least one source")
    return sources


def _protocol_rule(
    path: Path, raw: dict[str, Any], where: str, sources: dict[str, Source], findings: dict[str, Finding]
) -> ProtocolRule:
    level = raw.get("level")
    if level not in LEVELS:
        raise RuleFileError(f"{path.name}: {where}: level must be one of {LEVELS}")
    if raw.get("source") not in sources:
        raise RuleFileError(f"{path.name}: {where}: source must be one of this file's sources")
    when = {k: v for k, v in raw.items() if k not in ("level", "reason", "source")}
    unknown = set(when) - CONDITION_KEYS
    if unknown:
        raise RuleFileError(f"{path.name}: {where}: unknown conditions {sorted(unknown)}")
    for f in as_list(when.get("any")) + as_list(when.get("all")) + as_list(when.get("none")):
        if f not in findings:
            raise RuleFileError(f"{path.name}: {where}: unknown finding {f}")
    if not raw.get("reason"):
        raise RuleFileError(f"{path.name}: {where}: needs a reason")
    return ProtocolRule(TriageLevel(level), str(raw["reason"]).strip(), sources[raw["source"]], when)


def _protocol_questions(
    path: Path, data: dict[str, Any], common: dict[str, Any], findings: dict[str, Finding]
) -> tuple[Question, ...]:
    questions = []
    for raw in data.get("questions") or []:
        kind = raw.get("kind", "yes_no")
        if kind not in QUESTION_KINDS:
            raise RuleFileError(f"{path.name}: question {raw.get('id')}: unknown kind {kind}")
        ask = raw.get("ask") or common["questions"].get(kind)
        if kind == "yes_no" and raw.get("finding") not in findings:
            raise RuleFileError(f"{path.name}: question {raw.get('id')}: finding must be one of this file's findings")
        questions.append(Question(str(raw.get("id", kind)), str(ask).strip(), kind, raw.get("finding")))
    return tuple(questions)


def _with_texts(common: dict[str, Any]) -> dict[str, Any]:
    """common.yml names its texts by id (`message:`); the catalogue gives them in the configured language."""
    try:
        questions = {kind: msg(q["message"]) for kind, q in (common.get("questions") or {}).items()}
        unmatched = dict(common["unmatched"], reason=msg(common["unmatched"]["message"]))
    except (MessageError, KeyError, TypeError) as exc:
        raise RuleFileError(f"common.yml: a question or the unmatched reason: {exc}") from exc
    return {**common, "questions": questions, "unmatched": unmatched}


def _findings(raw_findings: dict[str, Any], lexicon: Lexicon, where: str, shared: bool = True) -> dict[str, Finding]:
    """Findings shared by every protocol (common.yml: reassuring negatives, looking well), or
    generic.yml's discriminators (`shared=False`: read on every message, not by the protocols)."""
    out = {}
    for name, raw in raw_findings.items():
        try:
            out[name] = Finding(
                name,
                tuple(lexicon.compile(p) for p in as_list(raw.get("patterns"))),
                str(raw.get("label", name)),
                tuple(lexicon.compile(p) for p in as_list(raw.get("unless"))),
                shared=shared,
                history_ok=bool(raw.get("history_ok", False)),
            )
        except Exception as exc:
            raise RuleFileError(f"{where}: finding {name}: {exc}") from exc
    return out


def _load_generic(path: Path, lexicon: Lexicon) -> Generic:
    data = yaml.safe_load(path.read_text()) or {}
    sources = _protocol_sources(path, data)
    findings = _findings(data.get("findings") or {}, lexicon, path.name, shared=False)
    rules = []
    for i, raw in enumerate(data.get("rules") or []):
        raw = {k: v for k, v in raw.items() if k != "examples"}  # worked examples: tests/unit/knowledge/triage/
        rule_id = raw.pop("id", None)
        if not rule_id or any(r.id == rule_id for r in rules):
            raise RuleFileError(f"{path.name}: rule {i + 1} needs an id of its own")
        rules.append(replace(_protocol_rule(path, raw, f"rule {rule_id}", sources, findings), id=str(rule_id)))
    self_care = dict(data.get("self_care") or {})
    if self_care:
        if self_care.get("source") not in sources:
            raise RuleFileError(f"{path.name}: self_care: source must be one of this file's sources")
        self_care["source"] = sources[self_care["source"]]
        try:
            self_care["reason"] = msg(self_care.pop("message", "triage.reason.self_care_criteria"))
        except MessageError as exc:
            raise RuleFileError(f"{path.name}: self_care: {exc}") from exc
    return Generic(findings, tuple(rules), self_care, sources)


@lru_cache(maxsize=2)
def default_engine(directory: str = str(RULES_DIR)) -> TriageEngine:
    return TriageEngine.load(Path(directory), default_rules(directory))


def assess_text(text: str, engine: TriageEngine | None = None) -> tuple[Assessment, Facts]:
    """One-shot: as if the patient typed this and answered no follow-up question."""
    engine = engine or default_engine()
    facts = engine.read(text)
    return engine.assess(facts), facts
