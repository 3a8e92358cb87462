"""Health questions answered differently (asking for a diagnosis, asking about a dose): data in
boundaries.yml, each boundary with its reason and public sources, its patterns run on RE2 (the
engine knowledge/triage/safe_regex.py uses) in time linear in the message, whatever the pattern."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import re2
import yaml

BOUNDARIES_FILE = Path(__file__).resolve().parent / "boundaries.yml"


class BoundaryFileError(ValueError):
    pass


@dataclass(frozen=True)
class Source:
    organisation: str
    title: str
    url: str


@dataclass(frozen=True)
class Boundary:
    id: str
    reason: str
    sources: tuple[Source, ...]
    patterns: tuple[Any, ...]  # compiled by RE2, case-insensitive
    examples: dict[str, list[str]]

    def matches(self, text: str) -> bool:
        return any(p.search(text) is not None for p in self.patterns)


class Boundaries:
    def __init__(self, boundaries: list[Boundary]):
        self.boundaries = boundaries

    @classmethod
    def load(cls, path: Path = BOUNDARIES_FILE) -> Boundaries:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        boundaries = [_boundary(raw, path.name) for raw in data.get("boundaries") or []]
        ids = [b.id for b in boundaries]
        if len(set(ids)) != len(ids):
            raise BoundaryFileError(f"{path.name}: a boundary id is used twice: {ids}")
        return cls(boundaries)

    def which(self, text: str) -> str | None:
        """The id of the first boundary the message crosses ("diagnosis", "dosing"), or None."""
        for b in self.boundaries:
            if b.matches(text):
                return b.id
        return None


def _boundary(raw: Any, where: str) -> Boundary:
    if not isinstance(raw, dict) or not raw.get("id") or not str(raw.get("reason") or "").strip():
        raise BoundaryFileError(f"{where}: every boundary needs an id and a reason")
    bid = str(raw["id"])
    try:
        sources = tuple(Source(str(s["organisation"]), str(s["title"]), str(s["url"])) for s in raw["sources"])
    except (KeyError, TypeError) as exc:
        raise BoundaryFileError(f"{where}: {bid}: sources need organisation, title and url") from exc
    if not sources or not raw.get("patterns"):
        raise BoundaryFileError(f"{where}: {bid}: needs at least one source and one pattern")
    try:
        patterns = tuple(_compile(str(p)) for p in raw["patterns"])
    except re2.error as exc:  # a lookaround or a typo: the file is refused, not half loaded
        raise BoundaryFileError(f"{where}: {bid}: {exc}") from exc
    examples = raw.get("examples") or {}
    return Boundary(
        bid,
        " ".join(str(raw["reason"]).split()),
        sources,
        patterns,
        {"match": list(examples.get("match") or []), "no_match": list(examples.get("no_match") or [])},
    )


def _compile(pattern: str) -> Any:
    """Case-insensitive, like the patient's text may be. RE2's \\b counts only ASCII letters and
    digits as a word, so a keyword glued to an accented letter ("édose") still matches."""
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False
    return re2.compile(pattern, options)


@cache
def default_boundaries() -> Boundaries:
    """Loaded on first use, never at import."""
    return Boundaries.load()


def boundary(text: str) -> str | None:
    """Which boundary a question crosses: "diagnosis", "dosing" or None."""
    return default_boundaries().which(text)
