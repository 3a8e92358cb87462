"""The triage form's words: questions with their options, answers understood (buttons, "not sure",
free text, "go back"), and the outcome a patient sees. Plain functions; actions/triage.py maps
them to Rasa events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from careline.contracts import Priority
from knowledge.messages import msg
from knowledge.triage.engine import (
    Assessment,
    Facts,
    Question,
    TriageEngine,
    TriageLevel,
    parse_duration_hours,
    parse_temperature_f,
)
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

# Answer buttons: (title's message id, what the button sends). The text sent stays English,
# because the replies above are read in English.
OPTIONS = {
    "yes_no": [("triage.option.yes", "yes"), ("triage.option.no", "no"), ("triage.option.not_sure", "not sure")],
    "pregnant": [("triage.option.yes", "yes"), ("triage.option.no", "no"), ("triage.option.not_sure", "not sure")],
    "who": [
        ("triage.option.me_adult", "me, an adult"),
        ("triage.option.child", "a child"),
        ("triage.option.baby", "a baby under 1 year old"),
    ],
    "duration": [
        ("triage.option.less_than_a_day", "less than a day"),
        ("triage.option.one_to_three_days", "2 days"),
        ("triage.option.four_to_seven_days", "5 days"),
        ("triage.option.more_than_a_week", "more than a week"),
        ("triage.option.not_sure", "not sure"),
    ],
    "severity": [
        ("triage.option.mild", "mild"),
        ("triage.option.moderate", "moderate"),
        ("triage.option.severe", "severe"),
        ("triage.option.not_sure", "not sure"),
    ],
    "temperature": [("triage.option.not_taken", "not sure")],
    "conditions": [
        ("triage.option.no_conditions", "none"),
        ("triage.option.heart_disease", "heart disease"),
        ("triage.option.diabetes", "diabetes"),
        ("triage.option.weak_immune_system", "weak immune system"),
        ("triage.option.not_sure", "not sure"),
    ],
}

# The outcome's words by level (knowledge/messages/<language>.yml).
LEVEL_NAME = {
    "emergency": "triage.level.emergency",
    "urgent": "triage.level.urgent",
    "routine": "triage.level.routine",
    "self_care": "triage.level.self_care",
}
LEVEL_ADVICE = {
    "emergency": "triage.advice.emergency",
    "urgent": "triage.advice.urgent",
    "routine": "triage.advice.routine",
    "self_care": "triage.advice.self_care",
}
# What each level offers next: (title's message id, payload).
LEVEL_BUTTONS = {
    "urgent": [("triage.button.book_same_day", "/book_appointment"), ("triage.button.nurse", "/request_human")],
    "routine": [("triage.button.book", "/book_appointment"), ("button.person", "/request_human")],
    "self_care": [("button.person", "/request_human")],
}


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
        _go_back(engine, state, q)
        return "back"
    # Anything the reply says in passing counts too ("no, but it's been 5 days").
    before_findings = dict(facts.findings)
    engine.read(text, facts)
    if q is None:
        return "answered"
    reply = _Reply(norm, bool(NOT_SURE.search(norm)), bool(YES.match(norm)), bool(NO.match(norm)), before_findings)
    read_answer = _ANSWER_READERS.get(q.kind)
    return read_answer(q, facts, reply) if read_answer else "unclear"


def _go_back(engine: TriageEngine, state: TriageState, q: Question | None) -> None:
    """Forget the previous answer (and the current question's, if any), so both are asked again."""
    facts = state.facts
    previous = question_by_id(engine, facts, state.asked[-2] if len(state.asked) >= 2 else state.current)
    if previous is not None:
        forget(facts, previous)
        if q is not None and q is not previous:
            forget(facts, q)
        state.asked = state.asked[:-2] if len(state.asked) >= 2 else []


@dataclass
class _Reply:
    """A reply to the current question, normalised, with what it says at its start."""

    norm: str
    unsure: bool
    yes: bool
    no: bool
    before_findings: dict  # the findings before engine.read() saw this reply


def _answer_yes_no(q: Question, facts: Facts, reply: _Reply) -> str:
    """yes_no and pregnant questions."""
    if (
        q.kind == "yes_no"
        and facts.findings.get(q.finding) is not None
        and reply.before_findings.get(q.finding) is None
    ):
        return "answered"  # the free text itself said yes or no ("he has a stiff neck")
    if reply.unsure and not (reply.yes or reply.no):
        facts.unsure.add(q.finding or q.kind)
    elif reply.yes or reply.no:
        if q.kind == "pregnant":
            facts.pregnant = reply.yes
        else:
            facts.findings[q.finding] = reply.yes
    else:
        return "unclear"
    return "answered"


def _answer_who(q: Question, facts: Facts, reply: _Reply) -> str:
    if facts.who:
        return "answered"
    if re.search(r"\b(me|myself|i am|im|adult|for me|mine)\b", reply.norm):
        facts.who = "adult"
        return "answered"
    return "unclear"


def _answer_age(q: Question, facts: Facts, reply: _Reply) -> str:
    if facts.age_months is not None:
        return "answered"
    m = re.search(r"(\d+(?:\.\d+)?) ?(day|week|month|year)s?", reply.norm)
    if m:
        months = float(m.group(1)) * {"day": 1 / 30, "week": 1 / 4.3, "month": 1, "year": 12}[m.group(2)]
        facts.age_months = months
        facts.who = "infant" if months < 12 else "child" if months < 18 * 12 else "adult"
        return "answered"
    if reply.unsure:
        facts.unsure.add("age")
        return "answered"
    return "unclear"


def _answer_duration(q: Question, facts: Facts, reply: _Reply) -> str:
    if reply.unsure:
        facts.unsure.add("duration")
        return "answered"
    hours = parse_duration_hours(reply.norm)
    if hours is None:
        if re.search(r"less than a day|few hours|an hour|today|just (started|now)", reply.norm):
            hours = 12
        elif re.search(r"more than a week|weeks|a long time|months", reply.norm):
            hours = 240
    if hours is None:
        return "unclear"
    facts.duration_hours = hours
    return "answered"


def _answer_severity(q: Question, facts: Facts, reply: _Reply) -> str:
    if reply.unsure and not facts.severity:
        facts.unsure.add("severity")
        return "answered"
    return "answered" if facts.severity else "unclear"


def _answer_temperature(q: Question, facts: Facts, reply: _Reply) -> str:
    value = parse_temperature_f(reply.norm) or parse_temperature_f("temp " + reply.norm)
    if value:
        facts.temperature_f = value
        return "answered"
    if (
        reply.unsure
        or reply.no
        or re.search(r"(havent|didnt|not) (taken|take|checked|check)|no thermometer", reply.norm)
    ):
        facts.unsure.add("temperature")
        return "answered"
    return "unclear"


def _answer_conditions(q: Question, facts: Facts, reply: _Reply) -> str:
    if reply.unsure and not facts.conditions:
        facts.unsure.add("conditions")
        return "answered"
    if facts.conditions or reply.no:
        facts.conditions_known = True
        return "answered"
    return "unclear"


# How a reply is read, by the kind of question it answers.
_ANSWER_READERS = {
    "yes_no": _answer_yes_no,
    "pregnant": _answer_yes_no,
    "who": _answer_who,
    "age": _answer_age,
    "duration": _answer_duration,
    "severity": _answer_severity,
    "temperature": _answer_temperature,
    "conditions": _answer_conditions,
}


# A protocol's question names its subject with placeholders: the patient ("Are you ...") or, for a
# child or a baby, a carer's "they" ("Are they ...").
SECOND_PERSON = {"you": "you", "your": "your", "are_you": "are you", "do_you": "do you", "have_you": "have you"}
THIRD_PERSON = {"you": "they", "your": "their", "are_you": "are they", "do_you": "do they", "have_you": "have they"}


def worded(q: Question, facts: Facts | None = None) -> str:
    """The question's text with its subject filled in; a sentence starts with a capital."""
    words = THIRD_PERSON if facts is not None and facts.who in ("child", "infant") else SECOND_PERSON
    text = q.ask.format_map(words)
    return text[:1].upper() + text[1:]


def ask(q: Question, facts: Facts | None = None) -> dict[str, Any]:
    buttons = [{"title": msg(title), "payload": payload} for title, payload in OPTIONS.get(q.kind, [])]
    return {"text": worded(q, facts), "buttons": buttons}


@dataclass(frozen=True)
class SelfCareAdvice:
    """Home-care advice for a self-care outcome. `cited`: its text carries its own citation (a
    knowledge-base answer, or a protocol's advice with its source), so the outcome does not cite
    the protocol's sources again."""

    text: str
    cited: bool = False


def outcome(assessment: Assessment, facts: Facts, channel: str, advice: SelfCareAdvice | None = None) -> dict[str, Any]:
    """What the patient sees at the end: level, reasons, next step, not a diagnosis, sources."""
    level = assessment.level
    parts = [msg("triage.outcome.headline", level=msg(LEVEL_NAME[level]), advice=msg(LEVEL_ADVICE[level]))]
    reasons = " ".join(r for r in assessment.reasons if r)
    if reasons:
        parts.append(msg("triage.outcome.why", reasons=reasons) if channel != "sms" else reasons)
    if level == TriageLevel.SELF_CARE:
        if advice and advice.text:
            parts.append(advice.text)
        seek = (assessment.self_care or {}).get("seek_care_if")
        if seek:
            parts.append(seek)
    parts.append(msg("triage.outcome.not_a_diagnosis"))
    sources = assessment.sources[:2]
    if sources and not (level == TriageLevel.SELF_CARE and advice and advice.cited):
        cited = [msg("triage.outcome.source", organisation=s.organisation, title=s.title, url=s.url) for s in sources]
        parts.append(msg("triage.outcome.sources", sources="; ".join(cited)))
    buttons = [{"title": msg(title), "payload": payload} for title, payload in LEVEL_BUTTONS.get(level, [])]
    escalate = level == TriageLevel.EMERGENCY or (level == TriageLevel.URGENT and assessment.red_flags)
    return {
        "text": "\n\n".join(parts),
        "buttons": buttons,
        "escalate": escalate,
        "priority": Priority.EMERGENCY
        if level == TriageLevel.EMERGENCY
        else Priority.URGENT
        if escalate
        else Priority.NORMAL,
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
        # every complaint and discriminator the message raised, each with its own level
        "parts": [{"part": p["part"], "level": p["level"], "rules": p.get("rules", [])} for p in assessment.parts],
    }
