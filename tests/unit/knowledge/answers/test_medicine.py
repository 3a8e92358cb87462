"""Medicine questions in `decide` (knowledge/answers/answer.py): a named medicine asked about as a
pharmacist would be (dose, side effects, interactions, safety, use), or with no condition named,
is answered only from a passage about that medicine; otherwise the reason is "medicine"."""

from __future__ import annotations

import pytest

from knowledge.answers.answer import about_medicine, decide, medicine_asked_about
from knowledge.answers.retrieval import Hit


def hit(focus="Gout", synonyms="", score=0.9, name=0.0, question=None):
    metadata = {
        "focus": focus,
        "title": focus,
        "synonyms": synonyms,
        "question": question or f"What is (are) {focus} ?",
        "kind": "medical",
    }
    return Hit(f"{focus}#1~0", f"{focus}#1", score, metadata, "text", {"name": name})


@pytest.mark.parametrize(
    "message, top, expected",
    [
        ("what are the side effects of metformin", None, ["metformin"]),
        ("can i take aspirin with warfarin", None, ["aspirin", "warfarin"]),
        ("is tylenol safe while pregnant", None, ["tylenol"]),
        ("what is lisinopril", None, ["lisinopril"]),  # no condition named: the medicine is the topic
        # A condition named and a passage about it: the medicine is told in passing.
        ("my mom takes lisinopril. what causes gout?", hit(name=1.0), []),
        # ... but a pharmacist's question about the medicine stays one.
        ("my mom has gout, can she take lisinopril with her gout pills", hit(name=1.0), ["lisinopril"]),
        # No medicine at all.
        ("what causes gout", hit(name=1.0), []),
        ("what are the side effects of a knee replacement", None, []),
        # A long message: what asks is read, the story is not.
        (
            "Hi, my doctor put me on metformin two years ago and it has been fine. My sister now has gout in her "
            "foot. What causes gout? Thanks",
            hit(name=1.0),
            [],
        ),
    ],
)
def test_medicine_asked_about(message, top, expected):
    assert medicine_asked_about(message, top) == expected


def test_about_medicine_reads_the_topic_not_the_text():
    assert about_medicine(hit("Pain Relievers", "Analgesics; ibuprofen"), ["ibuprofen"])
    assert about_medicine(hit("Statins"), ["statin"])  # plural topic, singular medicine
    assert not about_medicine(hit("Diabetes", question="What are the treatments for Diabetes ?"), ["metformin"])


def test_decide_sends_medicine_questions_without_a_passage_on_the_medicine_to_the_pharmacist():
    threshold = 0.5
    # Confident, but about the condition, not the medicine asked about.
    d = decide([hit("Diabetes", score=0.95)], threshold, "what are the side effects of metformin")
    assert (d.answer, d.reason) == (False, "medicine")
    assert decide([], threshold, "what are the side effects of metformin").reason == "medicine"
    # A passage about the medicine, probable enough: answered.
    pain = hit("Pain Relievers", "Analgesics; ibuprofen", score=0.9)
    assert decide([pain], threshold, "how many mg of ibuprofen can i take").answer
    # ... and not when it is under the threshold.
    low = hit("Pain Relievers", "Analgesics; ibuprofen", score=0.3)
    assert decide([low], threshold, "how many mg of ibuprofen can i take").reason == "medicine"
    # Without the message, decide is as before.
    assert decide([hit("Diabetes", score=0.95)], threshold).answer
    assert decide([hit(score=0.3)], threshold, "what causes gout").reason == "low_confidence"
