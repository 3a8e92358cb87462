"""Every pattern runs in bounded time (knowledge/triage/safe_regex.py): the checker finds catastrophic
patterns, loading refuses an ambiguous pattern that would need backtracking, every pattern of
every rule file, protocol, common.yml and the lexicon stays under the bound on adversarial
2,000-character inputs, and RE2 matches exactly where Python's `re` would."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from knowledge.triage import RULES_DIR, textmatch
from knowledge.triage import dialogue as triage_dialogue
from knowledge.triage import engine as triage_engine
from knowledge.triage.engine import TriageEngine
from knowledge.triage.redflags import RedFlagRules, RuleFileError, _load_file
from knowledge.triage.safe_regex import (
    MESSAGE_LIMIT,
    BoundedPattern,
    FallbackPattern,
    UnsafePattern,
    ambiguity,
    compile_bounded,
    worst_case,
)
from knowledge.triage.textmatch import normalise, sentences

BOUND_MS = 20.0
RULES = RedFlagRules.load()
ENGINE = TriageEngine.load(redflags=RULES)
LEXICON = RULES.lexicon

# cardiac.high_potassium as it was: " came back" + " at" and " came back at" read the same text
OLD_POTASSIUM = (
    r"\b(k|k\+|potassium|k level|serum k|potassium level)( is| of| was| at| came back| came back at| =|"
    r" now| up to| went up to)* (6\.[5-9]|[7-9](\.\d)?|1[0-2](\.\d)?)\b(?! (mg|mcg|meq|mmol|ml|tablets?|"
    r"pills?|weeks?|days?|years?|months?|percent))"
)


def _wrapped(body: str) -> re.Pattern:
    return re.compile(r"(?<![a-z0-9])(?:" + body + r")(?![0-9])")


# --- the checker ------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", [r"(a|aa)*b", r"(a+)+b", OLD_POTASSIUM])
def test_the_checker_catches_catastrophic_backtracking(pattern):
    assert ambiguity(_wrapped(pattern).pattern)
    worst = worst_case(_wrapped(pattern), bound_ms=BOUND_MS)
    assert worst.ms > BOUND_MS, worst.describe()


def test_the_checker_passes_what_it_should():
    assert ambiguity(r"( [a-z]+){0,4} (article|story)") is None  # each round starts with a space
    assert ambiguity(r"( is| of| was| at| came back| =)* 7") is None  # one way to read the words
    assert worst_case(compile_bounded(OLD_POTASSIUM.replace("| came back at", "")), bound_ms=BOUND_MS).ms < BOUND_MS


def test_an_ambiguous_pattern_that_needs_backtracking_is_refused():
    with pytest.raises(UnsafePattern):
        compile_bounded(OLD_POTASSIUM)  # has a lookahead, so it would run on re
    assert compile_bounded(r"(a|aa)*b").engine == "re2"  # no lookaround: RE2 runs it in linear time


def test_a_rule_file_with_such_a_pattern_does_not_load(tmp_path):
    path = tmp_path / "cardiac.yml"
    path.write_text(f"""
