"""`careline eval nlu` measures what the patient gets: out_of_scope and nlu_fallback predictions go
through the health-domain guard (knowledge/domain.py, real), the figures are the guarded ones,
`raw` keeps the model's own, and `guard` counts right and wrong rescues."""

from __future__ import annotations

from careline.eval_nlu import apply_guard, raw_figures, report


def cases(*rows: tuple[str, str]) -> list[dict]:
    return [{"id": str(i), "text": t, "intent": e} for i, (t, e) in enumerate(rows)]


CASES = cases(
    ("my son has had a fever since last night", "report_symptom"),  # rescued
    ("is shingles contagious", "ask_health_question"),  # rescued
    ("how many calories in a banana", "out_of_scope"),  # left out of scope
    ("is flu contagious", "out_of_scope"),  # a health question, whatever its label says
    ("i have a headache", "report_symptom"),  # the model was right: untouched
    ("can i take advil with lisinopril", "ask_health_question"),  # only out_of_scope and nlu_fallback are guarded
)
PREDICTIONS = [
    ("out_of_scope", 0.9),
    ("nlu_fallback", 0.3),
    ("out_of_scope", 0.8),
    ("out_of_scope", 0.7),
    ("report_symptom", 0.95),
    ("greet", 0.6),
]


def test_the_guard_changes_only_misplaced_health_messages():
    guarded, counts = apply_guard(CASES, PREDICTIONS)
    assert [p for p, _ in guarded] == [
        "report_symptom",
        "ask_health_question",
        "out_of_scope",
        "ask_health_question",
        "report_symptom",
        "greet",
    ]
    assert [c for _, c in guarded] == [c for _, c in PREDICTIONS]
    assert counts == {"rescued": 2, "wrongly_rescued": 1}


def test_guarded_and_raw_figures():
    guarded, _ = apply_guard(CASES, PREDICTIONS)
    figures = report(CASES, guarded)
    raw = raw_figures(CASES, PREDICTIONS)
    assert figures["intents"]["report_symptom"]["recall"] == 1.0
    assert figures["intents"]["out_of_scope"]["recall"] == 0.5
    assert raw == {
        "accuracy": round(3 / 6, 4),
        "intents": {"ask_health_question": 0.0, "out_of_scope": 1.0, "report_symptom": 0.5},
    }
    assert figures["accuracy"] == round(4 / 6, 4)
