"""Every triage protocol: one file per chief complaint, public sources, every rule sourced and
explained, and its worked examples assess (one-shot, as typed) to the level they state."""

from pathlib import Path

import pytest
import yaml

from knowledge.textmatch import TRIAGE_DIR
from knowledge.triage_engine import LEVELS, RANK, TriageEngine, assess_text

ENGINE = TriageEngine.load()
PROTOCOL_DIR = TRIAGE_DIR / "protocols"
FILES = sorted(p.name for p in PROTOCOL_DIR.glob("*.yml"))
COMPLAINTS = {"chest_pain", "shortness_of_breath", "headache", "abdominal_pain", "fever", "cough_cold",
              "sore_throat", "ear_pain", "eye_problems", "urinary", "back_pain", "rash_skin",
              "vomiting_diarrhoea", "dizziness", "wound_injury", "allergic_reaction", "mental_health", "pregnancy",
              "ingestion", "musculoskeletal", "mouth_teeth", "minor_problems"}


def raw(file: str) -> dict:
    return yaml.safe_load((PROTOCOL_DIR / file).read_text())


def test_there_is_a_protocol_per_chief_complaint():
    assert COMPLAINTS <= {Path(f).stem for f in FILES}
    assert COMPLAINTS <= set(ENGINE.protocols)


@pytest.mark.parametrize("file", FILES)
def test_protocol_has_sources_and_every_rule_a_source_and_reason(file):
    protocol = ENGINE.protocols[Path(file).stem]
    assert protocol.sources, file
    for source in protocol.sources.values():
        assert source.url.startswith("https://"), (file, source)
        assert source.organisation and source.title, (file, source)
    assert protocol.complaint, f"{file} has no complaint patterns"
    assert protocol.rules, f"{file} has no rules"
    for rule in (*protocol.rules, protocol.default):
        assert rule.level in LEVELS, (file, rule)
        assert rule.source.url.startswith("https://"), (file, rule)
        assert rule.reason.strip(), (file, rule)
    for question in protocol.questions:
        assert question.ask.strip(), (file, question.id)


@pytest.mark.parametrize("file", FILES)
def test_self_care_protocols_give_advice(file):
    protocol = ENGINE.protocols[Path(file).stem]
    levels = {r.level for r in (*protocol.rules, protocol.default)}
    if "self_care" in levels:
        for key in ("query", "advice", "source", "seek_care_if"):
            assert protocol.self_care.get(key), (file, key)
        assert protocol.self_care["source"].url.startswith("https://"), file


@pytest.mark.parametrize("file", FILES)
def test_examples_cover_the_highest_level_and_a_lower_one(file):
    protocol = ENGINE.protocols[Path(file).stem]
    examples = raw(file).get("examples") or []
    assert len(examples) >= 3, f"{file} needs at least 3 examples"
    highest = max((r.level for r in (*protocol.rules, protocol.default)), key=RANK.get)
    levels = {e["level"] for e in examples}
    assert highest in levels, (file, highest)
    assert any(RANK[level] < RANK[highest] for level in levels), file


@pytest.mark.parametrize("file", FILES)
def test_examples_assess_to_their_level(file):
    pid = Path(file).stem
    for example in raw(file).get("examples") or []:
        assessment, facts = assess_text(example["text"], ENGINE)
        assert assessment.level == example["level"], (example["text"], assessment.level, assessment.rules)
        if not facts.red_flags:
            assert pid in facts.complaints, (example["text"], facts.complaints)


# --- reading a one-shot narrative -----------------------------------------------------------------

@pytest.mark.parametrize("text, finding, present", [
    # a clinician's list: every item after "no" is negated, though a comma usually ends the scope
    ("9 weeks pregnant with nausea, has no abdominal pain, bleeding, or fever", "preg_fever", False),
    ("9 weeks pregnant with nausea, has no abdominal pain, bleeding, or fever", "bleeding_any", False),
    ("cut on my hand, there is no redness, swelling or pus", "wound_infection", False),
    # "no fever, eating well" is two statements
    ("my son has a cough, no fever, eating well and playing", "reassuring", True),
    # a history cue rules out its own part of the sentence only
    ("im 6 wks pregnant (positive test last week), have sharp pain low on my left side, some spotting", "bleeding_any", True),
])
def test_reading_lists_history_and_reassurance(text, finding, present):
    facts = ENGINE.read(text)
    assert facts.findings.get(finding) is present, (text, finding, facts.findings.get(finding))


def test_a_negative_pregnancy_test_is_not_a_pregnancy():
    facts = ENGINE.read("period cramps on day 1 like my usual periods, pregnancy test is negative, no fever")
    assert not facts.pregnant
    assert "pregnancy" not in facts.complaints


def test_being_pregnant_brings_in_the_pregnancy_protocol():
    facts = ENGINE.read("I'm 8 weeks pregnant and have a sharp pain on my right side with some spotting")
    assert facts.pregnant and "pregnancy" in facts.complaints
    assert ENGINE.assess(facts).level == "emergency"


def test_a_passing_complaints_default_does_not_outrank_a_recognised_problem():
    # "red patch" also matches the rash protocol, whose cautious default is routine
    assessment, facts = assess_text("splashed hot coffee on my forearm, red patch about 3 cm, stings, no blisters", ENGINE)
    assert {"wound_injury", "rash_skin"} <= set(facts.complaints)
    assert assessment.level == "self_care", assessment.rules


@pytest.mark.parametrize("text, level", [
    # reassuring negatives push a minor problem down
    ("my 4 yo hasnt pooped in 2 days, belly soft, eating fine, passing gas, no fever", "self_care"),
    ("A 10-year-old fell off his scooter and scraped his knee. The bleeding has stopped and he walks normally.", "self_care"),
    ("itchy red rash on my wrist where my new metal watch band sits, no fever, not spreading", "self_care"),
    ("a 4 year old with a runny nose and mild cough for 3 days, temperature 38.0 C on the first day only, playing and drinking well", "self_care"),
    # complaint-specific red flags push up
    ("my 7 week old has a cold, breathing really fast and his belly sucks in with every breath", "emergency"),
    ("a 2 year old with a barky cough now makes a harsh squeaky noise with every breath in even when calm", "emergency"),
    ("A 3-week-old boy has a rectal temperature of 38.3 C, feeding slightly less than usual", "emergency"),
    ("A 72-year-old woman with repeated vomiting, a distended abdomen and no passage of stool or gas for 36 hours", "emergency"),
    ("A 64-year-old woman with diabetes has pressure in her upper abdomen that spreads to her jaw, with cold sweats", "emergency"),
    ("red spreading skin on his thigh with pain far out of proportion to how it looks, skin is dusky purple", "emergency"),
    ("A 50-year-old man with a warm, red, tender, swollen area on his lower leg spreading slowly from a scratch", "urgent"),
    ("A 55-year-old man with sudden severe pain, redness and swelling of his big toe joint, normal temperature", "urgent"),
])
def test_one_shot_levels(text, level):
    assessment, _ = assess_text(text, ENGINE)
    assert assessment.level == level, (text, assessment.level, assessment.rules)
