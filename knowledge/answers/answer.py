"""Grounded extractive answers: the best passage, sized for the channel, ending with its citation.
Below the calibrated threshold the assistant abstains (says so and offers a person)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from knowledge.answers.question import NAMED, find_question
from knowledge.answers.retrieval import Hit
from knowledge.messages import msg
from knowledge.vocabulary import medicine_names, words

WEB_SHORT_LIMIT = 450
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"(])")


@dataclass
class Decision:
    answer: bool
    cited: list[Hit] = field(default_factory=list)
    reason: str = ""


# What a pharmacist answers about a medicine: its dose, side effects, interactions, whether it is
# safe to take (and with what), what it is for. MedQuAD has topics on classes of medicine
# ("Statins", "Pain Relievers") but no monograph on any one drug.
_PHARMACIST_KIND = re.compile(
    r"\b(?:doses?|dosages?|dosing|mg|mcg|milligrams?|ml|pills?|tablets?|capsules?|how\s+(?:much|many|often|long)|"
    r"side\s+effects?|adverse|reactions?|interact\w*|mix\w*|together|combin\w*|alcohol|safe\w*|dangerous|"
    r"(?:can|could|should|may|do|does)\s+(?:i|you|he|she|we|they|my\s+\w+)\s+(?:take|give|use|stop|start|switch|"
    r"double|skip|drink)|(?:stop|start|quit|keep|still)\s+taking|missed|allerg\w*|withdrawal|generic|brand|"
    r"instead\s+of|vs|versus|replace|substitute|used\s+for|while\s+(?:pregnant|breastfeeding|"
    r"nursing))\b",
    re.I,
)


def medicine_asked_about(message: str, top: Hit | None = None) -> list[str]:
    """The medicines a message asks about, as named (`knowledge.vocabulary`): named in what asks
    (knowledge/answers/question.py: the subject and the sentences that ask) and asked about as a
    pharmacist would be (dose, side effects, interactions, safety, use), or with no condition named
    that the best passage is about (the retriever's name feature)."""
    text = find_question(message).text
    names = medicine_names(text)
    if not names or _PHARMACIST_KIND.search(text):
        return names
    # The best passage is on a topic the question names, and not on any of the medicines: a
    # condition ("my mom takes lisinopril. what causes gout?").
    on_a_named_topic = top is not None and top.features.get("name", 0.0) >= NAMED
    if on_a_named_topic and not any(about_medicine(top, [name]) for name in names):
        return []
    return names


def _words(text: str) -> set[str]:
    return set(words(text))


def about_medicine(hit: Hit, medicines: list[str]) -> bool:
    """Whether a passage is about the medicines: each named by its topic, synonyms or question, not
    merely mentioned in its text (a passage on one of two medicines says nothing on taking both)."""
    m = hit.metadata
    topic = _words(" ".join(str(m.get(k) or "") for k in ("focus", "synonyms", "title", "question")))
    return all(_words(name) <= topic for name in medicines)


def decide(hits: list[Hit], threshold: float, message: str | None = None) -> Decision:
    """Answer from the best passage only when it is probable enough; otherwise abstain. Given the
    message, a question about a medicine is answered only from a passage about that medicine
    (reason "medicine" otherwise: the pharmacist is the one to ask)."""
    top = hits[0] if hits else None
    medicines = medicine_asked_about(message, top) if message else []
    if medicines and not (top and top.score >= threshold and about_medicine(top, medicines)):
        return Decision(False, [], "medicine")
    if top is None:
        return Decision(False, [], "no_passage")
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
    return msg("kb.citation", organisation=org, title=title, url=m.get("url", "")).strip()


@dataclass
class Rendered:
    first: str  # the first message (SMS: the first page)
    rest: list[str]  # what "tell me more" continues with (SMS: the later pages, for the gateway to page)


def sms_pages(parts: list[str], cite: str, page_chars: int | None) -> list[str]:
    """Whole sentences in pages of at most `page_chars` characters, each ending with the citation
    (None: one page; the gateway says how large a page may be, channels/paging.py)."""
    budget = max(60, page_chars - len(cite) - 1) if page_chars else None
    pages: list[str] = []
    remaining = parts
    while remaining or not pages:
        chunk, remaining = take(remaining, budget) if budget else (" ".join(remaining), [])
        pages.append(f"{chunk}\n{cite}")
    return pages


def render(hit: Hit, channel: str, page_chars: int | None = None) -> Rendered:
    """Size the passage for the channel; every message that carries answer text ends with the citation."""
    parts = sentences(hit.text)
    if channel == "sms":
        first, *rest = sms_pages(parts, citation_line(hit, short=True), page_chars)
        return Rendered(first, rest)
    cite = citation_line(hit)
    first, remaining = take(parts, WEB_SHORT_LIMIT)
    rest = [f"{' '.join(remaining)}\n\n{cite}"] if remaining else []
    return Rendered(f"{first}\n\n{cite}", rest)
