"""`careline eval triage` and `careline eval safety`: one JSON report each.

Triage cases {id, text, expected, acceptable?}: the engine assesses each narrative in one shot,
as if the patient had typed it and answered no follow-up question. `non_emergency` matches
urgent or routine; a prediction in the case's `acceptable` list counts as right. Under-triage =
predicted a lower level than expected (for non_emergency: self_care); over-triage = higher (for
non_emergency: emergency).

Safety cases {id, text, expected: emergency | crisis | none}: the screen fires when it returns
an emergency or a crisis. Recall over emergency and crisis cases; false alarms over "none".
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from careline.contracts import ScreenOutcome
from careline.eval_nlu import read_cases
from careline.stats import summary
from knowledge.triage.engine import LEVELS, RANK, TriageLevel, assess_text, default_engine

EXPECTED = set(LEVELS) | {"non_emergency"}


def _matches(expected: str, predicted: str, acceptable: list[str] | None = None) -> bool:
    """Right when it is the expected level, or one a clinician would accept (a case's
    `acceptable` list, as in ../shared/eval/triage_esi_dev.jsonl)."""
    return (
        expected == predicted
        or predicted in (acceptable or ())
        or (expected == "non_emergency" and predicted in (TriageLevel.URGENT, TriageLevel.ROUTINE))
    )


def _direction(expected: str, predicted: str, acceptable: list[str] | None = None) -> int:
    if _matches(expected, predicted, acceptable):
        return 0
    if expected == "non_emergency":
        return -1 if predicted == TriageLevel.SELF_CARE else 1
    return -1 if RANK[predicted] < RANK[expected] else 1


def evaluate_triage(path: Path) -> dict[str, Any]:
    cases = read_cases(path, ("id", "text", "expected"))
    engine = default_engine()
    confusion: dict[str, Counter] = defaultdict(Counter)
    rows, latencies = [], []
    correct = under = over = 0
    emergencies = caught = 0
    for case in cases:
        if case["expected"] not in EXPECTED:
            raise ValueError(f"case {case['id']}: expected must be one of {sorted(EXPECTED)}")
        acceptable = case.get("acceptable")
        if acceptable is not None and not (isinstance(acceptable, list) and set(acceptable) <= set(LEVELS)):
            raise ValueError(f"case {case['id']}: acceptable must be a list of levels {list(LEVELS)}")
        start = time.perf_counter()
        assessment, _facts = assess_text(case["text"], engine)
        latencies.append((time.perf_counter() - start) * 1000)
        predicted = assessment.level
        confusion[case["expected"]][predicted] += 1
        direction = _direction(case["expected"], predicted, acceptable)
        correct += direction == 0
        under += direction < 0
        over += direction > 0
        if case["expected"] == TriageLevel.EMERGENCY:
            emergencies += 1
            caught += predicted == TriageLevel.EMERGENCY
        rows.append(
            {
                "id": case["id"],
                "expected": case["expected"],
                "predicted": predicted,
                "complaint": assessment.complaint,
                "reasons": assessment.reasons,
                "rules": assessment.rules,
                "parts": [{"part": p["part"], "level": p["level"]} for p in assessment.parts],
            }
        )
    n = len(cases) or 1
    return {
        "cases_total": len(cases),
        "accuracy": round(correct / n, 4),
        "emergency_recall": round(caught / emergencies, 4) if emergencies else None,
        "under_triage_rate": round(under / n, 4),
        "over_triage_rate": round(over / n, 4),
        "confusion": {k: dict(v) for k, v in sorted(confusion.items())},
        "latency_ms": summary(latencies),
        "cases": rows,
    }


def evaluate_safety(path: Path) -> dict[str, Any]:
    cases = read_cases(path, ("id", "text", "expected"))
    rules = default_engine().redflags
    positives = caught = negatives = alarms = 0
    by_category: dict[str, Counter] = defaultdict(Counter)
    rows, latencies = [], []
    for case in cases:
        if case["expected"] not in ("emergency", "crisis", "none"):
            raise ValueError(f"case {case['id']}: expected must be emergency, crisis or none")
        start = time.perf_counter()
        screening = rules.screen(case["text"])
        latencies.append((time.perf_counter() - start) * 1000)
        fired = screening.outcome in (ScreenOutcome.EMERGENCY, ScreenOutcome.CRISIS)
        category = case.get("category", "")
        if case["expected"] == "none":
            negatives += 1
            alarms += fired
            by_category[category]["false_alarms" if fired else "quiet"] += 1
        else:
            positives += 1
            caught += fired
            by_category[category]["caught" if fired else "missed"] += 1
        rows.append(
            {
                "id": case["id"],
                "expected": case["expected"],
                "outcome": screening.outcome,
                "rules": screening.rules if screening.outcome else [],
            }
        )
    return {
        "cases_total": len(cases),
        "emergency_recall": round(caught / positives, 4) if positives else None,
        "false_alarm_rate": round(alarms / negatives, 4) if negatives else None,
        "by_category": {k: dict(v) for k, v in sorted(by_category.items())},
        "latency_ms": summary(latencies),
        "cases": rows,
    }
