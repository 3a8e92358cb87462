import json

import pytest

from careline.eval_nlu import read_cases, report


def test_report_figures():
    cases = [
        {"id": str(i), "text": t, "intent": e}
        for i, (t, e) in enumerate(
            [("hi", "greet"), ("hello", "greet"), ("bye", "goodbye"), ("fly me", "out_of_scope")]
        )
    ]
    preds = [("greet", 0.9), ("goodbye", 0.5), ("goodbye", 0.8), ("nlu_fallback", 0.3)]
    r = report(cases, preds)
    assert r["accuracy"] == 0.5
    assert r["intents"]["greet"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert r["intents"]["goodbye"] == {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 1}
    assert r["intents"]["out_of_scope"]["recall"] == 0.0
    assert r["fallback_rate"] == 0.25
    assert [e["id"] for e in r["errors"]] == ["1", "3"]
    assert r["errors"][1] == {
        "id": "3",
        "text": "fly me",
        "expected": "out_of_scope",
        "predicted": "nlu_fallback",
        "confidence": 0.3,
    }


def test_read_cases_rejects_bad_lines(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"id": "a", "text": "hi", "intent": "greet"}) + "\n\n")
    assert len(read_cases(good)) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "hi"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_cases(bad)
