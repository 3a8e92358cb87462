"""Evaluation gates for grounded answers, on the full knowledge base in var/chroma
(`make test` ingests it first) and the development set tests/eval/rag_dev.jsonl."""

import re
from functools import lru_cache
from pathlib import Path

import pytest

from careline.kb import evaluate_rag, read_rag_cases
from channels.paging import page_chars
from knowledge.answers.answer import decide, render
from knowledge.answers.vectorstore import make_retriever

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "eval" / "rag_dev.jsonl"
# Questions of realistic length: a subject line, a backstory, then what is asked.
LONG_CASES = ROOT / "tests" / "eval" / "rag_long_dev.jsonl"
MEDQUAD = ROOT.parent / "shared" / "data" / "medquad"


@lru_cache(maxsize=1)
def retriever():
    r = make_retriever(ROOT)
    if r.vs._collection.count() < 20000:
        pytest.fail("the knowledge base is not fully ingested: run `careline kb ingest` (make test does)")
    return r


@pytest.fixture(scope="module")
def report():
    return evaluate_rag(ROOT, CASES, retriever())


def test_development_set_shape():
    cases = read_rag_cases(CASES)
    answerable = [c for c in cases if c.get("answerable", True)]
    assert len(answerable) >= 200 and len(cases) - len(answerable) >= 50
    sources = {c["relevant"][0].split("/")[0] for c in answerable}
    assert {
        "1_CancerGov_QA",
        "2_GARD_QA",
        "3_GHR_QA",
        "4_MPlus_Health_Topics_QA",
        "5_NIDDK_QA",
        "6_NINDS_QA",
        "7_SeniorHealth_QA",
        "8_NHLBI_QA_XML",
        "9_CDC_QA",
        "clinic",
    } <= sources


def test_recall_abstention_and_wrong_answers(report):
    assert report["recall@3"] >= 0.90, report["recall@3"]
    assert report["abstention_rate"] >= 0.90, report["abstention_rate"]
    # Of the questions answered, at most 1 in 20 cites a passage that does not answer them (the
    # threshold is chosen by cross-validation for 0.96, see `careline kb calibrate`).
    assert report["wrong_answer_rate"] <= 0.05, report["wrong_answer_rate"]
    # Abstaining on everything would pass the line above: keep answering most answerable questions.
    assert report["answered_rate"] >= 0.6, report["answered_rate"]
    # Latency is a figure of `make bench` (careline.bench_kb), not a gate on a shared test machine.
    assert {"recall@1", "recall@5", "mrr", "answered_rate", "latency_ms", "cases"} <= set(report)


def test_long_messages_find_their_question(report):
    """Patients write several sentences: the question inside is found before retrieval
    (knowledge/answers/question.py) and the threshold is fitted on long messages too, so the right
    topic is retrieved and most are answered, and almost never from another topic."""
    long = evaluate_rag(ROOT, LONG_CASES, retriever())
    assert long["answerable"] >= 80 and long["unanswerable"] >= 20
    assert long["recall@5"] >= 0.85, long["recall@5"]
    assert long["answered_rate"] >= 0.60, long["answered_rate"]
    assert long["wrong_topic_rate"] <= 0.05, long["wrong_topic_rate"]
    assert long["wrong_answer_rate"] <= 0.05, long["wrong_answer_rate"]
    assert long["abstention_rate"] >= 0.90, long["abstention_rate"]  # medicines and off-topic questions
    # The short questions still hold with the threshold fitted on both (the `report` fixture).
    assert report["wrong_topic_rate"] <= report["wrong_answer_rate"] <= 0.05


def real_entry(citation_id: str) -> bool:
    path, _, pid = citation_id.partition("#")
    if path.startswith("clinic/"):
        file = ROOT / "knowledge" / path
        return file.exists() and any(
            re.sub(r"[^a-z0-9]+", "-", line[3:].lower()).strip("-") == pid
            for line in file.read_text().splitlines()
            if line.startswith("## ")
        )
    file = MEDQUAD / path
    return file.exists() and f'pid="{pid}"' in file.read_text()


def test_every_answer_carries_a_citation_to_a_real_entry():
    r = retriever()
    answered = 0
    for case in read_rag_cases(CASES):
        d = decide(r.search(case["question"], k=3), r.calibration.threshold)
        if not d.answer:
            continue
        answered += 1
        hit = d.cited[0]
        assert real_entry(hit.citation_id), hit.citation_id
        for channel in ("web", "sms"):
            rendered = render(hit, channel, page_chars() if channel == "sms" else None)  # SMS: every page
            for message in [rendered.first, *rendered.rest]:
                assert "Source: " in message and hit.metadata["url"] in message, (case["id"], channel)
    assert answered >= 150
