"""The triage form's words: questions with their options, answers understood (buttons, "not sure",
free text, "go back"), and the outcome a patient sees. Plain functions; actions/triage.py maps
them to Rasa events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from knowledge.triage.engine import Assessment, Facts, Question, TriageEngine, parse_duration_hours, parse_temperature_f
from knowledge.triage.textmatch import normalise

YES = re.compile(
    r"^(yes|yeah|yep|yup|ya|y|yes it is|yes he does|yes she does|yes i do|yes there is|correct|true"
    r"|i do|he does|she does|it does|definitely|sure|1)\b"
)
NO = re.compile(
    r"^(no|nope|nah|n|none|not really|nothing|no he doesnt|no she doesnt|no i dont|negative|false|neither|2)\b"
)
NOT_SURE = re.compile(
    r"\b(not sure|unsure|i dont know|dont know|no idea|cant tell|maybe|possibly|dunno|hard to say|3)\b"
)
GO_BACK = re.compile(
    r"^(go back|back|change (my|that|the) (last )?answer|wrong answer|i made a mistake|undo|wait that.s wrong"
    r"|previous question)\b"
)
STOP = re.compile(r"^(stop triage|cancel|quit|nevermind|never mind|forget it)\b")
PERSON = re.compile(
    r"\b(talk|speak|chat) (to|with) (a |an |the )?(person|human|nurse|doctor|someone|staff|agent)|real person|\bhuman\b"
)

OPTIONS = {
    "yes_no": [("Yes", "yes"), ("No", "no"), ("Not sure", "not sure")],
    "pregnant": [("Yes", "yes"), ("No", "no"), ("Not sure", "not sure")],
    "who": [("Me (adult)", "me, an adult"), ("A child", "a child"), ("A baby under 1", "a baby under 1 year old")],
    "duration": [
        ("Less than a day", "less than a day"),
        ("1 to 3 days", "2 days"),
        ("4 to 7 days", "5 days"),
        ("More than a week", "more than a week"),
        ("Not sure", "not sure"),
    ],
    "severity": [("Mild", "mild"), ("Moderate", "moderate"), ("Severe", "severe"), ("Not sure", "not sure")],
    "temperature": [("Haven't taken it", "not sure")],
    "conditions": [
        ("None of these", "none"),
        ("Heart disease", "heart disease"),
        ("Diabetes", "diabetes"),
        ("Weak immune system", "weak immune system"),
        ("Not sure", "not sure"),
    ],
}

LEVEL_TEXT = {
    "emergency": (
        "This needs emergency care now: call 911 or go to the nearest emergency department. Don't drive yourself."
    ),
    "urgent": "You should be seen today: a same-day appointment, an urgent care clinic, or our nurse line.",
    "routine": "Book an appointment with a clinician in the next few days.",
    "self_care": "This can usually be cared for at home.",
}
LEVEL_NAME = {
    "emergency": "Emergency",
    "urgent": "Urgent (today)",
    "routine": "Routine (next few days)",
    "self_care": "Self-care at home",
}
NOT_A_DIAGNOSIS = "This is guidance on where to get care, not a diagnosis."


@dataclass
class TriageState:
    """What the form carries between turns (in one Rasa slot)."""

    facts: Facts = field(default_factory=Facts)
    current: str | None = None  # id of the question waiting for an answer
    asked: list[str] = field(default_factory=list)
    retries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"facts": self.facts.to_dict(), "current": self.current, "asked": self.asked, "retries": self.retries}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TriageState:
        data = data or {}
        return cls(
            Facts.from_dict(data.get("facts")),
            data.get("current"),
            list(data.get("asked") or []),
            int(data.get("retries") or 0),
        )


def question_by_id(engine: TriageEngine, facts: Facts, qid: str | None) -> Question | None:
    if not qid or not facts.complaints:
        return None
    for q in engine.protocol(facts.complaints[0]).questions:
        if q.id == qid:
            return q
    return None


def forget(facts: Facts, q: Question) -> None:
    """Undo an answer, so the question is asked again."""
    if q.kind == "who":
        facts.who, facts.age_months = None, None
    elif q.kind == "age":
        facts.age_months = None
    elif q.kind == "pregnant":
        facts.pregnant = None
    elif q.kind == "duration":
        facts.duration_hours = None
    elif q.kind == "severity":
        facts.severity = None
    elif q.kind == "temperature":
        facts.temperature_f = None
    elif q.kind == "conditions":
        facts.conditions, facts.conditions_known = set(), False
    elif q.finding:
        facts.findings.pop(q.finding, None)
    facts.unsure.discard(q.finding or q.kind)


def apply_answer(engine: TriageEngine, state: TriageState, text: str) -> str:
    """Fold one reply into the state. Returns "answered", "back", "stop", "person" or "unclear"."""
    facts = state.facts
    q = question_by_id(engine, facts, state.current)
    norm = normalise(text, engine.lexicon)
    if STOP.match(norm):
        return "stop"
    if PERSON.search(norm):
        return "person"
    if GO_BACK.match(norm):
        previous = question_by_id(engine, facts, state.asked[-2] if len(state.asked) >= 2 else state.current)
        if previous is not None:
            forget(facts, previous)
            if q is not None and q is not previous:
                forget(facts, q)
            state.asked = state.asked[:-2] if len(state.asked) >= 2 else []
        return "back"
    # Anything the reply says in passing counts too ("no, but it's been 5 days").
    before_findings = dict(facts.findings)
    engine.read(text, facts)
    if q is None:
        return "answered"
    unsure = bool(NOT_SURE.search(norm))
    yes, no = bool(YES.match(norm)), bool(NO.match(norm))
    key = q.finding or q.kind
    if q.kind in ("yes_no", "pregnant"):
        if q.kind == "yes_no" and facts.findings.get(q.finding) is not None and before_findings.get(q.finding) is None:
            return "answered"  # the free text itself said yes or no ("he has a stiff neck")
        if unsure and not (yes or no):
            facts.unsure.add(key)
        elif yes:
            if q.kind == "pregnant":
                facts.pregnant = True
            else:
                facts.findings[q.finding] = True
        elif no:
            if q.kind == "pregnant":
                facts.pregnant = False
            else:
                facts.findings[q.finding] = False
        else:
            return "unclear"
        return "answered"
    if q.kind == "who":
        if facts.who:
            return "answered"
        if re.search(r"\b(me|myself|i am|im|adult|for me|mine)\b", norm):
            facts.who = "adult"
            return "answered"
        return "unclear"
    if q.kind == "age":
        if facts.age_months is not None:
            return "answered"
        m = re.search(r"(\d+(?:\.\d+)?) ?(day|week|month|year)s?", norm)
        if m:
            months = float(m.group(1)) * {"day": 1 / 30, "week": 1 / 4.3, "month": 1, "year": 12}[m.group(2)]
            facts.age_months = months
            facts.who = "infant" if months < 12 else "child" if months < 18 * 12 else "adult"
            return "answered"
        if unsure:
            facts.unsure.add("age")
            return "answered"
        return "unclear"
    if q.kind == "duration":
        if unsure:
            facts.unsure.add("duration")
            return "answered"
        hours = parse_duration_hours(norm)
        if hours is None:
            if re.search(r"less than a day|few hours|an hour|today|just (started|now)", norm):
                hours = 12
            elif re.search(r"more than a week|weeks|a long time|months", norm):
                hours = 240
        if hours is None:
            return "unclear"
        facts.duration_hours = hours
        return "answered"
    if q.kind == "severity":
        if unsure and not facts.severity:
            facts.unsure.add("severity")
            return "answered"
        return "answered" if facts.severity else "unclear"
    if q.kind == "temperature":
        value = parse_temperature_f(norm) or parse_temperature_f("temp " + norm)
        if value:
            facts.temperature_f = value
            return "answered"
        if unsure or no or re.search(r"(havent|didnt|not) (taken|take|checked|check)|no thermometer", norm):
            facts.unsure.add("temperature")
            return "answered"
        return "unclear"
    if q.kind == "conditions":
        if unsure and not facts.conditions:
            facts.unsure.add("conditions")
            return "answered"
        if facts.conditions or no:
            facts.conditions_known = True
            return "answered"
        return "unclear"
    return "unclear"


def ask(q: Question) -> dict[str, Any]:
    buttons = [{"title": title, "payload": payload} for title, payload in OPTIONS.get(q.kind, [])]
    return {"text": q.ask, "buttons": buttons}


def outcome(assessment: Assessment, facts: Facts, channel: str, advice: str | None = None) -> dict[str, Any]:
    """What the patient sees at the end: level, reasons, next step, not a diagnosis, sources."""
    level = assessment.level
    parts = [f"{LEVEL_NAME[level]}. {LEVEL_TEXT[level]}"]
    reasons = " ".join(r for r in assessment.reasons if r)
    if reasons:
        parts.append(("Why: " if channel != "sms" else "") + reasons)
    if level == "self_care":
        if advice:
            parts.append(advice)
        seek = (assessment.self_care or {}).get("seek_care_if")
        if seek:
            parts.append(seek)
    parts.append(NOT_A_DIAGNOSIS)
    sources = assessment.sources[:2]
    if sources and not (level == "self_care" and advice and "Source" in advice):
        parts.append("Source: " + "; ".join(f"{s.organisation}, {s.title} ({s.url})" for s in sources))
    buttons: list[dict[str, str]] = []
    if level == "urgent":
        buttons = [
            {"title": "Book a same-day appointment", "payload": "/book_appointment"},
            {"title": "Talk to a nurse", "payload": "/request_human"},
        ]
    elif level == "routine":
        buttons = [
            {"title": "Book an appointment", "payload": "/book_appointment"},
            {"title": "Talk to a person", "payload": "/request_human"},
        ]
    elif level == "self_care":
        buttons = [{"title": "Talk to a person", "payload": "/request_human"}]
    escalate = level == "emergency" or (level == "urgent" and assessment.red_flags)
    return {
        "text": "\n\n".join(parts),
        "buttons": buttons,
        "escalate": escalate,
        "priority": "emergency" if level == "emergency" else "urgent" if escalate else "normal",
    }


def staff_summary(assessment: Assessment, facts: Facts) -> dict[str, Any]:
    """For the agent console: complaint, answers, level, rules, sources. No free text."""
    return {
        "reason": f"triage:{assessment.level}",
        "complaint": assessment.complaint,
        "level": assessment.level,
        "answers": {k: v for k, v in facts.to_dict().items() if k != "red_flags"},
        "rules": assessment.rules,
        "reasons": assessment.reasons,
        "sources": [s.url for s in assessment.sources],
    }
