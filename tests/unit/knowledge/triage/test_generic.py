"""The generic discriminators (knowledge/triage/generic.yml): every rule has a public source and
worked examples; a positive example fires its rule whatever the complaint, a look-alike does not;
every complaint in a message is assessed and the highest level wins; the explicit self-care
criteria hold only when every one of them does."""

from pathlib import Path

import pytest
import yaml

from knowledge.triage.engine import TriageEngine, TriageLevel, assess_text, default_engine
from knowledge.triage.redflags import RuleFileError, default_rules
from knowledge.triage.textmatch import RULES_DIR

GENERIC = yaml.safe_load((RULES_DIR / "generic.yml").read_text())
RULES = GENERIC["rules"]


def fired(text: str) -> set[str]:
    assessment, _ = assess_text(text)
    return {rule for part in assessment.parts for rule in part.get("rules", [])} | set(assessment.rules)


@pytest.mark.parametrize("rule", RULES, ids=[r["id"] for r in RULES])
def test_every_rule_has_a_source_and_examples(rule):
    assert rule["source"] in GENERIC["sources"]
    assert rule["examples"]["positive"] and rule["examples"]["negative"]


@pytest.mark.parametrize("rule", RULES, ids=[r["id"] for r in RULES])
def test_positive_examples_reach_the_rules_level(rule):
    for text in rule["examples"]["positive"]:
        assessment, _ = assess_text(text)
        reached = f"generic:{rule['id']}" in fired(text) or assessment.red_flags
        assert reached, (text, assessment.rules)
        assert list(TriageLevel).index(assessment.level) >= list(TriageLevel).index(TriageLevel(rule["level"])), text


@pytest.mark.parametrize("rule", RULES, ids=[r["id"] for r in RULES])
def test_look_alikes_do_not_fire(rule):
    for text in rule["examples"]["negative"]:
        assert f"generic:{rule['id']}" not in fired(text), text


def test_a_danger_in_a_later_complaint_is_not_lost():
    text = (
        "i have had a sore throat for 2 days and a cold, also since yesterday it burns when i pee "
        "and my back hurts on the right side with a fever of 101"
    )
    assessment, facts = assess_text(text)
    assert {"sore_throat", "urinary"} <= set(facts.complaints)
    assert assessment.level == TriageLevel.URGENT
    assert {p["part"] for p in assessment.parts} >= {"urinary"}


def test_vital_signs_move_the_level():
    calm, _ = assess_text("I have a cough and a cold for 3 days, feel ok otherwise")
    fast, _ = assess_text("I have a cough and a cold for 3 days, my heart rate is 135, I'm breathing 30 times a minute")
    assert calm.level in (TriageLevel.SELF_CARE, TriageLevel.ROUTINE)
    assert fast.level == TriageLevel.EMERGENCY
    assert any(r.startswith("vitals:") for r in fast.rules), fast.rules


def test_facts_with_vital_signs_survive_the_trackers_json():
    import json

    from knowledge.triage.engine import Facts

    _, facts = assess_text("afebrile, HR 128, RR 30, BP 84/50, SpO2 88% RA, K 6.9")
    again = Facts.from_dict(json.loads(json.dumps(facts.to_dict())))
    assert again.vitals == facts.vitals and facts.vitals["heart_rate"] == 128
    assert default_engine().assess(again).level == TriageLevel.EMERGENCY


def test_clinician_voice_with_danger_zone_vitals():
    text = "A 67-year-old man presents with 2 days of productive cough. HR 128, RR 30, BP 84/50, SpO2 88% on room air."
    assert assess_text(text)[0].level == TriageLevel.EMERGENCY


def test_self_care_criteria_need_every_criterion():
    well = "runny nose and a scratchy throat since yesterday, mild, otherwise fine"
    assert assess_text(well)[0].level == TriageLevel.SELF_CARE
    for risky in (
        "runny nose and a scratchy throat since yesterday, mild, otherwise fine. I'm on chemo",
        "runny nose and a scratchy throat since yesterday, mild, otherwise fine. I had a kidney transplant",
        "runny nose and a scratchy throat for 3 weeks, mild, otherwise fine",
    ):
        assert assess_text(risky)[0].level != TriageLevel.SELF_CARE, risky


def test_a_rule_needs_an_id_of_its_own(tmp_path: Path):
    for f in RULES_DIR.rglob("*"):
        if f.is_file():
            target = tmp_path / f.relative_to(RULES_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.read_bytes())
    bad = dict(GENERIC, rules=[{k: v for k, v in RULES[0].items() if k != "id"}])
    (tmp_path / "generic.yml").write_text(yaml.safe_dump(bad))
    with pytest.raises(RuleFileError, match="needs an id"):
        TriageEngine.load(tmp_path, default_rules(str(tmp_path)))


def test_the_default_engine_loads_the_generic_rules():
    assert len(default_engine().generic.rules) == len(RULES)


def test_staff_see_every_part_of_the_assessment():
    from knowledge.triage.dialogue import staff_summary

    assessment, facts = assess_text("sore throat for 2 days, and since yesterday it burns when I pee, fever of 101")
    parts = staff_summary(assessment, facts)["parts"]
    assert {p["part"] for p in parts} >= {"sore_throat", "urinary"}
    assert all(p["level"] in {"self_care", "routine", "urgent", "emergency"} for p in parts)
