"""`careline kb ...` and `careline eval rag`: ingestion, curation, search and evaluation."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from careline.stats import summary
from knowledge.answers.vectorstore import make_retriever, open_store, paths

DEFAULT_FOLDERS = None  # all nine MedQuAD folders


def folders_from_env() -> list[str] | None:
    value = os.environ.get("KB_FOLDERS", "").strip()
    return [f.strip() for f in value.split(",") if f.strip()] or None


def run_ingest(root: Path, folders: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    from knowledge.answers.ingest import collect, ingest, save_report

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
    return {
        "collection": col.name,
        "chunks": col.count(),
        "chunks_by_source": dict(sources),
        "last_ingest": json.loads(report.read_text()) if report.exists() else None,
    }


def search(root: Path, query: str, k: int = 5) -> list[dict[str, Any]]:
    retriever = make_retriever(root)
    return [
        {
            "citation_id": h.citation_id,
            "score": round(h.score, 4),
            "title": h.metadata.get("title"),
            "question": h.metadata.get("question"),
            "features": {k: round(v, 3) for k, v in h.features.items()},
            "text": h.text[:300],
        }
        for h in retriever.search(query, k)
    ]


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
    from knowledge.answers.answer import decide

    cases = read_rag_cases(cases_path)
    retriever = retriever or make_retriever(root)
    retriever.search("warm up")
    rows, latencies = [], []
    for case in cases:
        t0 = time.perf_counter()
        hits = retriever.search(case["question"], k=5)
        decision = decide(hits, retriever.calibration.threshold, case["question"])
        latencies.append((time.perf_counter() - t0) * 1000)
        rows.append(
            {
                "id": case["id"],
                "retrieved": [h.citation_id for h in hits],
                "answered": decision.answer,
                "cited": [h.citation_id for h in decision.cited],
                "top_score": round(hits[0].score, 4) if hits else 0.0,
                "answerable": case.get("answerable", True),
                "relevant": case.get("relevant", []),
            }
        )
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]

    def recall(k: int) -> float:
        hit = sum(bool(set(r["retrieved"][:k]) & set(r["relevant"])) for r in answerable)
        return hit / len(answerable) if answerable else 0.0

    latency = summary(latencies)
    answered = [r for r in rows if r["answered"]]
    wrong = [r for r in answered if not (set(r["cited"]) & set(r["relevant"]))]
    wrong_topic = _on_another_topic(answered, retriever)
    return {
        "total": len(rows),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "recall@1": round(recall(1), 4),
        "recall@3": round(recall(3), 4),
        "recall@5": round(recall(5), 4),
        "mrr": round(sum(_reciprocal_rank(r) for r in answerable) / len(answerable), 4) if answerable else 0.0,
        "answered_rate": round(sum(r["answered"] for r in answerable) / len(answerable), 4) if answerable else 0.0,
        "abstention_rate": round(sum(not r["answered"] for r in unanswerable) / len(unanswerable), 4)
        if unanswerable
        else 0.0,
        "wrong_answer_rate": round(len(wrong) / len(answered), 4) if answered else 0.0,
        "wrong_topic_rate": round(len(wrong_topic) / len(answered), 4) if answered else 0.0,
        "latency_ms": {"p50": latency["p50_ms"], "p95": latency["p95_ms"]},
        "threshold": retriever.calibration.threshold,
        "cases": [{k: r[k] for k in ("id", "retrieved", "answered", "cited", "top_score")} for r in rows],
    }


def _reciprocal_rank(row: dict[str, Any]) -> float:
    for i, c in enumerate(row["retrieved"], 1):
        if c in row["relevant"]:
            return 1 / i
    return 0.0


def _on_another_topic(answered: list[dict[str, Any]], retriever) -> list[dict[str, Any]]:
    """Answered from a passage on another topic (or answered at all when nothing answers). A
    passage's topic: its file ("2_GARD_QA/0003910.xml") and its focus ("meniere's disease"), so
    GARD's and GHR's entries on one condition are one topic."""
    focus_of = {
        m["citation_id"]: " ".join(str(m.get("focus", "")).lower().split()) for m in getattr(retriever, "metas", [])
    }

    def topics(citation_ids: list[str]) -> set[str]:
        return {c.split("#", 1)[0] for c in citation_ids} | {focus_of[c] for c in citation_ids if focus_of.get(c)}

    return [r for r in answered if not topics(r["cited"]) & topics(r["relevant"])]


def calibrate(
    root: Path,
    cases_path: Path | list[Path],
    out_path: Path | None = None,
    retriever=None,
    folds: int = 5,
    repeats: int = 3,
    precision: float = 0.96,
    abstention: float = 0.92,
) -> dict[str, Any]:
    """Fit the logistic model over retrieval signals on labelled cases and pick the abstention
    threshold by cross-validation: every case is ranked and decided by a model fitted without it
    (`folds` folds, `repeats` shuffles, pooled), and the threshold is the lowest at which those
    held-out answers are right at least `precision` of the time (0.95 with a margin) and
    unanswerable questions are abstained on at least `abstention` of the time. The weights saved
    are then fitted on every case; the held-out figures are saved with them ("cross_validated").
    Several case files are pooled: short questions and long messages (rag_dev + rag_long_dev)."""
    from knowledge.answers.retrieval import CALIBRATION_FILE

    paths_in = [cases_path] if isinstance(cases_path, Path) else list(cases_path)
    cases = [case for path in paths_in for case in read_rag_cases(path)]
    retriever = retriever or make_retriever(root)
    data = _calibration_data(cases, retriever)
    held_out = _held_out_decisions(data, folds, repeats)
    candidates = sorted({round(score, 4) for _, _, score, _ in held_out})
    groups = _by_file(held_out, paths_in)

    def acceptable(threshold: float) -> bool:
        return all(
            result["precision"] >= precision and result["abstention"] >= abstention
            for result in (_outcome(group, threshold) for group in [held_out, *groups.values()])
        )

    chosen = next((t for t in candidates if acceptable(t)), 1.0)
    final = _fit_calibration(data, range(len(data)))
    result = _outcome(held_out, chosen)
    by_file = {name: _outcome(group, chosen) for name, group in groups.items()} if len(groups) > 1 else {}
    saved = {
        "weights": {k: round(v, 4) for k, v in final.weights.items()},
        "bias": round(final.bias, 4),
        "threshold": chosen,
        "fitted_on": f"{' + '.join(p.name for p in paths_in)}: {len(cases)} cases, "
        f"{sum(len(d[1]) for d in data)} relevant ids",
        "cross_validated": {
            "folds": folds,
            "repeats": repeats,
            **_figures(result),
            **{name: _figures(r) for name, r in by_file.items()},
        },
    }
    (out_path or CALIBRATION_FILE).write_text(json.dumps(saved, indent=2) + "\n")
    return saved


def _calibration_data(cases: list[dict[str, Any]], retriever) -> list[tuple]:
    """(answerable, relevant, wanted, candidates, message) per case. As Retriever.search reads a
    message: the question found in it (a retriever without a name matcher reads short questions
    only, which pass through unchanged)."""
    from knowledge.answers.question import find_question

    questions = [find_question(case["question"], getattr(retriever, "best_names", None)) for case in cases]
    return [
        (
            case.get("answerable", True),
            set(case.get("relevant") or ()),
            set(question.kinds),
            retriever.scored_candidates(question.text),
            case["question"],
        )
        for case, question in zip(cases, questions, strict=True)
    ]


def _by_file(held_out: list, paths: list[Path]) -> dict[str, list]:
    """The held-out decisions of each case file: each must hold on its own (long messages must
    not borrow precision from short questions)."""
    first_case, groups = 0, {}
    for path in paths:
        size = len(read_rag_cases(path))
        groups[path.name] = [h for h in held_out if first_case <= h[0] < first_case + size]
        first_case += size
    return groups


def _figures(outcome: dict[str, float]) -> dict[str, float]:
    return {
        "wrong_answer_rate": round(1 - outcome["precision"], 4),
        "abstention": round(outcome["abstention"], 4),
        "answered_rate": round(outcome["answered_rate"], 4),
    }


def _fit_calibration(data: list, indices):
    """A logistic model over the retrieval features of the cases at `indices` (threshold 0)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from knowledge.answers.retrieval import FEATURES, Calibration

    X = [[h.features[f] for f in FEATURES] for n in indices for h in data[n][3]]
    y = [int(h.citation_id in data[n][1]) for n in indices for h in data[n][3]]
    # Unweighted, so the output is a probability that the passage answers the question.
    model = LogisticRegression(C=1.0, max_iter=3000).fit(np.array(X), np.array(y))
    return Calibration(
        dict(zip(FEATURES, (float(w) for w in model.coef_[0]), strict=False)), float(model.intercept_[0]), 0.0
    )


