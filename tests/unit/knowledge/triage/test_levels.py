"""Levels and screen outcomes are enums whose values are today's strings: JSON, slots, SQL and the
rule files see exactly what they saw before."""

import json

from careline.contracts import ScreenOutcome
from knowledge.triage.engine import LEVELS, RANK, TriageEngine, TriageLevel, assess_text
from knowledge.triage.redflags import default_rules

ENGINE = TriageEngine.load()


def test_levels_rank_lowest_first_as_the_rule_files_write_them():
    assert LEVELS == ("self_care", "routine", "urgent", "emergency")
    assert all(type(level) is str for level in LEVELS)
    assert [RANK[level] for level in LEVELS] == [0, 1, 2, 3]  # plain strings still look the rank up
    assert RANK[TriageLevel.URGENT] > RANK["routine"]


def test_an_assessment_carries_the_enum_and_serialises_as_before():
    assessment, _ = assess_text("my chest hurts and I'm sweating", ENGINE)
    assert assessment.level is TriageLevel.EMERGENCY
    assert json.loads(json.dumps(assessment.to_dict()))["level"] == "emergency"
    assert f"triage:{assessment.level}" == "triage:emergency"


def test_the_screen_decides_with_the_enum():
    rules = default_rules()
    assert rules.screen("my dad is slurring his words").outcome is ScreenOutcome.EMERGENCY
    assert rules.screen("what are the signs of a stroke?").outcome is ScreenOutcome.ADVISE
    assert rules.screen("what time do you open").outcome is None
