"""Deterministic red-flag rules: the safety screen's clinical content, loaded from
knowledge/triage/safety/*.yml (one file per category, every rule with its public source).

`RedFlagRules.screen(text)` says whether a message reports an emergency or a crisis happening
now (→ the emergency message and a person), only asks about one (→ the answer plus "if this is
happening now, call 911"), or neither. Negated ("no chest pain"), past ("had a stroke in
2019"), hypothetical and retold ("read an article about a kid who swallowed a battery") mentions
do not fire, nor do topics framed as homework, a class, fiction or an awareness session; rules marked
`joke_ok: false` stay quiet in a message that marks itself as a joke.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from careline.contracts import ScreenOutcome
from careline.gsm7 import MAX_SEND, to_gsm7
from knowledge.messages import MessageError, default_catalogue, msg
from knowledge.triage.textmatch import (
    RULES_DIR,
    Clause,
    Lexicon,
    as_list,
    framed,
    hypothetical,
    in_history,
    in_negated_list,
    is_information_question,
    joking,
    load_lexicon,
    negated,
    normalise,
    reported,
    sentences,
)

# A rule's kind is the outcome it escalates to.
KINDS = (ScreenOutcome.EMERGENCY.value, ScreenOutcome.CRISIS.value)

# The screen's messages that belong to no category (knowledge/messages/en.yml): an information
# question about an emergency, a screen that could not decide, 988 added to an emergency.
NOTICES = {
    "advise": {"web": "safety.advise.web", "sms": "safety.advise.sms"},
    "fail_closed": {"web": "safety.fail_closed.web", "sms": "safety.fail_closed.sms"},
    "crisis_too": {"web": "safety.crisis_too.web", "sms": "safety.crisis_too.sms"},
}


@dataclass(frozen=True)
class Source:
    organisation: str
    title: str
    url: str

    def cite(self) -> str:
        return f"{self.organisation}: {self.title} ({self.url})"


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    kind: str  # emergency | crisis
    reason: str  # plain language, shown to staff and in triage reasons
    source: Source
    patterns: tuple[Any, ...]
    unless: tuple[Any, ...] = ()
    history_ok: bool = False  # fires even in a sentence about the past ("took 30 pills an hour ago")
    question_ok: bool = False  # fires even inside an information question ("what's a lethal dose of ...")
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()
    unless_message: tuple[Any, ...] = ()  # like `unless`, but anywhere in the message ("..., I'm moving to Ohio")
    joke_ok: bool = True  # False: quiet when the message marks itself as a joke ("she'd kill me lol")
    gate: Any = None  # one RE2 search that no pattern can match without (safe_regex.any_of)


@dataclass(frozen=True)
class Category:
    name: str
    kind: str
    priority: int
    messages: dict[str, str]  # channel (web, sms) → the emergency message
    sources: dict[str, Source]
    file: str
    topics: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Hit:
    rule: Rule
    informational: bool


@dataclass
class Screening:
    """What the screen decided about one message."""

    outcome: ScreenOutcome | None  # never SCREEN_ERROR here
    hits: list[Hit] = field(default_factory=list)
    category: Category | None = None

    @property
    def rules(self) -> list[str]:
        return sorted({h.rule.id for h in self.hits if not h.informational}) or sorted({h.rule.id for h in self.hits})

    @property
    def sources(self) -> list[Source]:
        seen: dict[str, Source] = {}
        for h in self.hits:
            seen.setdefault(h.rule.source.url, h.rule.source)
        return list(seen.values())


class RuleFileError(ValueError):
    pass


class RedFlagRules:
    def __init__(
        self, categories: list[Category], rules: list[Rule], lexicon: Lexicon, notices: dict[str, dict[str, str]]
    ):
        self.categories = {c.name: c for c in categories}
        self.rules = rules
        self.lexicon = lexicon
        self.notices = notices

    @classmethod
    def load(cls, directory: Path = RULES_DIR) -> RedFlagRules:
        lexicon = load_lexicon(directory / "lexicon.yml")
        notices = {kind: {channel: msg(i) for channel, i in ids.items()} for kind, ids in NOTICES.items()}
        for ids_by_channel in NOTICES.values():
            check_sms_goes_out_whole(ids_by_channel["sms"], msg(ids_by_channel["sms"]), "the safety screen")
        categories, rules = [], []
        ids: set[str] = set()
        generic = directory / "generic.yml"  # the generic danger signs, shared with the triage engine
        shared = (yaml.safe_load(generic.read_text()) or {}).get("findings") or {} if generic.exists() else {}
        for path in sorted((directory / "safety").glob("*.yml")):
            category, file_rules = _load_file(path, lexicon, shared)
            categories.append(category)
            for rule in file_rules:
                if rule.id in ids:
                    raise RuleFileError(f"{path.name}: duplicate rule id {rule.id}")
                ids.add(rule.id)
                rules.append(rule)
        return cls(categories, rules, lexicon, notices)

    def scan(self, text: str) -> list[Hit]:
        whole = normalise(text, self.lexicon)
        hits: list[Hit] = []
        joke = joking(whole, self.lexicon)
        # Decided once per message, not per sentence: what silences a rule, and which rules
        # cannot match anywhere in it (a message of many short sentences stays cheap).
        live = [
            rule
            for rule in self.rules
            if not (joke and not rule.joke_ok)
            and (rule.gate is None or rule.gate.search(whole) is not None)
            and not any(u.search(whole) for u in rule.unless_message)
        ]
        for clause in sentences(whole):
            hyp = hypothetical(clause.text, self.lexicon)
            history = in_history(clause.text, self.lexicon)
            info = is_information_question(clause, whole, self.lexicon)
            quiet: dict[tuple[int, int], bool] = {}  # per match span: negated, reported or framed
            for rule in live:
                if _fires(rule, clause, self.lexicon, hyp, history, whole, quiet):
                    hits.append(Hit(rule, informational=info and not rule.question_ok))
        return hits

    def screen(self, text: str) -> Screening:
        hits = self.scan(text)
        real = [h for h in hits if not h.informational]
        if real:
            emergencies = [h for h in real if h.rule.kind == ScreenOutcome.EMERGENCY]
            top = min(emergencies or real, key=lambda h: self.categories[h.rule.category].priority)
            outcome = ScreenOutcome.EMERGENCY if emergencies else ScreenOutcome.CRISIS
            return Screening(outcome, real, self.categories[top.rule.category])
        if hits:
            return Screening(ScreenOutcome.ADVISE, hits, self.categories[hits[0].rule.category])
        topic = self.asked_about(text)
        return Screening(ScreenOutcome.ADVISE, [], topic) if topic else Screening(None)

    def asked_about(self, text: str) -> Category | None:
        """The category an information question is about ("what does 988 do?"), if any."""
        whole = normalise(text, self.lexicon)
        for clause in sentences(whole):
            if not is_information_question(clause, whole, self.lexicon):
                continue
            for category in sorted(self.categories.values(), key=lambda c: c.priority):
                if any(t.search(clause.text) for t in category.topics):
                    return category
        return None

    def message(self, screening: Screening, channel: str) -> str:
        """The emergency, crisis or advisory message for a channel ("web" or "sms")."""
        channel = "sms" if channel == "sms" else "web"
        if screening.outcome == ScreenOutcome.ADVISE:
            return self.notices["advise"][channel]
        if screening.category is None:
            return self.notices["fail_closed"][channel]
        message = screening.category.messages[channel]
        crisis_too = any(h.rule.kind == ScreenOutcome.CRISIS for h in screening.hits)
        if screening.outcome == ScreenOutcome.EMERGENCY and crisis_too:
            message = with_crisis_line(message, self.notices["crisis_too"][channel])
        return message


def _fires(
    rule: Rule,
    clause: Clause,
    lexicon: Lexicon,
    hyp: bool,
    history: bool,
    whole: str = "",
    quiet: dict[tuple[int, int], bool] | None = None,
) -> bool:
    if hyp or (history and not rule.history_ok):
        return False
    if rule.gate is not None and rule.gate.search(clause.text) is None:
        return False
    quiet = {} if quiet is None else quiet
    for pattern in rule.patterns:
        for m in pattern.finditer(clause.text):
            span = m.span()
            if span not in quiet:
                quiet[span] = bool(
                    negated(clause.text, span[0], lexicon)
                    or in_negated_list(clause.text, *span)
                    or reported(clause.text, span[0], lexicon)
                    or (whole and framed(clause.text, span[0], whole, lexicon))
                )
            if quiet[span]:
                continue
            if any(u.search(clause.text) for u in rule.unless):
                return False
            return True
    return False


def _source(raw: Any, path: Path) -> Source:
    try:
        return Source(str(raw["organisation"]), str(raw["title"]), str(raw["url"]))
    except (KeyError, TypeError) as exc:
        raise RuleFileError(f"{path.name}: a source needs organisation, title and url") from exc


def with_crisis_line(message: str, crisis_line: str) -> str:
    """An emergency message with the crisis line added (when a crisis rule fired too), unless the
    message gives 988 already."""
    return message if "988" in message else f"{message} {crisis_line}"


def sms_whole_limit() -> int:
    """The most characters an emergency SMS may have, after GSM-7 conversion, to be sure to go out
    whole in one turn. channels/sms_text.split_for_sms sends up to MAX_SEND characters, counting
    the "Reply MORE" line it ends the parts with when text is left over; with that line's room
    kept, nothing is left over, whereas a text of 300 to 320 characters can be cut at an unlucky
    sentence break (tests/unit/channels/test_sms_text.py shows both)."""
    return MAX_SEND - len("\n" + msg("sms.more_prompt"))


def check_sms_goes_out_whole(message_id: str, text: str, where: str) -> None:
    """Refuse, at load, an emergency SMS text that would be cut behind "Reply MORE" (a
    translation or a clinic's rewording that grew too long)."""
    length, limit = len(to_gsm7(text)), sms_whole_limit()
    if length > limit:
        language = default_catalogue().language
        raise RuleFileError(
            f"{where}: the SMS text {message_id} is {length} characters after GSM-7 conversion "
            f"(with the crisis line when it is added), more than the {limit} that go out whole without "
            f'"Reply MORE": shorten it in knowledge/messages/{language}.yml'
        )


def _messages(ids: Any, path: Path) -> dict[str, str]:
    """A category's web and sms texts, from the ids its file names (knowledge/messages/<language>.yml).
    The sms text must go out whole, with the crisis line that `RedFlagRules.message` may add."""
    if not isinstance(ids, dict) or not {"web", "sms"} <= set(ids):
        raise RuleFileError(f"{path.name}: message needs the ids of its web and sms texts")
    try:
        texts = {channel: msg(str(i)) for channel, i in ids.items()}
        crisis_line = msg(NOTICES["crisis_too"]["sms"])
    except MessageError as exc:
        raise RuleFileError(f"{path.name}: message: {exc}") from exc
    check_sms_goes_out_whole(str(ids["sms"]), with_crisis_line(texts["sms"], crisis_line), path.name)
    return texts


def _load_file(path: Path, lexicon: Lexicon, shared: dict[str, Any] | None = None) -> tuple[Category, list[Rule]]:
    data = yaml.safe_load(path.read_text())
    name = data.get("category") or path.stem
    kind = data.get("kind")
    if kind not in KINDS:
        raise RuleFileError(f"{path.name}: kind must be one of {KINDS}")
    sources = {key: _source(value, path) for key, value in (data.get("sources") or {}).items()}
    messages = _messages(data.get("message"), path)
    try:
        topics = tuple(lexicon.compile(t) for t in as_list(data.get("topics")))
    except Exception as exc:
        raise RuleFileError(f"{path.name}: topics: {exc}") from exc
    category = Category(
        name,
        kind,
        int(data.get("priority", 50)),
        messages,
        sources,
        path.name,
        topics,
    )
    rules = []
    for raw in data.get("rules") or []:
        rid = raw.get("id")
        if not rid or not str(rid).startswith(name + "."):
            raise RuleFileError(f"{path.name}: rule id {rid!r} must start with {name}.")
        if raw.get("source") not in sources:
            raise RuleFileError(f"{path.name}: rule {rid} needs a source from this file's sources")
        examples = raw.get("examples") or {}
        raw = _with_shared_patterns(raw, shared or {}, f"{path.name}: rule {rid}")
        try:
            patterns = tuple(lexicon.compile(p) for p in as_list(raw.get("patterns")))
            gate = lexicon.compile_any(as_list(raw.get("patterns")))
            unless = tuple(lexicon.compile(p) for p in as_list(raw.get("unless")))
            unless_message = tuple(lexicon.compile(p) for p in as_list(raw.get("unless_message")))
        except Exception as exc:
            raise RuleFileError(f"{path.name}: rule {rid}: {exc}") from exc
        if not patterns:
            raise RuleFileError(f"{path.name}: rule {rid} has no patterns")
        rules.append(
            Rule(
                str(rid),
                name,
                str(raw.get("kind", kind)),
                str(raw.get("reason", "")).strip(),
                sources[raw["source"]],
                patterns,
                unless,
                bool(raw.get("history_ok", False)),
                bool(raw.get("question_ok", False)),
                tuple(as_list(examples.get("positive"))),
                tuple(as_list(examples.get("negative"))),
                unless_message,
                bool(raw.get("joke_ok", True)),
                gate,
            )
        )
    return category, rules


def _with_shared_patterns(raw: dict[str, Any], shared: dict[str, Any], where: str) -> dict[str, Any]:
    """A rule that names a generic.yml finding (`generic_finding`) takes its patterns and exceptions."""
    if not raw.get("generic_finding"):
        return raw
    finding = shared.get(raw["generic_finding"])
    if not finding:
        raise RuleFileError(f"{where}: generic.yml has no finding {raw['generic_finding']}")
    return {**raw, "patterns": finding.get("patterns"), "unless": finding.get("unless")}


@lru_cache(maxsize=2)
def default_rules(directory: str = str(RULES_DIR)) -> RedFlagRules:
    return RedFlagRules.load(Path(directory))
