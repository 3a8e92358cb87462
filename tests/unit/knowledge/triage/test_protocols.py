"""Every triage protocol: one file per chief complaint, public sources, every rule sourced and
explained, and its worked examples assess (one-shot, as typed) to the level they state."""

from pathlib import Path

import pytest
import yaml

from knowledge.triage import RULES_DIR
from knowledge.triage.engine import LEVELS, RANK, TriageEngine, assess_text

ENGINE = TriageEngine.load()
PROTOCOL_DIR = RULES_DIR / "protocols"
FILES = sorted(p.name for p in PROTOCOL_DIR.glob("*.yml"))
COMPLAINTS = {
    "chest_pain",
    "shortness_of_breath",
    "headache",
    "abdominal_pain",
    "fever",
    "cough_cold",
    "sore_throat",
    "ear_pain",
    "eye_problems",
    "urinary",
    "back_pain",
    "rash_skin",
    "vomiting_diarrhoea",
    "dizziness",
    "wound_injury",
    "allergic_reaction",
    "mental_health",
    "pregnancy",
    "ingestion",
    "musculoskeletal",
    "mouth_teeth",
    "minor_problems",
}


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


@pytest.mark.parametrize(
    "text, finding, present",
    [
        # a clinician's list: every item after "no" is negated, though a comma usually ends the scope
        ("9 weeks pregnant with nausea, has no abdominal pain, bleeding, or fever", "preg_fever", False),
        ("9 weeks pregnant with nausea, has no abdominal pain, bleeding, or fever", "bleeding_any", False),
        ("cut on my hand, there is no redness, swelling or pus", "wound_infection", False),
        # ... also in the middle of a long list that ends with "or"
        (
            "sneezing for a week, no fever, wheezing, shortness of breath, facial pain or eye pain",
            "cough_breathing",
            False,
        ),
        # "no fever, eating well" is two statements
        ("my son has a cough, no fever, eating well and playing", "reassuring", True),
        # a history cue rules out its own part of the sentence only
        (
            "im 6 wks pregnant (positive test last week), have sharp pain low on my left side, some spotting",
            "bleeding_any",
            True,
        ),
    ],
)
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
    assessment, facts = assess_text(
        "splashed hot coffee on my forearm, red patch about 3 cm, stings, no blisters", ENGINE
    )
    assert {"wound_injury", "rash_skin"} <= set(facts.complaints)
    assert assessment.level == "self_care", assessment.rules


