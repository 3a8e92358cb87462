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
