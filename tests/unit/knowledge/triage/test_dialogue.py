"""The triage form's answers and outcome, table-driven over the real protocols."""

import pytest

from knowledge.triage.dialogue import SelfCareAdvice, TriageState, apply_answer, outcome
from knowledge.triage.engine import assess_text, default_engine, parse_duration_hours, parse_temperature_f
from knowledge.triage.textmatch import load_lexicon, normalise

ENGINE = default_engine()


def start(text):
    state = TriageState()
    ENGINE.read(text, state.facts)
    q = ENGINE.next_question(state.facts)
    state.current, state.asked = q.id, [q.id]
    return state, q


@pytest.mark.parametrize(
    "text, hours",
    [
        ("for 3 days", 72),
        ("since yesterday", 24),
        ("2 weeks", 336),
        ("a couple of hours", 2),
        ("x30 minutes", 0.5),
        ("since this morning", 6),
        ("nothing", None),
    ],
)
def test_durations(text, hours):
    value = parse_duration_hours(normalise(text, load_lexicon()))
    assert (value is None and hours is None) or value == pytest.approx(hours)


@pytest.mark.parametrize(
    "text, f",
    [
        ("fever of 101.5", 101.5),
        ("temp 39 c", 102.2),
        ("temperature is 38.5", 101.3),
        ("38.5", None),
        ("it's 103f", 103),
        ("no fever", None),
        ("he is 7 years old", None),
    ],
)
def test_temperatures(text, f):
    value = parse_temperature_f(normalise(text, load_lexicon()))
    assert (value is None and f is None) or value == pytest.approx(f, abs=0.1)


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("yes", "answered"),
        ("Yep", "answered"),
        ("no", "answered"),
        ("not sure", "answered"),
        ("idk", "answered"),
        ("purple", "unclear"),
        ("go back", "back"),
        ("talk to a person", "person"),
        ("cancel", "stop"),
    ],
)
def test_answers_are_understood(reply, expected):
    state, _q = start("i have a fever and i'm an adult, it's 101")
    state.current = "meningitis_signs"  # a yes/no question
    assert apply_answer(ENGINE, state, reply) == expected


def test_not_sure_pushes_up_and_free_text_answers_count():
    state, q = start("I have a fever of 100.5 since yesterday")
    assert q.kind in ("who", "yes_no")
    while q is not None and q.finding != "meningitis_signs":
        apply_answer(ENGINE, state, "me" if q.kind == "who" else "no" if q.kind != "conditions" else "none")
        q = ENGINE.next_question(state.facts)
        if q:
            state.current = q.id
            state.asked.append(q.id)
    assert q is not None
    apply_answer(ENGINE, state, "not sure")
    assert ENGINE.assess(state.facts).level == "urgent"
    apply_answer(ENGINE, state, "actually yes he has a stiff neck")
    assert ENGINE.assess(state.facts).level == "emergency"


def test_go_back_forgets_the_previous_answer():
    state, q = start("there's a fever")
    assert q.kind == "who"
    apply_answer(ENGINE, state, "me")
    assert state.facts.who == "adult"
    nxt = ENGINE.next_question(state.facts)
    state.current = nxt.id
    state.asked.append(nxt.id)
    assert apply_answer(ENGINE, state, "go back") == "back"
    assert state.facts.who is None
    assert ENGINE.next_question(state.facts).kind == "who"


@pytest.mark.parametrize(
    "text, level",
    [
        ("my chest hurts and I'm sweating", "emergency"),
        ("my 6 week old has a temperature of 100.8", "emergency"),  # NICE NG143: a red feature
        ("it burns when I pee, I'm 20 weeks pregnant", "urgent"),
        ("I've had a fever of 101 for 4 days", "routine"),
        ("fever of 100.4 since last night, otherwise fine", "self_care"),
    ],
)
def test_outcome_shows_level_reasons_next_step_and_sources(text, level):
    assessment, facts = assess_text(text, ENGINE)
    assert assessment.level == level
    shown = outcome(assessment, facts, "web", advice=None)
    assert "not a diagnosis" in shown["text"]
    assert assessment.reasons and assessment.reasons[0] in shown["text"]
    assert shown["escalate"] == (level == "emergency")
    if level in ("urgent", "routine"):
        assert any(b["payload"] == "/book_appointment" for b in shown["buttons"])
    assert "https://" in shown["text"]


@pytest.mark.parametrize(
    "advice, sources_cited",
    [
        (None, True),
        (SelfCareAdvice('Rest and drink fluids.\n\nSource: MedlinePlus, "Fever" https://x.example', True), False),
        # whether the advice cites is what it says it is, not what its words look like
        (SelfCareAdvice("Source of the fever aside, rest and drink fluids."), True),
        (SelfCareAdvice("Descanse y beba líquidos. Fuente: MedlinePlus", cited=True), False),
    ],
    ids=["no-advice", "cited", "uncited-saying-source", "cited-in-another-language"],
)
def test_self_care_sources_are_cited_once(advice, sources_cited):
    assessment, facts = assess_text("fever of 100.4 since last night, otherwise fine", ENGINE)
    assert assessment.level == "self_care"
    shown = outcome(assessment, facts, "web", advice=advice)["text"]
    protocol_sources = "Source: " + assessment.sources[0].organisation
    assert (protocol_sources in shown) is sources_cited
    assert advice is None or advice.text in shown


def test_every_question_names_its_subject_in_words():
    """Protocols write {you}/{are_you}...: the patient reads "you", a carer of a child "they"."""
    from knowledge.triage.dialogue import worded
    from knowledge.triage.engine import Facts, default_engine

    for protocol in default_engine().protocols.values():
        for q in protocol.questions:
            for facts in (None, Facts(who="child")):
                text = worded(q, facts)
                assert "{" not in text and "}" not in text and text[0].isupper(), (protocol.id, q.id, text)
    q = default_engine().protocol("urinary").questions[0]
    assert "they" in worded(q, Facts(who="infant")) or "{" not in q.ask
