"""Every red-flag rule file: each rule has a public source and examples, and the examples hold."""

import shutil
import time
from pathlib import Path

import pytest
import yaml

from careline.gsm7 import to_gsm7
from knowledge.messages import msg
from knowledge.triage import RULES_DIR
from knowledge.triage.redflags import RedFlagRules, RuleFileError, sms_whole_limit, with_crisis_line

RULES = RedFlagRules.load()
FILES = sorted(p.name for p in (RULES_DIR / "safety").glob("*.yml"))


def rules_of(file: str):
    category = Path(file).stem
    return [r for r in RULES.rules if r.category == category]


def test_there_is_a_file_per_required_category():
    required = {
        "cardiac",
        "stroke",
        "breathing",
        "severe_bleeding",
        "anaphylaxis",
        "poisoning_overdose",
        "suicide_self_harm",
        "harm_to_others_abuse",
        "seizure",
        "unconsciousness",
        "pregnancy_emergency",
        "infant_child",
    }
    assert required <= {Path(f).stem for f in FILES}


@pytest.mark.parametrize("file", FILES)
def test_every_rule_has_a_source_and_examples(file):
    rules = rules_of(file)
    assert rules, f"{file} has no rules"
    category = RULES.categories[Path(file).stem]
    assert category.messages["web"] and category.messages["sms"]
    assert len(category.messages["sms"]) <= 320
    assert "911" in category.messages["web"] or "988" in category.messages["web"]
    for rule in rules:
        assert rule.source.url.startswith("https://"), rule.id
        assert rule.source.organisation and rule.source.title, rule.id
        assert rule.reason, rule.id
        assert rule.positive, f"{rule.id} needs a positive example"
        assert rule.negative, f"{rule.id} needs a negative example"


@pytest.mark.parametrize("file", FILES)
def test_positive_examples_fire_their_rule(file):
    for rule in rules_of(file):
        for text in rule.positive:
            screening = RULES.screen(text)
            assert screening.outcome in ("emergency", "crisis"), (rule.id, text)
            assert rule.id in screening.rules, (rule.id, text, screening.rules)


@pytest.mark.parametrize("file", FILES)
def test_negative_examples_do_not_fire_their_rule(file):
    for rule in rules_of(file):
        for text in rule.negative:
            screening = RULES.screen(text)
            fired = screening.outcome in ("emergency", "crisis") and rule.id in screening.rules
            assert not fired, (rule.id, text)


@pytest.mark.parametrize(
    "text, outcome",
    [
        ("my dad is slurring his words", "emergency"),
        ("cant breathe", "emergency"),
        ("chest hurts bad", "emergency"),
        ("kms", "crisis"),
        ("no chest pain, just a cough", None),
        ("what are the signs of a stroke?", "advise"),
        ("this traffic is killing me", None),
        ("I had a heart attack in 2019 and want to book my follow-up", None),
        ("had surgery last week, now fever 103, heart racing and confused", "emergency"),
        ("no I'm not ok, I can't breathe", "emergency"),
        ("took a whole bottle of my pills because i want to die", "emergency"),
    ],
)
def test_screen_outcomes(text, outcome):
    assert RULES.screen(text).outcome == outcome


def test_mixed_emergency_and_crisis_message_has_both_numbers():
    screening = RULES.screen("took a whole bottle of my pills because i want to die")
    for channel in ("web", "sms"):
        message = RULES.message(screening, channel)
        assert "911" in message and "988" in message


@pytest.mark.parametrize(
    "text, rule",
    [
        ("potassium came back at 7.1", "cardiac.high_potassium"),
        ("Potassium came back at 7.1 mmol", "cardiac.high_potassium"),
        ("took like maybe 30 pills", "poisoning_overdose.took_too_much"),
        ("fell off a ladder , hit my head , now vomiting and confused", "head_injury.danger_signs"),
    ],
)
def test_rewritten_patterns_still_fire(text, rule):
    assert rule in RULES.screen(text).rules


@pytest.mark.parametrize(
    "text",
    [
        "potassium" + " came back at" * 152,  # backtracked exponentially before RE2
        "took" + " like maybe" * 180,
        ("fall" + " , fall" * 10 + " , head" * 10 + " no passed out . ") * 12,
        "no no suicidal " * 133,  # a negated match every few words
        "a. " * 666,  # a thousand sentences
    ],
)
def test_adversarial_messages_screen_quickly(text):
    """careline.bench_screen measures the screen on every pattern's worst input (target 50 ms);
    this only guards against a return of seconds or hours, on a loaded test machine."""
    text = text[:2000]
    RULES.screen(text)
    start = time.perf_counter()
    RULES.screen(text)
    assert time.perf_counter() - start < 0.5


