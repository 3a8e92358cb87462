"""Evaluation gates of the triage engine and the safety screen on the development sets.

Anchors: symptom checkers triaged 57% of vignettes correctly and caught 80% of emergencies
(Semigran et al., BMJ 2015); physicians reached 91% (Levine et al., 2023)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def run(what: str, cases: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "careline.cli", "eval", what, "--cases", str(cases)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def triage():
    return run("triage", HERE / "triage_dev.jsonl")


@pytest.fixture(scope="module")
def safety():
    return run("safety", HERE / "safety_set.jsonl")


def test_triage_development_set_size_and_mix():
    cases = [json.loads(line) for line in (HERE / "triage_dev.jsonl").read_text().splitlines() if line.strip()]
    assert len(cases) >= 120
    levels = [c["expected"] for c in cases]
    assert levels.count("emergency") >= 40 and levels.count("self_care") >= 40
    assert {"adult", "child", "infant", "pregnant"} <= {c["who"] for c in cases}
    assert {"first_person", "caregiver", "clinician"} <= {c["voice"] for c in cases}


def test_triage_gate(triage):
    assert triage["emergency_recall"] == 1.0, [
        c for c in triage["cases"] if c["expected"] == "emergency" and c["predicted"] != "emergency"
    ]
    assert triage["accuracy"] >= 0.85, triage["accuracy"]
    assert {"accuracy", "emergency_recall", "under_triage_rate", "over_triage_rate", "confusion", "cases"} <= set(
        triage
    )
    for case in triage["cases"]:
        assert case["reasons"] and case["rules"], case["id"]


def test_safety_set_size():
    cases = [json.loads(line) for line in (HERE / "safety_set.jsonl").read_text().splitlines() if line.strip()]
    assert sum(c["expected"] != "none" for c in cases) >= 150
    assert sum(c["expected"] == "none" for c in cases) >= 150


def test_safety_gate(safety):
    missed = [c for c in safety["cases"] if c["expected"] != "none" and c["outcome"] not in ("emergency", "crisis")]
    assert safety["emergency_recall"] == 1.0, missed
    assert safety["false_alarm_rate"] <= 0.05, safety["false_alarm_rate"]


# The held-out sets 1-3 were used to generalise the rules after they were measured: they are
# regression gates now. holdout4 stays out of every gate and every tuning step (the honest figure).
@pytest.mark.parametrize("name", ["triage_holdout", "triage_holdout2", "triage_holdout3"])
def test_triage_regression_sets(name):
    report = run("triage", HERE / f"{name}.jsonl")
    assert report["emergency_recall"] == 1.0
    assert report["accuracy"] >= 0.85, report["accuracy"]


@pytest.mark.parametrize("name", ["safety_holdout", "safety_holdout2", "safety_holdout3"])
def test_safety_regression_sets(name):
    report = run("safety", HERE / f"{name}.jsonl")
    assert report["emergency_recall"] == 1.0
    assert report["false_alarm_rate"] <= 0.05, report["false_alarm_rate"]


# Sets written elsewhere (issue 12): the ESI handbook's clinician-written vignettes with its answer
# key (../shared/eval) and triage_external_dev, written by another hand from the structure of
# public case collections and "when to seek care" guidance, in five voices. Their held-out twin
# (triage_external_holdout.jsonl) stays out of every gate and every tuning step.
SHARED_EVAL = Path(__file__).resolve().parents[3] / "shared" / "eval"


@pytest.mark.parametrize(
    "cases, accuracy",
    [
        (SHARED_EVAL / "triage_esi_dev.jsonl", 0.85),
        (HERE / "triage_external_dev.jsonl", 0.90),
        (HERE / "triage_external_dev2.jsonl", 0.90),  # emergencies in lay, indirect and buried words
    ],
    ids=["esi_dev", "external_dev", "external_dev2"],
)
def test_triage_on_sets_written_elsewhere(cases, accuracy):
    report = run("triage", cases)
    missed = [c for c in report["cases"] if c["expected"] == "emergency" and c["predicted"] != "emergency"]
    assert report["emergency_recall"] == 1.0, missed
    assert report["accuracy"] >= accuracy, report["accuracy"]
    assert report["latency_ms"]["p95_ms"] < 1000  # a guard against seconds; speed is `make bench`'s


def test_every_complaint_and_discriminator_is_reported():
    report = run("triage", HERE / "triage_external_dev.jsonl")
    assert sum(1 for c in report["cases"] if len(c["parts"]) > 1) >= 20
