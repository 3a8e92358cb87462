"""`careline eval nlu`: classify labelled cases with the trained model and report per-intent figures.

The figures are those of what the patient gets: where the model says out_of_scope or nlu_fallback,
the action server asks the health-domain guard (knowledge/domain.py, actions/fallback.py), and so
does this report. `raw` keeps the model's own accuracy and recall; `guard` counts the predictions
the guard changed to the expected intent (`rescued`) and to another one (`wrongly_rescued`).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from careline.supervisor import Service, Stack, free_port, latest_model


def read_cases(path: Path, fields: tuple[str, ...] = ("id", "text", "intent")) -> list[dict[str, Any]]:
    """JSON Lines evaluation cases, each with the given string fields (shared by every `careline eval`)."""
    cases = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc})") from exc
        if not isinstance(case, dict) or not all(isinstance(case.get(k), str) for k in fields):
            raise ValueError(f"{path}:{n}: a case needs string fields {', '.join(fields)}")
        cases.append(case)
    return cases


def report(cases: list[dict[str, Any]], predictions: list[tuple[str, float]]) -> dict[str, Any]:
    """Accuracy, per-intent precision/recall/F1/support, and the misclassified cases."""
    tp: Counter = Counter()
    fp: Counter = Counter()
    fn: Counter = Counter()
    support: Counter = Counter()
    errors = []
    for case, (predicted, confidence) in zip(cases, predictions, strict=False):
        expected = case["intent"]
        support[expected] += 1
        if predicted == expected:
            tp[expected] += 1
        else:
            fp[predicted] += 1
            fn[expected] += 1
            errors.append(
                {
                    "id": case["id"],
                    "text": case["text"],
                    "expected": expected,
                    "predicted": predicted,
                    "confidence": round(confidence, 4),
                }
            )
    intents = {}
    for intent in sorted(set(support) | set(fp)):
        p = tp[intent] / (tp[intent] + fp[intent]) if tp[intent] + fp[intent] else 0.0
        r = tp[intent] / support[intent] if support[intent] else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        intents[intent] = {
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f1": round(f1, 4),
            "support": support[intent],
        }
    total = len(cases)
    return {
        "accuracy": round(sum(tp.values()) / total, 4) if total else 0.0,
        "cases": total,
        "fallback_rate": round(sum(1 for p, _ in predictions if p == "nlu_fallback") / total, 4) if total else 0.0,
        "intents": intents,
        "errors": errors,
    }


GUARDED = ("out_of_scope", "nlu_fallback")


def apply_guard(
    cases: list[dict[str, Any]], predictions: list[tuple[str, float]]
) -> tuple[list[tuple[str, float]], dict[str, int]]:
    """The predictions as the patient meets them: an out-of-scope or fallback prediction that the
    health-domain guard reads as a symptom report or a health question becomes that intent."""
    from knowledge.domain import health_intent

    guarded: list[tuple[str, float]] = []
    counts = {"rescued": 0, "wrongly_rescued": 0}
    for case, (predicted, confidence) in zip(cases, predictions, strict=True):
        health = health_intent(case["text"]) if predicted in GUARDED else None
        if health:
            counts["rescued" if health == case["intent"] else "wrongly_rescued"] += 1
            predicted = health
        guarded.append((predicted, confidence))
    return guarded, counts


def raw_figures(cases: list[dict[str, Any]], predictions: list[tuple[str, float]]) -> dict[str, Any]:
    """The model alone: accuracy and each intent's recall."""
    figures = report(cases, predictions)
    return {
        "accuracy": figures["accuracy"],
        "intents": {intent: f["recall"] for intent, f in figures["intents"].items() if f["support"]},
    }


async def classify(rasa_url: str, token: str | None, texts: list[str], concurrency: int = 4) -> list[tuple[str, float]]:
    sem = asyncio.Semaphore(concurrency)
    params = {"token": token} if token else None
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(text: str) -> tuple[str, float]:
            async with sem:
                resp = await client.post(f"{rasa_url}/model/parse", json={"text": text}, params=params)
                resp.raise_for_status()
                intent = resp.json().get("intent") or {}
                return intent.get("name") or "none", float(intent.get("confidence") or 0.0)

        return await asyncio.gather(*(one(t) for t in texts))


def _running_rasa() -> tuple[str, str | None] | None:
    url, token = os.environ.get("RASA_URL"), os.environ.get("RASA_TOKEN")
    if not url:
        return None
    try:
        resp = httpx.get(f"{url}/status", params={"token": token} if token else None, timeout=3)
        return (url, token) if resp.status_code == 200 else None
    except httpx.HTTPError:
        return None


def evaluate(root: Path, cases_path: Path, model: Path | None = None) -> dict[str, Any]:
    cases = read_cases(cases_path)
    running = None if model else _running_rasa()
    started: Stack | None = None
    if running:
        url, token = running
    else:
        # NLU only: a Rasa server with the model and no tracker or action server.
        port, token = free_port(), secrets.token_urlsafe(16)
        started = Stack(root, rasa_port=port, redis_url="redis://unused")
        env = started._env()
        started.services["rasa"] = Service(
            "rasa",
            [
                str(root / ".venv-rasa/bin/rasa"),
                "run",
                "--model",
                str(model or latest_model(root / "models")),
                "--enable-api",
                "--auth-token",
                token,
                "--interface",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env,
            ready_url=f"http://127.0.0.1:{port}/status?token={token}",
            timeout=240,
        )
        started.start(["rasa"])
        url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        predictions = asyncio.run(classify(url, token, [c["text"] for c in cases]))
        elapsed = time.perf_counter() - t0
    finally:
        if started:
            started.stop()
    guarded, counts = apply_guard(cases, predictions)
    result = report(cases, guarded)
    result["raw"] = raw_figures(cases, predictions)
    result["guard"] = counts
    result["cases_file"] = str(cases_path)
    result["seconds"] = round(elapsed, 2)
    return result