category: cardiac
kind: emergency
sources: {{s: {{organisation: o, title: t, url: "https://example.org"}}}}
message: {{web: safety.cardiac.web, sms: safety.cardiac.sms}}
rules:
  - id: cardiac.high_potassium
    source: s
    patterns: ['{OLD_POTASSIUM.replace("'", "''")}']
""")
    with pytest.raises(RuleFileError, match="two ways"):
        _load_file(path, LEXICON)


# --- every pattern ----------------------------------------------------------------------------


def _safety_patterns(file: str) -> list[tuple[str, object]]:
    category = Path(file).stem
    out = [(f"topics[{i}]", p) for i, p in enumerate(RULES.categories[category].topics)]
    for rule in (r for r in RULES.rules if r.category == category):
        for kind in ("patterns", "unless", "unless_message"):
            out += [(f"{rule.id}:{kind}[{i}]", p) for i, p in enumerate(getattr(rule, kind))]
        out.append((f"{rule.id}:gate", rule.gate))
    return out


def _protocol_patterns(file: str) -> list[tuple[str, object]]:
    protocol = ENGINE.protocols[Path(file).stem]
    out = [(f"complaint[{i}]", p) for i, p in enumerate(protocol.complaint + protocol.complaint_unless)]
    for finding in protocol.findings.values():
        if not finding.shared:
            out += [(f"{finding.name}[{i}]", p) for i, p in enumerate(finding.patterns + finding.unless)]
    return out


def _generic_patterns() -> list[tuple[str, object]]:
    return [
        (f"{finding.name}[{i}]", p)
        for finding in ENGINE.generic.findings.values()
        for i, p in enumerate(finding.patterns + finding.unless)
    ]


def _common_patterns() -> list[tuple[str, object]]:
    groups = {"who": ENGINE._who, "severity": ENGINE._severity, "conditions": ENGINE._conditions}
    out = [
        (f"{name}.{key}[{i}]", p)
        for name, group in groups.items()
        for key, ps in group.items()
        for i, p in enumerate(ps)
    ]
    for name in ("_pregnant", "_pregnant_unless", "_recent_states"):
        out += [(f"{name}[{i}]", p) for i, p in enumerate(getattr(ENGINE, name))]
    for finding in ENGINE._common_findings.values():
        out += [(f"{finding.name}[{i}]", p) for i, p in enumerate(finding.patterns + finding.unless)]
    return out


def _cue_lists() -> list[tuple[str, object]]:
    return [
        (f.name, getattr(LEXICON, f.name))
        for f in dataclasses.fields(LEXICON)
        if hasattr(getattr(LEXICON, f.name), "finditer")
    ]


def _lexicon_patterns() -> list[tuple[str, object]]:
    return _cue_lists() + [(f"{{{name}}}", LEXICON.compile("{" + name + "}")) for name in LEXICON.terms]


def _module_patterns() -> list[tuple[str, object]]:
    """The code's own regular expressions: cue helpers, normalisation, durations, answers."""
    out = []
    for module in (textmatch, triage_engine, triage_dialogue):
        for name, value in vars(module).items():
            values = value if isinstance(value, (list, tuple)) else [value]
            for i, item in enumerate(values):
                item = item[0] if isinstance(item, tuple) and item else item
                if (
                    isinstance(item, re.Pattern)
                    or isinstance(item, (BoundedPattern, FallbackPattern))
                    or type(item).__module__ == "re2"
                ):
                    out.append((f"{module.__name__}.{name}[{i}]", item))
    return out


GROUPS = (
    [f"safety/{p.name}" for p in sorted((RULES_DIR / "safety").glob("*.yml"))]
    + [f"protocols/{p.name}" for p in sorted((RULES_DIR / "protocols").glob("*.yml"))]
    + ["generic.yml", "common.yml", "lexicon.yml", "code"]
)


def _patterns(group: str) -> list[tuple[str, object]]:
    if group.startswith("safety/"):
        return _safety_patterns(group[7:])
    if group.startswith("protocols/"):
        return _protocol_patterns(group[10:])
    return {
        "generic.yml": _generic_patterns,
        "common.yml": _common_patterns,
        "lexicon.yml": _lexicon_patterns,
        "code": _module_patterns,
    }[group]()


@pytest.mark.parametrize("group", GROUPS)
def test_every_pattern_runs_in_bounded_time(group):
    patterns = _patterns(group)
    assert patterns
    slow = []
    for where, pattern in patterns:
        worst = worst_case(pattern, MESSAGE_LIMIT, bound_ms=BOUND_MS)
        if worst.ms > BOUND_MS:
            slow.append(f"{where}: {worst.describe()}")
    assert not slow, "\n".join(slow)


def test_only_patterns_with_a_lookaround_run_on_re():
    for group in GROUPS[:-1]:
        for where, pattern in _patterns(group):
            if getattr(pattern, "engine", "re2") == "re":
                assert re.search(r"\(\?<?[=!]", pattern.body), (group, where)


# --- RE2 reads the patterns as re does ----------------------------------------------------------


def _example_clauses() -> list[str]:
    texts = [t for rule in RULES.rules for t in rule.positive + rule.negative]
    texts += [
        "Potassium came back at 7.1, K+ 6.8 mmol",
        "took like maybe 30 pills",
        "no , chest pain",
        "hes not sure , no i have chest pain",
        "fell off a ladder , hit my head , now vomiting",
    ]
    return sorted({c.text for t in texts for c in sentences(normalise(t, LEXICON))})


CLAUSES = _example_clauses()


@pytest.mark.parametrize("file", sorted(p.name for p in (RULES_DIR / "safety").glob("*.yml")))
def test_re2_matches_where_re_does(file):
    """Same spans, match by match, on every rule example's sentences; and a rule's gate finds
    something wherever one of its patterns does."""
    for where, pattern in _safety_patterns(file) + _cue_lists():
        if getattr(pattern, "engine", None) != "re2" or where.endswith(":gate"):
            continue
        reference = re.compile(pattern.source)
        for clause in CLAUSES:
            assert [m.span() for m in pattern.finditer(clause)] == [m.span() for m in reference.finditer(clause)], (
                where,
                clause,
            )
    for rule in (r for r in RULES.rules if r.category == Path(file).stem):
        for clause in CLAUSES:
            if any(p.search(clause) for p in rule.patterns):
                assert rule.gate.search(clause), (rule.id, clause)


@pytest.mark.parametrize(
    "body, text",
    [
        (r"^no (i|im)", "no i am fine , no im ok"),  # ^ is the start of the text only
        (r"fine$", "im fine , fine"),
        (r"chest pain", "chest pain and chest pains and xchest pain"),
        (r"\bk\b ?[0-9]", "k 7 and k7 and kk 8"),
        (r"a|ab", "ab ab"),  # the first alternative wins, as in re
        (r"(hives|rash){gap}(wheez)", "hives no rash , wheeze , hives , no wheezing"),
        (r"(fell|hit)[a-z ]{0,30}(head){gap_long}(vomit|confus)", "fell and hit my head , not confused but vomiting"),
        (r"caf", "caf\u00e9 caf"),  # not ASCII: the slower path
    ],
)
def test_bounded_patterns_match_like_re(body, text):
    pattern = LEXICON.compile(body)
    assert pattern.engine == "re2"
    reference = re.compile(pattern.source)
    assert [m.span() for m in pattern.finditer(text)] == [m.span() for m in reference.finditer(text)]
    for pos in range(len(text) + 1):
        got, want = pattern.search(text, pos), reference.search(text, pos)
        assert (got and got.span()) == (want and want.span()), pos
    assert pattern.sub(lambda m: "_" * len(m.group()), text) == reference.sub(lambda m: "_" * len(m.group()), text)


def test_gaps_need_normalised_text():
    with pytest.raises(ValueError):
        LEXICON.compile("(hives|rash){gap}(wheez)").search("Hives and wheezing")


def test_negation_safe_gaps_run_on_re2():
    """head_injury's gap_long patterns backtracked polynomially on re ("fall , fall ... head ,
    head ... no passed out" took 190 ms); with the negation words marked they run on RE2."""
    rule = next(r for r in RULES.rules if r.id == "head_injury.danger_signs")
    assert {p.engine for p in rule.patterns} == {"re2"}
    text = ("fall" + " , fall" * 10 + " , head" * 10 + " no passed out ") * 2
    for pattern in rule.patterns:
        assert worst_case(pattern, bound_ms=BOUND_MS).ms < BOUND_MS
        reference = re.compile(pattern.source)
        assert [m.span() for m in pattern.finditer(text)] == [m.span() for m in reference.finditer(text)]
