"""`careline kb calibrate` over several case files (short questions and long messages): the
threshold must hold on each file, the held-out figures are saved per file, and a medicine question
that `decide` sends to the pharmacist counts as abstained, as it is in use. A stand-in retriever
gives the candidates (the real one needs the ingested knowledge base: tests/eval/test_rag_gate.py)."""

from __future__ import annotations

import json

from careline.kb import calibrate
from knowledge.answers.retrieval import FEATURES, Hit


class CandidateRetriever:
    """Question n has five candidates; the first is strong unless n is a multiple of 4 (then only
    weak ones), and relevant only for answerable cases (their case file lists it)."""

    def scored_candidates(self, question, context=None):
        n = int(question.split()[1])
        strong = n % 4 != 0
        hits = []
        for j in range(5):
            value = (0.8 if strong and j == 0 else 0.2) + 0.01 * ((n * 7 + j * 3) % 10)
            features = {f: 0.0 for f in FEATURES}
            features.update(dense=value, bm25=value, rank_dense=1 / (1 + j), information=1.0, name=1.0)
            meta = {"focus": f"t{n}", "title": f"t{n}", "qtype": "information", "kind": "medical"}
            hits.append(Hit(f"q{n}#{j}~0", f"q{n}#{j}", 0.0, meta, "text", features))
        return hits


def write(path, cases):
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    return path


def test_calibrating_on_two_files_holds_on_each_and_counts_medicine_questions_as_abstained(tmp_path):
    short = write(
        tmp_path / "short.jsonl",
        [
            {"id": f"s{n}", "question": f"question {n}", "relevant": [f"q{n}#0"]}
            if n % 4
            else {"id": f"s{n}", "question": f"question {n}", "answerable": False}
            for n in range(80)
        ],
    )
    # Questions on a medicine with a strong candidate that is not about it: `decide` abstains
    # (the pharmacist answers), so calibration must not count them as answered.
    medicine = [
        {"id": f"m{n}", "question": f"question {n} what are the side effects of metformin", "answerable": False}
        for n in range(101, 140, 2)
    ]
    long = write(
        tmp_path / "long.jsonl",
        [{"id": f"l{n}", "question": f"question {n}", "relevant": [f"q{n}#0"]} for n in range(201, 240, 2)] + medicine,
    )
    saved = calibrate(tmp_path, [short, long], tmp_path / "calibration.json", retriever=CandidateRetriever())
    cv = saved["cross_validated"]
    assert saved["fitted_on"].startswith("short.jsonl + long.jsonl: 120 cases")
    assert cv["long.jsonl"]["abstention"] == 1.0  # strong candidates, yet never answered
    for name in ("short.jsonl", "long.jsonl"):
        assert cv[name]["wrong_answer_rate"] <= 0.04 and cv[name]["abstention"] >= 0.92, (name, cv[name])
        assert cv[name]["answered_rate"] > 0.9
    assert saved["threshold"] < 1.0


def test_one_file_is_calibrated_as_before(tmp_path):
    cases = write(
        tmp_path / "cases.jsonl",
        [{"id": str(n), "question": f"question {n}", "relevant": [f"q{n}#0"]} for n in range(1, 60, 2)]
        + [{"id": str(n), "question": f"question {n}", "answerable": False} for n in range(0, 60, 4)],
    )
    saved = calibrate(tmp_path, cases, tmp_path / "calibration.json", retriever=CandidateRetriever())
    assert saved["fitted_on"].startswith("cases.jsonl: 45 cases")
    assert set(saved["cross_validated"]) == {"folds", "repeats", "wrong_answer_rate", "abstention", "answered_rate"}
