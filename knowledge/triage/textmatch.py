"""How patients write, made matchable: normalisation, spelling and shorthand, term macros,
negation scope (NegEx-style), past-history and information-question cues.

Clinical rules (knowledge/triage/*.yml) are regular expressions over normalised text with
`{term}` macros from knowledge/triage/lexicon.yml. This module owns the mechanics only; the
patterns run in bounded time (knowledge/triage/safe_regex.py).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from knowledge.triage import RULES_DIR
from knowledge.triage.safe_regex import WORD, any_of, compile_bounded

_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201b": "'",
        "\u2032": "'",
        "`": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
    }
)
_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?|[.,;!?]")
_REPEAT = re.compile(r"([a-z])\1{2,}")
LIST_CUES = {
    "denies",
    "denied",
    "deny",
    "negative for",
    "without",
    "ruled out",
    "no history of",
    "no signs of",
    "no sign of",
}
_MACRO = re.compile(r"\{([a-z_0-9]+)\}")
_SHORT_LIST = re.compile(r"^\s*(?:[a-z]+(?: [a-z]+)? ,\s*)+(?:or|nor|and) $")
# Emoji carry tone that the word tokens lose: laughter marks a joke ("she'd kill me 😂").
_EMOJI = {
    "\U0001f602": " lol ",
    "\U0001f923": " lol ",
    "\U0001f606": " lol ",
    "\U0001f639": " lol ",
    "\U0001f61c": " lol ",
    "\U0001f61d": " lol ",
    "\U0001f480": " lol ",
    "\u2620": " lol ",
}
_EMOJI_RE = re.compile("|".join(map(re.escape, _EMOJI)))
# Rewrites of the raw text before it is cut into tokens. These run on `re`, on any text: each
# reads its input one way only (tests/unit/knowledge/triage/test_safe_regex.py measures them).
_SEX_SHORTHAND = re.compile(r"\b(\d{1,3})\s?([MF])\b")
_PLUS = re.compile(r"(?<![a-z0-9])\+\s?(?=[a-z])")
_AGES = (
    (re.compile(r"(\d)\s*(?:y/o|yo|y\.o\.|yrs? old|years? old|-year-old)\b"), r"\1 year old"),
    (re.compile(r"(\d)\s*(?:mos? old|months? old|-month-old|mo)\b"), r"\1 month old"),
    (re.compile(r"(\d)\s*(?:wks? old|weeks? old|-week-old)\b"), r"\1 week old"),
)
_OUT_OF_10 = re.compile(r"\b(\d+)\s*/\s*10\b")
# "38 °C", "101 degrees f": the spaces before and after the unit are one run each
_DEGREES = re.compile(r"(\d)\s*(?:(?:°|degrees?|deg)\s*)?([fc])\b")
_SENTENCE_END = re.compile(r"(?<=[.;!?])\s+")
_QUESTION_START = re.compile(r"(what|how|when|why|which|is|are|can|could|should|does|do|would|will|whats|hows)\b")


def _alt(items: Iterable[str]) -> Any:
    """A cue list: any of the items as whole words."""
    return compile_bounded("|".join(items), after=WORD)


_NEVER = _alt(["$^"])


@dataclass(frozen=True)
class Lexicon:
    spelling: dict[str, str]  # one token → its canonical form (may be several words)
    terms: dict[str, str]  # macro name → regex alternatives
    negation_cues: Any  # cue lists, compiled by _alt (knowledge/triage/safe_regex.py)
    pseudo_negations: Any
    terminators: Any
    history: Any
    info_question: Any
    present_personal: Any
    hypothetical: Any
    now: Any
    reported: Any = _NEVER  # news, stories, what someone else saw: "read an article about"
    joking: Any = _NEVER  # "lol", "jk", a laughing emoji
    serious: Any = _NEVER  # "not joking", "i mean it": cancels a joke cue
    reassurance: Any = _NEVER  # "hes fine right now": present tense, nothing happening
    framing: Any = _NEVER  # homework, a class, fiction, a show, an awareness session
    personal: Any = _NEVER  # the writer or someone with them: i, my, he, she, ...

    def expand(self, pattern: str, _depth: int = 0) -> str:
        def sub(m: re.Match) -> str:
            name = m.group(1)
            if name not in self.terms:
                raise KeyError(f"unknown term {{{name}}} in pattern {pattern!r}")
            return "(?:" + self.expand(self.terms[name], _depth + 1) + ")"

        if _depth > 5:
            raise ValueError(f"term macros nest too deep in {pattern!r}")
        return _MACRO.sub(sub, pattern)

    def compile(self, pattern: str) -> Any:
        """Anchored at a word start; open at the end so that stems match ("confus" → confused,
        "vomit" → vomiting). Write `\\b` at the end of a pattern that must end a word.
        RE2 runs it in linear time; a pattern that needs a lookaround runs on `re` if
        knowledge/triage/safe_regex.py finds no ambiguous repetition in it (else UnsafePattern)."""
        return compile_bounded(self.expand(pattern))

    def compile_any(self, patterns: list[str]) -> Any | None:
        """A quick test that none of the patterns can match (see safe_regex.any_of)."""
        return any_of([self.expand(p) for p in patterns])


@lru_cache(maxsize=4)
def load_lexicon(path: Path = RULES_DIR / "lexicon.yml") -> Lexicon:
    data = yaml.safe_load(Path(path).read_text())
    spelling: dict[str, str] = {}
    for canonical, variants in (data.get("spelling") or {}).items():
        for variant in variants:
            spelling[str(variant)] = str(canonical)
    terms = {k: "|".join(v) if isinstance(v, list) else str(v) for k, v in (data.get("terms") or {}).items()}
    lex = Lexicon(
        spelling=spelling,
        terms=terms,
        negation_cues=_alt(data["negation_cues"]),
        pseudo_negations=_alt(data["pseudo_negations"]),
        terminators=_alt(data["terminators"]),
        history=_alt(data["history"]),
        info_question=_alt(data["info_question"]),
        present_personal=_alt(data["present_personal"]),
        hypothetical=_alt(data.get("hypothetical") or ["$^"]),
        now=_alt(data["now"]),
        reported=_alt(data.get("reported") or ["$^"]),
        joking=_alt(data.get("joking") or ["$^"]),
        serious=_alt(data.get("serious") or ["$^"]),
        reassurance=_alt(data.get("reassurance") or ["$^"]),
        framing=_alt(data.get("framing") or ["$^"]),
        personal=_alt(data.get("personal") or ["$^"]),
    )
    for name in terms:  # fail at load, not at the first patient message
        lex.compile("{" + name + "}")
    return lex


def normalise(text: str, lexicon: Lexicon) -> str:
    """Lower-case words and sentence punctuation only, apostrophes dropped (can't → cant),
    letters repeated 3+ times squeezed to two, spelling variants and SMS shorthand mapped."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    text = _EMOJI_RE.sub(lambda m: _EMOJI[m.group(0)], text)
    # clinician shorthand "58M", "6 F" (capitals only: "30m" is more often thirty minutes)
    text = _SEX_SHORTHAND.sub(lambda m: f"{m.group(1)} year old {'male' if m.group(2) == 'M' else 'female'}", text)
    text = text.lower()
    # clinical "+SI", "+LOC": the plus sign is otherwise dropped with the punctuation
    text = _PLUS.sub("positive ", text)
    text = text.replace("'", "")
    for pattern, repl in _AGES:
        text = pattern.sub(repl, text)
    text = _OUT_OF_10.sub(r"\1 out of 10", text)
    text = _DEGREES.sub(r"\1 \2", text)
    text = _REPEAT.sub(r"\1\1", text)
    text = text.replace("%", " percent ")
    tokens = []
    for token in _TOKEN.findall(text):
        tokens.append(lexicon.spelling.get(token, token))
    return " ".join(tokens)


@dataclass(frozen=True)
class Clause:
    text: str  # normalised
    question: bool  # the sentence it belongs to is a question


def sentences(normalised: str) -> list[Clause]:
    parts = _SENTENCE_END.split(normalised)
    out = []
    for part in parts:
        part = part.strip()
        if not part:
            continue
        question = part.endswith("?") or bool(_QUESTION_START.match(part))
        out.append(Clause(part, question))
    return out


# The cue helpers below look back (or around) at most this many words from a match: a rule
# can match many times in a long sentence, and reading the whole sentence again for each match
# would make the screen quadratic. Negation and negated lists reach six words, so for them this
# changes nothing; a story or framing cue further away is not seen, and the rule fires.
CUE_REACH = 48


def _reach(sentence: str, start: int) -> int:
    """Where the CUE_REACH words before `start` begin (at a space, or 0)."""
    head = sentence[:start].rsplit(" ", CUE_REACH)
    return len(head[0]) if len(head) > CUE_REACH else 0


def negated(sentence: str, start: int, lexicon: Lexicon, window: int = 6) -> bool:
    """Is the match starting at `start` inside the scope of a negation cue (no, not, denies, ...)
    that comes before it in the same sentence, within `window` words, with no terminator
    (but, however, ", i ...") between? Pseudo-negations ("not sure", "not ok") are not cues."""
    before = sentence[:start]
    reach = _reach(sentence, start)
    masked, last = [before[:reach]], reach
    for m in lexicon.pseudo_negations.finditer(before, reach):
        masked += [before[last : m.start()], "_" * (m.end() - m.start())]
        last = m.end()
    masked = "".join(masked) + before[last:]
    cue = None
    for cue in lexicon.negation_cues.finditer(masked, reach):  # noqa: B007 - keeps the last cue
        pass
    if cue is None:
        return False
    between = before[cue.end() :]
    # searched on the whole sentence so that a terminator may look ahead ("and(?= says)")
    ends = lexicon.terminators.search(sentence, cue.end())
    if ends and ends.start() < start:
        return False
    # A comma ends the scope ("not my anxiety this time, chest is crushing"), except after cues
    # that head a list ("denies fever, chest pain or cough").
    # ... or the comma separates the items of a short negated list ("no lip, tongue, or throat swelling").
    if "," in between and cue.group(0) not in LIST_CUES and not _SHORT_LIST.match(between):
        return False
    return len(between.split()) <= window


def in_history(sentence: str, lexicon: Lexicon) -> bool:
    """About the past, and nothing in it happening now."""
    return bool(lexicon.history.search(sentence)) and not lexicon.now.search(sentence)


def hypothetical(sentence: str, lexicon: Lexicon) -> bool:
    return bool(lexicon.hypothetical.search(sentence))


def reported(sentence: str, start: int, lexicon: Lexicon) -> bool:
    """Is the match at `start` part of a story, the news or someone else's account that the
    sentence retells ("read an article about a kid who swallowed a battery", "my buddy told me
    about an overdose call")? The cue must come first, with no terminator ("but", "now",
    ", my ...") between: "my son swallowed a battery, I read that it's dangerous" still fires."""
    cue = None
    for cue in lexicon.reported.finditer(sentence[:start], _reach(sentence, start)):  # noqa: B007 - keeps the last cue
        pass
    if cue is None:
        return False
    between = sentence[cue.end() : start]
    return not lexicon.terminators.search(between)


# Inside one clause, a framing cue stops reaching a match at a terminator or where the writer
# starts speaking of themselves ("doing my homework and my chest hurts so bad").
_FRAME_BREAK = _alt([r"(?:and|but|so|then|when|because|cause|,)\s+(?:i|im|ive|id|my|me|we|were|our)"])


def framed(sentence: str, start: int, whole: str, lexicon: Lexicon) -> bool:
    """Is the match at `start` a topic the message frames as homework, a class, fiction, a show or
    play, or an awareness session ("Nursing homework: list the red flags for meningitis", "in my
    play a character says 'I want to die'", "is chest pain from anxiety real? asking for my psych
    class", "book me onto the overdose awareness session")? Framed when a cue shares the match's
    clause with nothing between that ends its reach, or when the cue is elsewhere in the message
    and the match's clause says nothing about the writer or anyone with them. A real report in
    the same message ("for my psych class. honestly i keep cutting myself") still fires."""
    if not lexicon.framing.search(whole):
        return False
    reach = _reach(sentence, start)
    for cue in lexicon.framing.finditer(sentence[: _reach_after(sentence, start)], reach):
        lo, hi = (cue.end(), start) if cue.end() <= start else (start, cue.start())
        between = sentence[lo:hi]
        if not lexicon.terminators.search(between) and not _FRAME_BREAK.search(between):
            return True
    if lexicon.framing.search(sentence):
        return False  # the cue is here but something ends its reach: the rest is a report
    return not lexicon.personal.search(sentence)


def _reach_after(sentence: str, start: int) -> int:
    """Where the CUE_REACH words after `start` end."""
    tail = sentence[start:].split(" ", CUE_REACH)
    return len(sentence) - len(tail[-1]) - 1 if len(tail) > CUE_REACH else len(sentence)


def joking(whole: str, lexicon: Lexicon) -> bool:
    """The message marks itself as a joke ("lol", "jk", a laughing emoji) and does not take it
    back ("not joking", "i mean it")."""
    return bool(lexicon.joking.search(whole)) and not lexicon.serious.search(whole)


def is_information_question(clause: Clause, whole: str, lexicon: Lexicon) -> bool:
    """ "What are the signs of a stroke?" asks for information; "what do I do, my dad is slurring"
    reports one. A question is informational when it carries an information cue and the message
    says nothing in the present tense about the writer or someone with them."""
    if not clause.question:
        return False
    if not lexicon.info_question.search(clause.text):
        return False
    # "he's fine right now" is present tense about the person, but reports that nothing is happening
    calm = lexicon.reassurance.sub(lambda m: "_" * len(m.group(0)), whole)
    return not lexicon.present_personal.search(calm)


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


_LIST_NEGATION = _alt(["no", "not", "nor", "never", "without", "denies", "denied", "negative for"])
_LIST_BREAK = _alt(
    [
        "but",
        "however",
        "now",
        "then",
        "though",
        "although",
        "except",
        "which",
        "who",
        "i",
        "im",
        "he",
        "she",
        "they",
        "we",
        "is",
        "are",
        "was",
        "has",
        "have",
        "had",
    ]
)


def in_negated_list(sentence: str, start: int, end: int) -> bool:
    """The clinicians' list "no abdominal pain, bleeding, or fever": every item is negated, though
    a comma usually ends a negation's scope. An item is in the list when it starts with "or", or
    when the list goes on to an "or" item after it; items are short and have no verb or subject
    ("no fever, eating well" is two statements)."""
    before = sentence[:start]
    cue = None
    for cue in _LIST_NEGATION.finditer(before, _reach(sentence, start)):  # noqa: B007 - keeps the last cue
        pass
    if cue is None:
        return False
    between = before[cue.end() :]
    items = between.split(",")
    if len(items) < 2 or len(items) > 6 or any(len(item.split()) > 5 for item in items):
        return False
    if _LIST_BREAK.search(between):
        return False
    if _OR_FIRST.match(items[-1].lstrip()) or _OR_LAST.search(items[-1]):
        return True
    return _list_goes_on(sentence[end:])


_OR = re.compile(r"(?<![a-z0-9])(?:or|nor)(?![a-z0-9])")  # re: split() is used
_OR_FIRST = re.compile(r"(?:or|nor)\b")
_OR_LAST = re.compile(r"\b(?:or|nor)\s*$")
_CLAUSE_END = re.compile(r"[.;!?]")


def _list_goes_on(after: str) -> bool:
    """The clinicians' long list "no fever, wheezing, shortness of breath, facial pain or eye
    pain": the list goes on, item by short item, to an "or" item."""
    after = _CLAUSE_END.split(after, maxsplit=1)[0]
    for i, item in enumerate(after.split(",")[:7]):
        head = _OR.split(item, maxsplit=1)
        if i > 0 and (len(head[0].split()) > 5 or _LIST_BREAK.search(head[0])):
            return False
        if len(head) > 1:
            return True
        if i == 0 and (len(item.split()) > 5 or _LIST_BREAK.search(item)):
            return False
    return False