@pytest.mark.parametrize(
    "text, level",
    [
        # reassuring negatives push a minor problem down
        ("my 4 yo hasnt pooped in 2 days, belly soft, eating fine, passing gas, no fever", "self_care"),
        (
            "A 10-year-old fell off his scooter and scraped his knee. The bleeding has stopped and he walks normally.",
            "self_care",
        ),
        ("itchy red rash on my wrist where my new metal watch band sits, no fever, not spreading", "self_care"),
        (
            "a 4 year old with a runny nose and mild cough for 3 days, temperature 38.0 C on the first day only, playing and drinking well",
            "self_care",
        ),
        # complaint-specific red flags push up
        ("my 7 week old has a cold, breathing really fast and his belly sucks in with every breath", "emergency"),
        (
            "a 2 year old with a barky cough now makes a harsh squeaky noise with every breath in even when calm",
            "emergency",
        ),
        ("A 3-week-old boy has a rectal temperature of 38.3 C, feeding slightly less than usual", "emergency"),
        (
            "A 72-year-old woman with repeated vomiting, a distended abdomen and no passage of stool or gas for 36 hours",
            "emergency",
        ),
        (
            "A 64-year-old woman with diabetes has pressure in her upper abdomen that spreads to her jaw, with cold sweats",
            "emergency",
        ),
        (
            "red spreading skin on his thigh with pain far out of proportion to how it looks, skin is dusky purple",
            "emergency",
        ),
        (
            "A 50-year-old man with a warm, red, tender, swollen area on his lower leg spreading slowly from a scratch",
            "urgent",
        ),
        (
            "A 55-year-old man with sudden severe pain, redness and swelling of his big toe joint, normal temperature",
            "urgent",
        ),
        # conditions and medicines that change the level
        (
            "I'm on dialysis and skipped my last two sessions, now my legs feel heavy and my heart keeps skipping",
            "emergency",
        ),
        ("I take lithium and have had diarrhoea for two days, now I'm shaky, stumbling and confused", "emergency"),
        ("my right foot went cold and white an hour ago and it's numb and really painful", "emergency"),
        ("A 68-year-old man with a known abdominal aortic aneurysm has sudden severe lower back pain", "emergency"),
        (
            "my 9 month old has bouts of screaming, pulling his legs up, sleepy in between, and red jelly poop",
            "emergency",
        ),
        ("there's a dark curtain creeping down over the vision in my right eye since an hour", "emergency"),
        ("4 days after giving birth I have a bad headache and blurry vision, bp 168/112", "emergency"),
        # non-emergencies and self-care
        ("my left calf has been swollen, warm and sore for 2 days", "urgent"),
        ("rolled his right ankle at basketball, could not take four steps then or now, swollen", "urgent"),
        ("home bp readings around 152/96 this week, I feel fine", "routine"),
        ("kidney stone pain in waves on my left side, no fever, controlled with the pain meds", "routine"),
        ("I wear contacts and my eye is a little pink and crusty, vision fine", "routine"),
        ("jet lag after flying back from Europe, can't sleep at night and groggy all day", "self_care"),
        ("my lips are chapped and cracked from the cold wind", "self_care"),
        ("I have a cold sore on my lip, I get them a few times a year", "self_care"),
        ("dandruff, itchy flaky scalp, white flakes on my shirts", "self_care"),
        ("I get calf cramps at night sometimes, stretching helps within a minute", "self_care"),
        ("bruise on my thigh from bumping into a table, a bit sore", "self_care"),
        (
            "my 4 year old bumped her forehead on the table, goose egg, cried straight away, playing normally now",
            "self_care",
        ),
        ("twisted her left ankle, mild swelling but she could walk four steps right away", "self_care"),
        (
            "sneezing and itchy watery eyes for 2 weeks like every spring, no fever, wheezing, shortness of breath or facial pain",
            "self_care",
        ),
    ],
)
def test_one_shot_levels(text, level):
    assessment, _ = assess_text(text, ENGINE)
    assert assessment.level == level, (text, assessment.level, assessment.rules)


@pytest.mark.parametrize(
    "text,complaint",
    [
        ("Started iron tablets 2 weeks ago and now I'm constipated", "abdominal_pain"),
        ("I had my baby 2 weeks ago and now I'm short of breath and my left calf is swollen", "pregnancy"),
        ("for the last week he's been hearing voices", "mental_health"),
    ],
)
def test_recent_state_and_and_now_are_not_history(text, complaint):
    _, facts = assess_text(text, ENGINE)
    assert complaint in facts.complaints, facts.complaints


def protocol_level(text: str):
    """The protocols' own level, whatever the red-flag screen says (it is tested on its own)."""
    facts = ENGINE.read(text)
    facts.red_flags = []
    return ENGINE.assess(facts), facts


