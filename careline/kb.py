"""`careline kb ...` and `careline eval rag`: ingestion, curation, search and evaluation."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from careline.stats import summary

DEFAULT_FOLDERS = None  # all nine MedQuAD folders


def paths(root: Path) -> dict[str, Path]:
    return {
        "medquad": Path(os.environ.get("MEDQUAD_DIR") or root.parent / "shared" / "data" / "medquad"),
        "clinic": Path(os.environ.get("CLINIC_DIR") or root / "knowledge" / "clinic"),
        "chroma": Path(os.environ.get("CHROMA_DIR") or root / "var" / "chroma"),
        "report": root / "var" / "kb" / "ingest_report.json",
    }


def open_store(root: Path):
    from knowledge.store import make_chroma_client, make_embeddings, make_vector_store

    return make_vector_store(make_chroma_client(paths(root)["chroma"]), make_embeddings())


def folders_from_env() -> list[str] | None:
    value = os.environ.get("KB_FOLDERS", "").strip()
    return [f.strip() for f in value.split(",") if f.strip()] or None


def run_ingest(root: Path, folders: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    from knowledge.ingest import collect, ingest, save_report

    p = paths(root)
    if not p["medquad"].exists():
        raise FileNotFoundError(f"MedQuAD not found at {p['medquad']} (set MEDQUAD_DIR)")
    chunks, report = collect(p["medquad"], p["clinic"], folders or folders_from_env())
    result = ingest(open_store(root), chunks, report, progress=progress)
    save_report(result, p["report"])
    from dataclasses import asdict

    return asdict(result)


def stats(root: Path) -> dict[str, Any]:
    from collections import Counter

    vs = open_store(root)
    col = vs._collection
    sources: Counter = Counter()
    for offset in range(0, col.count(), 5000):
        for m in col.get(include=["metadatas"], limit=5000, offset=offset)["metadatas"]:
            sources[m.get("source", "?")] += 1
    report = paths(root)["report"]
    return {"collection": col.name, "chunks": col.count(), "chunks_by_source": dict(sources),
            "last_ingest": json.loads(report.read_text()) if report.exists() else None}


def make_retriever(root: Path):
    from knowledge.retrieval import Retriever

    return Retriever(open_store(root))


def search(root: Path, query: str, k: int = 5) -> list[dict[str, Any]]:
    retriever = make_retriever(root)
    return [{"citation_id": h.citation_id, "score": round(h.score, 4), "title": h.metadata.get("title"),
             "question": h.metadata.get("question"), "features": {k: round(v, 3) for k, v in h.features.items()},
             "text": h.text[:300]} for h in retriever.search(query, k)]


def read_rag_cases(path: Path) -> list[dict[str, Any]]:
    cases = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        case = json.loads(line)
        if not isinstance(case.get("id"), str) or not isinstance(case.get("question"), str):
            raise ValueError(f"{path}:{n}: a case needs string fields id and question")
        if case.get("answerable", True) and not case.get("relevant"):
            raise ValueError(f"{path}:{n}: an answerable case needs a non-empty relevant list")
        cases.append(case)
    return cases


def evaluate_rag(root: Path, cases_path: Path, retriever=None) -> dict[str, Any]:
    from knowledge.answer import decide

    cases = read_rag_cases(cases_path)
    retriever = retriever or make_retriever(root)
    retriever.search("warm up")
    rows, latencies = [], []
    for case in cases:
        t0 = time.perf_counter()
        hits = retriever.search(case["question"], k=5)
        decision = decide(hits, retriever.calibration.threshold)
        latencies.append((time.perf_counter() - t0) * 1000)
        rows.append({"id": case["id"], "retrieved": [h.citation_id for h in hits], "answered": decision.answer,
                     "cited": [h.citation_id for h in decision.cited], "top_score": round(hits[0].score, 4) if hits else 0.0,
                     "answerable": case.get("answerable", True), "relevant": case.get("relevant", [])})
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]

    def recall(k: int) -> float:
        return sum(bool(set(r["retrieved"][:k]) & set(r["relevant"])) for r in answerable) / len(answerable) if answerable else 0.0

    def rr(r) -> float:
        for i, c in enumerate(r["retrieved"], 1):
            if c in r["relevant"]:
                return 1 / i
        return 0.0

    latency = summary(latencies)
    answered = [r for r in rows if r["answered"]]
    wrong = [r for r in answered if not (set(r["cited"]) & set(r["relevant"]))]
    return {
        "total": len(rows), "answerable": len(answerable), "unanswerable": len(unanswerable),
        "recall@1": round(recall(1), 4), "recall@3": round(recall(3), 4), "recall@5": round(recall(5), 4),
        "mrr": round(sum(rr(r) for r in answerable) / len(answerable), 4) if answerable else 0.0,
        "answered_rate": round(sum(r["answered"] for r in answerable) / len(answerable), 4) if answerable else 0.0,
        "abstention_rate": round(sum(not r["answered"] for r in unanswerable) / len(unanswerable), 4) if unanswerable else 0.0,
        "wrong_answer_rate": round(len(wrong) / len(answered), 4) if answered else 0.0,
        "latency_ms": {"p50": latency["p50_ms"], "p95": latency["p95_ms"]},
        "threshold": retriever.calibration.threshold,
        "cases": [{k: r[k] for k in ("id", "retrieved", "answered", "cited", "top_score")} for r in rows],
    }


def calibrate(root: Path, cases_path: Path, out_path: Path | None = None, retriever=None) -> dict[str, Any]:
    """Fit the logistic model over retrieval signals on labelled cases and pick the abstention
    threshold: the lowest that keeps abstention ≥ 0.9 on unanswerable questions and wrong answers
    ≤ 0.05 (with a margin), so as many answerable questions as possible are answered."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from knowledge.retrieval import CALIBRATION_FILE, FEATURES

    cases = read_rag_cases(cases_path)
    retriever = retriever or make_retriever(root)
    X, y, per_case = [], [], []
    for case in cases:
        hits = retriever.search(case["question"], k=10)
        relevant = set(case.get("relevant") or ())
        rows = []
        for h in hits:
            X.append([h.features[f] for f in FEATURES])
            y.append(1 if h.citation_id in relevant else 0)
            rows.append((len(X) - 1, h.citation_id in relevant))
        per_case.append((case.get("answerable", True), rows))
    model = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced").fit(np.array(X), np.array(y))
    probs = model.predict_proba(np.array(X))[:, 1]

    def outcome(threshold: float) -> tuple[float, float, float]:
        answered = wrong = abstained = answerable_answered = 0
        n_answerable = sum(1 for a, _ in per_case if a)
        n_unanswerable = len(per_case) - n_answerable
        for answerable, rows in per_case:
            if not rows:
                abstained += not answerable
                continue
            top = max(rows, key=lambda r: probs[r[0]])
            if probs[top[0]] >= threshold:
                answered += 1
                wrong += not top[1]
                answerable_answered += answerable
            else:
                abstained += not answerable
        return (abstained / n_unanswerable if n_unanswerable else 1.0, wrong / answered if answered else 0.0,
                answerable_answered / n_answerable if n_answerable else 0.0)

    grid = [x / 100 for x in range(5, 100)]
    # Safety first: abstaining on what the knowledge base does not cover (with a margin), then as
    # few wrong answers as the ranking allows; if both cannot hold, abstention wins.
    outcomes = {t: outcome(t) for t in grid}
    both = [t for t in grid if outcomes[t][0] >= 0.93 and outcomes[t][1] <= 0.04]
    safe = [t for t in grid if outcomes[t][0] >= 0.92]
    chosen = both[0] if both and outcomes[both[0]][2] >= 0.5 else (safe[0] if safe else 0.99)
    abst, wrong_rate, answered_rate = outcome(chosen)
    data = {"weights": dict(zip(FEATURES, [round(float(w), 4) for w in model.coef_[0]])),
            "bias": round(float(model.intercept_[0]), 4), "threshold": chosen,
            "fitted_on": f"{cases_path.name}: {len(cases)} cases, {int(sum(y))} relevant candidates",
            "fit": {"abstention": round(abst, 4), "wrong_answer_rate": round(wrong_rate, 4),
                    "answered_rate": round(answered_rate, 4)}}
    (out_path or CALIBRATION_FILE).write_text(json.dumps(data, indent=2) + "\n")
    return data
