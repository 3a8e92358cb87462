"""Grounded extractive answers: the best passage, sized for the channel, ending with its citation.
Below the calibrated threshold the assistant abstains (says so and offers a person)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from knowledge.answers.retrieval import Hit

SMS_FIRST_LIMIT = 320
SMS_PART_LIMIT = 320
WEB_SHORT_LIMIT = 450
MORE_SUFFIX = " Reply MORE for more."
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"(])")


@dataclass
class Decision:
    answer: bool
    cited: list[Hit] = field(default_factory=list)
    reason: str = ""


def decide(hits: list[Hit], threshold: float) -> Decision:
    """Answer from the best passage only when it is probable enough; otherwise abstain."""
    if not hits:
        return Decision(False, [], "no_passage")
    top = hits[0]
    if top.score < threshold:
        return Decision(False, [], "low_confidence")
    return Decision(True, [top], "confident")


def clean(text: str) -> str:
    """MedQuAD answers carry layout whitespace and list dashes; make them read as prose."""
    text = re.sub(r"\s+-\s+", "\n- ", text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n\s*\n+", "\n", text)
    return text.strip()


def sentences(text: str) -> list[str]:
    out = []
    for line in clean(text).split("\n"):
        out += [s.strip() for s in _SENTENCE.split(line) if s.strip()]
    return out


def take(parts: list[str], limit: int) -> tuple[str, list[str]]:
    """As many whole sentences as fit in `limit` characters (at least one, cut if it must be)."""
    chosen: list[str] = []
    size = 0
    for i, s in enumerate(parts):
        extra = len(s) + (1 if chosen else 0)
        if size + extra > limit:
            if not chosen:
                cut = s[: max(0, limit - 1)].rsplit(" ", 1)[0] + "…"
                return cut, [s[len(cut) - 1 :].strip()] + parts[i + 1 :]
            return " ".join(chosen), parts[i:]
        chosen.append(s)
        size += extra
    return " ".join(chosen), []


def citation_line(hit: Hit, short: bool = False) -> str:
    m = hit.metadata
    org = m.get("organisation", "")
    if short:
        org = re.sub(r"\s*\(.*?\)", "", org).split(",")[0].strip() or org
    title = m.get("title") or ""
    return f'Source: {org}, "{title}" {m.get("url", "")}'.strip()


@dataclass
class Rendered:
    first: str  # the first message
    rest: list[str]  # what MORE / "tell me more" continues with


def render(hit: Hit, channel: str) -> Rendered:
    """Size the passage for the channel; every message that carries answer text ends with the citation."""
    parts = sentences(hit.text)
    if channel == "sms":
        cite = citation_line(hit, short=True)
        budget = SMS_FIRST_LIMIT - len(cite) - 1 - len(MORE_SUFFIX)
        first, remaining = take(parts, max(60, budget))
        messages = []
        while remaining:
            chunk, remaining = take(remaining, max(60, SMS_PART_LIMIT - len(cite) - 1 - len(MORE_SUFFIX)))
            messages.append(chunk)
        suffix = MORE_SUFFIX if messages else ""
        rest = [f"{m}\n{cite}" + (MORE_SUFFIX if i < len(messages) - 1 else "") for i, m in enumerate(messages)]
        return Rendered(f"{first}{suffix}\n{cite}" if not suffix else f"{first}\n{cite}{suffix}", rest)
    cite = citation_line(hit)
    first, remaining = take(parts, WEB_SHORT_LIMIT)
    rest = [f"{' '.join(remaining)}\n\n{cite}"] if remaining else []
    return Rendered(f"{first}\n\n{cite}", rest)
