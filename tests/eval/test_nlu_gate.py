"""Evaluation gates: `careline eval nlu` on held-out sets, against the running stack's Rasa."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]
SHARED_EVAL = ROOT.parent / "shared" / "eval"


def run_eval(stack, cases: Path) -> dict:
    env = {**os.environ, "RASA_URL": stack.rasa_url, "RASA_TOKEN": stack.rasa_token}
    result = subprocess.run(
        [sys.executable, "-m", "careline.cli", "eval", "nlu", "--cases", str(cases)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"accuracy", "intents", "errors"} <= set(report)
    return report


def test_out_of_scope_and_small_talk_clinc(stack):
    report = run_eval(stack, SHARED_EVAL / "nlu_clinc_dev.jsonl")
    assert report["intents"]["out_of_scope"]["recall"] >= 0.85
    assert report["accuracy"] >= 0.80


def test_booking_requests_sgd(stack):
    report = run_eval(stack, SHARED_EVAL / "nlu_sgd_booking_dev.jsonl")
    assert report["intents"]["book_appointment"]["recall"] >= 0.90


def test_careline_intents_held_out(stack):
    report = run_eval(stack, ROOT / "tests" / "eval" / "nlu_careline_dev.jsonl")
    assert report["accuracy"] >= 0.85
    for intent, figures in report["intents"].items():
        if figures["support"]:
            assert figures["recall"] >= 0.65, (intent, figures)


# --- the health-domain guard: what the patient gets (careline/eval_nlu.py applies it) ----------
HEALTH_DEV = ROOT / "tests" / "eval" / "nlu_health_dev.jsonl"


def test_health_messages_are_never_out_of_scope(stack):
    """Symptom reports and health questions (short phrases, caregivers, medicines, long messages)
    reach their intent, with the guard catching what the model sends out of scope."""
    report = run_eval(stack, HEALTH_DEV)
    for intent in ("report_symptom", "ask_health_question"):
        assert report["intents"][intent]["recall"] >= 0.90, (intent, report["intents"][intent], report["raw"])
    assert {"rescued", "wrongly_rescued"} <= set(report["guard"])


def test_the_guard_keeps_clinc_out_of_scope(stack):
    """CLINC's out-of-scope requests (nutrition facts among them) stay out of scope with the guard on."""
    report = run_eval(stack, SHARED_EVAL / "nlu_clinc_dev.jsonl")
    assert report["intents"]["out_of_scope"]["recall"] >= 0.85, (report["intents"]["out_of_scope"], report["guard"])
    assert report["guard"]["wrongly_rescued"] <= 0.05 * report["intents"]["out_of_scope"]["support"]