# --- emergency SMS texts go out whole ------------------------------------------------------------

STROKE_ES = (  # a translation that grew too long for one SMS turn
    "Estos pueden ser signos de un derrame cerebral (ictus). Llame al 911 ahora mismo: cada minuto cuenta. "
    "Anote la hora en que empezaron los síntomas o la última vez que la persona estuvo bien, no le dé comida, "
    "bebida ni medicamentos, y quédese con ella hasta que llegue la ayuda. Nuestro personal ya ha sido avisado."
)


@pytest.fixture
def spanish(tmp_path, monkeypatch):
    """A temporary Spanish catalogue as the configured language; the test writes its es.yml."""
    from knowledge import messages

    shutil.copy(messages.DIRECTORY / "en.yml", tmp_path / "en.yml")
    monkeypatch.setattr(messages, "DIRECTORY", tmp_path)
    monkeypatch.setenv("CARELINE_LANGUAGE", "es")
    write_es(tmp_path / "es.yml", {"kb.offer_person": "¿Quiere hablar con un miembro de nuestro personal?"})
    yield tmp_path / "es.yml"
    messages.default_catalogue.cache_clear()


def write_es(path: Path, texts: dict[str, str]) -> None:
    from knowledge import messages

    path.write_text(yaml.safe_dump(texts, allow_unicode=True), encoding="utf-8")
    messages.default_catalogue.cache_clear()  # read again on next use


def test_the_english_safety_sms_texts_fit_with_room_to_spare():
    crisis = msg("safety.crisis_too.sms")
    for category in RULES.categories.values():
        assert len(to_gsm7(with_crisis_line(category.messages["sms"], crisis))) <= sms_whole_limit() - 30


def test_an_over_long_translated_safety_sms_is_refused_at_load(spanish):
    write_es(spanish, {"safety.stroke.sms": STROKE_ES, "safety.cardiac.sms": "Llame al 911 ahora."})
    with pytest.raises(
        RuleFileError, match=r"stroke\.yml: the SMS text safety\.stroke\.sms is 3\d\d characters.*es\.yml"
    ):
        RedFlagRules.load(RULES_DIR)
    write_es(spanish, {"safety.stroke.sms": STROKE_ES[:200]})
    assert RedFlagRules.load(RULES_DIR).categories["stroke"].messages["sms"] == STROKE_ES[:200]


def test_the_limit_counts_the_crisis_line_the_screen_adds(spanish):
    room = sms_whole_limit() - len(" " + msg("safety.crisis_too.sms"))
    fits_alone = ("Llame al 911. " * 30)[: room + 5].strip()  # too long only with the crisis line
    write_es(spanish, {"safety.cardiac.sms": fits_alone})
    with pytest.raises(RuleFileError, match=r"safety\.cardiac\.sms"):
        RedFlagRules.load(RULES_DIR)
    gives_988 = "988. " + fits_alone[5:]  # the screen adds no crisis line to a text that has 988
    write_es(spanish, {"safety.cardiac.sms": gives_988})
    assert RedFlagRules.load(RULES_DIR).categories["cardiac"].messages["sms"] == gives_988


def test_the_length_is_measured_after_gsm7_conversion(spanish):
    """ "…" goes out as "...": a text that looks short enough may not be."""
    text = "Llame al 988 … " * (sms_whole_limit() // 15)
    assert len(text.strip()) <= sms_whole_limit() < len(to_gsm7(text.strip()))
    write_es(spanish, {"safety.suicide_self_harm.sms": text.strip()})
    with pytest.raises(RuleFileError, match=r"safety\.suicide_self_harm\.sms"):
        RedFlagRules.load(RULES_DIR)


def test_an_over_long_notice_is_refused_too(spanish):
    write_es(spanish, {"safety.advise.sms": "Si esto está pasando ahora, llame al 911. " * 8})
    with pytest.raises(RuleFileError, match=r"the safety screen: the SMS text safety\.advise\.sms"):
        RedFlagRules.load(RULES_DIR)