@pytest.mark.parametrize(
    "text, level",
    [
        # pregnancy: gestation written many ways; severe pre-eclampsia features; swelling alone is same-day
        (
            "I'm 30 weeks with twins and the babies have been much quieter than usual today, barely any kicks",
            "emergency",
        ),
        ("she's 38 weeks gone and hasn't felt the baby move since last night", "emergency"),
        ("Patient 29 weeks, BP 150/100, 1+ protein, complains of blurred vision", "emergency"),
        (
            "I'm 35 weeks, my hands and face swelled up and I have a pounding headache that paracetamol won't shift",
            "emergency",
        ),
        (
            "33 weeks pregnant, my face and fingers have suddenly gone puffy since yesterday, no headache or vision problems",
            "urgent",
        ),
        ("32 weeks and my palms and soles itch like mad especially at night, no rash", "urgent"),
        ("My partner's 34 weeks and she's itching all over her hands and feet, worse at night", "urgent"),
        ("12 weeks pregnant, vomiting 5 or 6 times a day, can keep some water down, lost 2 kg", "routine"),
        (
            "7 weeks pregnant, nauseous all day and sick once most mornings, but drinking fine and peeing normally",
            "self_care",
        ),
        ("28 weeks pregnant, leg cramps in my calves at night, stretching helps, no swelling", "self_care"),
        ("I'm 22 weeks pregnant and get heartburn after every meal, gaviscon helps", "self_care"),
        # back pain: cauda equina described rather than named
        (
            "my back has been killing me for a week and now my groin is numb and I'm struggling to start peeing",
            "emergency",
        ),
        (
            "52F with sciatica x2 wks, new perineal numbness and urinary retention today, bilateral leg weakness",
            "emergency",
        ),
        (
            "hurt my back lifting boxes yesterday, sore and stiff, no numbness around my bottom, no trouble peeing",
            "self_care",
        ),
        # paracetamol: staggered overdose and double dosing with combination products
        (
            "Patient reports acetaminophen 1 g every 3 hours around the clock for 4 days, now nauseated with RUQ tenderness",
            "emergency",
        ),
        (
            "My son (16) has flu and has been taking paracetamol every 2 hours plus Lemsip, now he's vomiting",
            "emergency",
        ),
        ("I took 2 paracetamol this morning and then a Lemsip at lunch, I feel fine, is that ok?", "urgent"),
        # diabetes: ketones and very high sugars
        ("I'm T1D, blood sugar 380 since this morning, ketones are moderate on the urine strip", "emergency"),
        ("type 1 diabetic, meter says HI, been throwing up and breathing fast", "emergency"),
        (
            "My blood sugar has been running 300s for 2 days since I got a cold, no ketones, eating and drinking fine",
            "urgent",
        ),
        # skin, mouth, bowels, joints, feet, splinters, worms, panic
        ("my 9 month old has a red sore bottom in the nappy area, no fever, feeding well", "self_care"),
        ("I'm 19 and keep getting spots and blackheads on my chin, what can I buy for it?", "self_care"),
        ("My daughter (15) has painful cystic acne on her face and back that is starting to scar", "routine"),
        (
            "I think my 2 year old has hand foot and mouth, sores in her mouth and blisters on her hands, drinking ok",
            "self_care",
        ),
        (
            "Since starting co-codamol after my knee op I haven't opened my bowels for 4 days, no pain, passing wind",
            "self_care",
        ),
        (
            "my knee arthritis is playing up after a long walk, achy and stiff, no swelling or redness, I can walk fine",
            "self_care",
        ),
        ("70 yo T2DM with 1 cm ulcer under the 1st metatarsal head x 10 days, no cellulitis, neuropathy", "urgent"),
        (
            "My son had a splinter in his palm, I pulled it out with tweezers, there's a tiny red mark, no swelling",
            "self_care",
        ),
        ("splinter in my thumb from yesterday, part of it is still in and it's getting red and throbbing", "routine"),
        ("my 5 year old keeps scratching his bum at night and I saw little white worms in his poo", "self_care"),
        (
            "hi there, my daughter (17) keeps having anxiety attacks before school, says she can't breathe, it passes in a few minutes",
            "routine",
        ),
    ],
)
def test_protocol_families_generalise(text, level):
    assessment, _ = protocol_level(text)
    assert assessment.level == level, (text, assessment.level, assessment.rules)


def test_an_unborn_baby_does_not_make_the_patient_an_infant():
    facts = ENGINE.read("My partner is 28 weeks pregnant and her hands are puffy, baby is moving normally")
    assert facts.pregnant and facts.who == "adult"


def test_a_greeting_is_not_homicidal_ideation():
    facts = ENGINE.read("Hi, I've been feeling anxious and low for a month, no thoughts of hurting anyone")
    assert not facts.findings.get("harm_others")
