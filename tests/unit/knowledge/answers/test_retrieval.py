import json
import math

import pytest

from careline.kb import calibrate
from knowledge.answers.retrieval import (
    FEATURES,
    Calibration,
    Hit,
    answers_kind,
    not_an_answer,
    prefer_asked_kind,
    query_qtypes,
    rank,
)


@pytest.mark.parametrize(
    "query, expected",
    [
        # The clauses that ask say what is wanted, not the patient's account around them.
        ("my OB ran a bile acid test and thinks its cholestasis. what causes it?? is it something i did", {"causes"}),
        ("the geneticist said myostatin related muscle hypertrophy. what is that", set()),
        ("whats the prognosis for salivary gland cancer, my mom was just diagnosed", {"outlook"}),
        ("teen got diagnosed with JME. what treatments are there", {"treatment"}),
        ("how common is klinefelter syndrome? my husband found out during fertility testing", {"frequency"}),
        ("how is lupus diagnosed", {"exams and tests"}),
        # No question form: every cue counts.
        ("tell me the treatment for gout", {"treatment"}),
        # Cues start at a word: "because" is no cause, "health" no healing, "geneticist" no inheritance.
        ("i feel sick because of my health", set()),
        ("what are the risks of knee replacement surgery", {"complications"}),
        ("how long until whiplash gets better", {"outlook"}),
    ],
)
def test_query_qtypes_reads_the_question_not_the_story(query, expected):
    assert query_qtypes(query) == expected


def test_answers_kind():
    assert answers_kind("information", set())
    assert not answers_kind("treatment", set())
    assert answers_kind("causes", {"causes"})
    assert answers_kind("genetic changes", {"causes"})  # GHR explains causes under "genetic changes"
    assert not answers_kind("genetic changes", {"treatment"})


def test_not_an_answer():
    assert not_an_answer("These resources address the diagnosis or management of X: - GeneReviews")
    assert not_an_answer("Is Williams syndrome inherited?")
    assert not_an_answer("  ")
    assert not not_an_answer("Kabuki syndrome occurs in approximately 1 in 32,000 newborns.")


def hit(cid, score, focus="Gout", qtype="information", **features):
    return Hit(
        cid + "~0", cid, score, {"focus": focus, "qtype": qtype, "kind": "medical"}, "text", {"name": 1.0, **features}
    )


def test_prefer_asked_kind_promotes_the_asked_kind_on_the_same_topic():
    ranked = [
        hit("a#1", 0.9),
        hit("b#1", 0.5, focus="Lupus", qtype="causes", name=0.0),
        hit("a#3", 0.4, qtype="causes"),
    ]
    out = prefer_asked_kind(ranked, {"causes"})
    assert [h.citation_id for h in out] == ["a#3", "a#1", "b#1"]
    assert out[0].score == 0.9 and out[0].features["promoted"] == 1.0


def test_prefer_asked_kind_keeps_order_when_nothing_fits():
    too_weak = [hit("a#1", 0.9), hit("a#3", 0.2, qtype="causes")]
    assert prefer_asked_kind(too_weak, {"causes"}) == too_weak
    only_links = [hit("a#1", 0.9), hit("a#5", 0.8, qtype="treatment", no_answer=1.0)]
    assert prefer_asked_kind(only_links, {"treatment"}) == only_links


def test_rank_rescores_with_a_calibration():
    hits = [hit("a#1", 0.9, dense=0.1), hit("b#1", 0.1, focus="Lupus", dense=0.9)]
    out = rank(hits, set(), Calibration({"dense": 10.0}, -5.0, 0.5))
    assert [h.citation_id for h in out] == ["b#1", "a#1"]
    assert out[0].score == pytest.approx(1 / (1 + math.exp(-4.0)))


class FakeRetriever:
    """Answerable questions have one strong relevant candidate; the others only weak ones."""

    def scored_candidates(self, question, context=None):
        n = int(question.split()[1])
        strong = n % 4 != 0
        hits = []
        for j in range(5):
            relevant = strong and j == 0
            value = (0.8 if relevant else 0.2) + 0.01 * ((n * 7 + j * 3) % 10)
            features = {f: 0.0 for f in FEATURES}
            features.update(dense=value, bm25=value, rank_dense=1 / (1 + j), information=1.0, name=1.0)
            hits.append(
                Hit(
                    f"q{n}#{j}~0",
                    f"q{n}#{j}",
                    0.0,
                    {"focus": f"t{n}", "qtype": "information", "kind": "medical"},
                    "text",
                    features,
                )
            )
        return hits


def test_calibrate_chooses_the_threshold_by_cross_validation(tmp_path):
    cases = tmp_path / "cases.jsonl"
    lines = []
    for n in range(80):
        if n % 4:
            lines.append({"id": str(n), "question": f"question {n}", "relevant": [f"q{n}#0"]})
        else:
            lines.append({"id": str(n), "question": f"question {n}", "answerable": False})
    cases.write_text("\n".join(json.dumps(c) for c in lines) + "\n")
    out = tmp_path / "calibration.json"
    saved = calibrate(tmp_path, cases, out, retriever=FakeRetriever())
    assert json.loads(out.read_text()) == saved
    assert set(saved["weights"]) == set(FEATURES)
    cv = saved["cross_validated"]
    assert cv["wrong_answer_rate"] <= 0.04 and cv["abstention"] >= 0.92 and cv["answered_rate"] > 0.9
    model = Calibration.load(out)
    strong, weak = FakeRetriever().scored_candidates("question 1"), FakeRetriever().scored_candidates("question 4")
    assert model.probability(strong[0].features) >= model.threshold > model.probability(weak[0].features)
