"""Apply the reviewed curation rules (knowledge/answers/curation.yml) to MedQuAD pairs, with a report."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from knowledge.answers.medquad import QAPair

DEFAULT_RULES = Path(__file__).with_name("curation.yml")


class CurationRulesError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    id: str
    pattern: re.Pattern
    replace: str


@dataclass
class CurationReport:
    changed: Counter = field(default_factory=Counter)  # rule id → pairs changed
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    excluded: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "changed": dict(self.changed),
            "examples": {k: v[:20] for k, v in self.examples.items()},
            "excluded": self.excluded,
        }


@dataclass(frozen=True)
class Curation:
    text_rules: tuple[Rule, ...]
    url_rules: tuple[Rule, ...]
    exclude: frozenset[str]

    @classmethod
    def load(cls, path: Path = DEFAULT_RULES) -> Curation:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}

        def rules(key: str) -> tuple[Rule, ...]:
            out = []
            for raw in data.get(key) or ():
                missing = {"id", "pattern", "replace", "why", "source"} - set(raw)
                if missing:
                    raise CurationRulesError(f"{path.name}: rule {raw.get('id', '?')} lacks {sorted(missing)}")
                try:
                    out.append(Rule(raw["id"], re.compile(raw["pattern"], re.IGNORECASE), raw["replace"]))
                except re.error as exc:
                    raise CurationRulesError(f"{path.name}: rule {raw['id']}: bad pattern: {exc}") from exc
            return tuple(out)

        exclude = frozenset(e["citation_id"] if isinstance(e, dict) else e for e in data.get("exclude") or ())
        return cls(rules("text_rules"), rules("url_rules"), exclude)

    def apply(self, pairs: Iterable[QAPair], report: CurationReport) -> list[QAPair]:
        out = []
        for pair in pairs:
            if pair.citation_id in self.exclude:
                report.excluded.append(pair.citation_id)
                continue
            answer, url = pair.answer, pair.url
            for rule in self.text_rules:
                answer, n = rule.pattern.subn(rule.replace, answer)
                if n:
                    report.changed[rule.id] += 1
                    report.examples[rule.id].append(pair.citation_id)
            for rule in self.url_rules:
                url, n = rule.pattern.subn(rule.replace, url)
                if n:
                    report.changed[rule.id] += 1
            out.append(replace(pair, answer=answer, url=url) if (answer, url) != (pair.answer, pair.url) else pair)
        return out
