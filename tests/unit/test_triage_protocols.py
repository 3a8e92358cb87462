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
              "vomiting_diarrhoea", "dizziness", "wound_injury", "allergic_reaction", "mental_health", "pregnancy"}


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