def _held_out_decisions(data: list, folds: int, repeats: int) -> list[tuple[int, bool, float, bool]]:
    """(case index, answerable, top score, top is relevant) for each case and repeat, each ranked by
    a model fitted without its fold (score 0 when `decide` would not answer whatever the threshold)."""
    import numpy as np

    from knowledge.answers.answer import about_medicine, medicine_asked_about
    from knowledge.answers.retrieval import rank

    held_out = []
    for seed in range(repeats):
        fold_of = np.random.RandomState(seed).permutation(len(data)) % folds
        for f in range(folds):
            model = _fit_calibration(data, [n for n in range(len(data)) if fold_of[n] != f])
            for n in np.flatnonzero(fold_of == f):
                answerable, relevant, wanted, hits, message = data[n]
                ranked = rank(hits, wanted, model)
                top_ok = bool(ranked) and ranked[0].citation_id in relevant
                score = ranked[0].score if ranked else 0.0
                # As `decide` does: a medicine asked about is answered only from a passage on it.
                medicines = medicine_asked_about(message, ranked[0] if ranked else None)
                if medicines and not (ranked and about_medicine(ranked[0], medicines)):
                    score = 0.0
                held_out.append((int(n), answerable, score, top_ok))
    return held_out


def _outcome(held_out: list[tuple[int, bool, float, bool]], threshold: float) -> dict[str, float]:
    answered = [(a, ok) for _, a, score, ok in held_out if score >= threshold]
    n_answerable = sum(a for _, a, _, _ in held_out)
    n_unanswerable = len(held_out) - n_answerable
    return {
        "precision": sum(ok for _, ok in answered) / len(answered) if answered else 1.0,
        "abstention": 1 - sum(not a for a, _ in answered) / n_unanswerable if n_unanswerable else 1.0,
        "answered_rate": sum(a for a, _ in answered) / n_answerable if n_answerable else 0.0,
    }
