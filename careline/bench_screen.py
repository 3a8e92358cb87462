"""`python -m careline.bench_screen`: the safety screen's time on adversarial messages.

The corpus: for every pattern the screen runs (rule patterns, `unless`, `unless_message`, the
rules' gates, category topics, the lexicon's cue lists), the slowest input that
knowledge/safe_regex.worst_case() finds for it at 2,000 characters; plus messages that grow when
normalised ("% % %", "sob sob"), cut into a thousand sentences, or repeat a negated red flag.
Each goes through the whole RedFlagRules.screen(), and through the one-shot triage assessment
(knowledge/triage_engine.assess_text), which also runs the screen. Prints JSON: p50 and max in
ms, the slowest input's origin, and the p50 on the evaluation sets' ordinary messages for
comparison; and the one-shot triage's p50 and p95 on whole messages written elsewhere. Targets:
screen max <= 50 ms, one-shot triage p95 <= 50 ms.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import statistics
import time
from pathlib import Path

from careline.eval_nlu import read_cases
from careline.stats import percentile
from knowledge.triage.engine import TriageEngine, assess_text
from knowledge.triage.redflags import RedFlagRules
from knowledge.triage.safe_regex import MESSAGE_LIMIT, worst_case

TARGET_MS = 50.0
EVAL_DIR = Path(__file__).resolve().parent.parent / "tests" / "eval"
TRIAGE_SETS = [
    EVAL_DIR.parent.parent.parent / "shared" / "eval" / "triage_esi_dev.jsonl",
    EVAL_DIR / "triage_external_dev.jsonl",
    EVAL_DIR / "triage_dev.jsonl",
]

# Messages that attack the screen as a whole rather than one pattern.
_WHOLE = {
    "many sentences": "a. " * 666,
    "many negated red flags": "no chest pain, " * 133,
    "negation cues only": "no " * 666,
    "grows when normalised (percent)": "% " * 1000,
    "grows when normalised (shorthand)": "sob cp " * 285,
    "jokes and serious": "lol not joking " * 133,
    "potassium came back at": "potassium" + " came back at" * 152,
    "took like maybe": "took" + " like maybe" * 180,
    "head injury gaps": ("fall" + " , fall" * 10 + " , head" * 10 + " no passed out . ") * 12,
    "one long word": "a" * MESSAGE_LIMIT,
    "digits": "1 " * 1000,
    "emoji": "\U0001f602 " * 1000,
}


def screened_patterns(rules: RedFlagRules) -> list[tuple[str, object]]:
    """(origin, compiled pattern) for everything the screen runs."""
    out: list[tuple[str, object]] = []
    for rule in rules.rules:
        for kind in ("patterns", "unless", "unless_message"):
            out += [(f"{rule.id}:{kind}[{i}]", p) for i, p in enumerate(getattr(rule, kind))]
        if rule.gate is not None:
            out.append((f"{rule.id}:gate", rule.gate))
    for category in rules.categories.values():
        out += [(f"{category.name}:topics[{i}]", p) for i, p in enumerate(category.topics)]
    for field in dataclasses.fields(rules.lexicon):
        value = getattr(rules.lexicon, field.name)
        if hasattr(value, "finditer"):
            out.append((f"lexicon:{field.name}", value))
    return out


def adversarial_corpus(rules: RedFlagRules) -> list[tuple[str, str]]:
    corpus = [(f"whole message: {name}", text[:MESSAGE_LIMIT]) for name, text in _WHOLE.items()]
    for origin, pattern in screened_patterns(rules):
        worst = worst_case(pattern, MESSAGE_LIMIT, bound_ms=10_000)
        if worst.text:
            corpus.append((f"{origin}: {worst.input}", worst.text[:MESSAGE_LIMIT]))
    return corpus


def _timed(fn, text: str) -> float:
    best = float("inf")
    for _ in range(2):  # the faster of two: a scheduler hiccup is not the screen
        t0 = time.perf_counter()
        fn(text)
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best


def _summary(times: list[tuple[float, str]]) -> dict:
    values = [t for t, _ in times]
    slowest = max(times)
    return {
        "p50_ms": round(statistics.median(values), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "max_ms": round(slowest[0], 2),
        "slowest": slowest[1][:160],
        "n": len(values),
    }


def main() -> None:
    t0 = time.perf_counter()
    rules = RedFlagRules.load()
    engine = TriageEngine.load(redflags=rules)
    normal = [
        case["text"]
        for path in sorted(EVAL_DIR.glob("safety_*.jsonl"))
        for case in read_cases(path, ("id", "text", "expected"))
    ]
    for text in normal:  # warm up: RE2 builds its automata on first use
        rules.screen(text)
    corpus = adversarial_corpus(rules)
    built_s = time.perf_counter() - t0
    screen = [(_timed(rules.screen, text), origin) for origin, text in corpus]
    triage = [(_timed(lambda t: assess_text(t, engine), text), origin) for origin, text in corpus]
    normal_times = [(_timed(rules.screen, text), "normal") for text in normal]
    one_shot = {}  # one-shot triage of whole messages written elsewhere (target: p95 <= 50 ms)
    for path in TRIAGE_SETS:
        if path.exists():
            times = [_timed(lambda t: assess_text(t, engine), c["text"]) for c in read_cases(path, ("id", "text"))]
            one_shot[path.stem] = {
                "p50_ms": round(statistics.median(times), 2),
                "p95_ms": round(percentile(times, 0.95), 2),
                "n": len(times),
            }
    result = {
        "triage_one_shot": one_shot,
        "screen_adversarial": _summary(screen),
        "triage_one_shot_adversarial": _summary(triage),
        "screen_normal": {
            "p50_ms": round(statistics.median(t for t, _ in normal_times), 3),
            "max_ms": round(max(t for t, _ in normal_times), 2),
            "n": len(normal_times),
        },
        "target_max_ms": TARGET_MS,
        "within_target": max(screen)[0] <= TARGET_MS,
        "corpus_build_s": round(built_s, 1),
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
