"""Optional LLM generation of knowledge answers.

Only when LLM_MODEL ("provider:model") is set, and only after retrieval decided to answer: the
cited passage goes to the model as delimited data with the patient's question, and the model's
answer replaces the extractive text only if every sentence is supported by the passage (and it
gives no number, link or phone number the passage lacks). An error, a timeout or an unsupported
sentence leaves the extractive answer in place. The citation line never changes."""

from __future__ import annotations

import concurrent.futures
import html
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from knowledge.answers.answer import (
    WEB_SHORT_LIMIT,
    Rendered,
    citation_line,
    sentences,
    sms_pages,
)
from knowledge.answers.retrieval import STOPWORDS, Hit

log = logging.getLogger(__name__)

PROMPTS = Path(__file__).with_name("prompts")
PASSAGE_CHARS = 4000  # per passage given to the model (chunks are at most 2,000)
QUESTION_CHARS = 1000
SUPPORT_THRESHOLD = 0.75  # share of a sentence's content words that one passage window must contain
DONT_KNOW = "i don't know"


# --- prompt -----------------------------------------------------------------------------------


def load_prompt(name: str) -> Template:
    return Template((PROMPTS / name).read_text(encoding="utf-8"))


_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ROLE_MARKER = re.compile(r"(?im)^(\s*)(system|assistant|user|developer|human|tool)\s*:")
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.\n]{0,40}\b(?:instructions?|rules?|prompts?|above|previous)\b"
    r"|\byou are now\b|\bnew instructions?\b|\bsystem prompt\b",
    re.I,
)


def as_data(text: str, limit: int) -> str:
    """Passage or question text made inert inside the prompt: no tag can be opened or closed
    (`<`, `>`, `&` escaped), no role marker starts a line, invisible characters are dropped, and
    instruction-like phrases are visibly marked as quoted text."""
    text = _INVISIBLE.sub("", text)[:limit].strip()
    text = html.escape(text, quote=False)
    text = _ROLE_MARKER.sub(lambda m: f"{m.group(1)}({m.group(2)}):", text)
    return _INSTRUCTION.sub(lambda m: f"[quoted text: {m.group(0)}]", text)


def passages_block(passages: list[Hit]) -> str:
    out = []
    for i, hit in enumerate(passages, 1):
        title = html.escape(_INVISIBLE.sub("", str(hit.metadata.get("title") or ""))[:200], quote=True)
        out.append(f'<passage id="{i}" title="{title}">\n{as_data(hit.text, PASSAGE_CHARS)}\n</passage>')
    return "\n".join(out)


def build_messages(question: str, passages: list[Hit], max_chars: int) -> list[tuple[str, str]]:
    """(role, content) pairs: the rules as the system message, the data in the user message."""
    system = load_prompt("answer_system.txt").substitute(max_chars=max_chars)
    user = load_prompt("answer_user.txt").substitute(
        question=as_data(question, QUESTION_CHARS), passages=passages_block(passages), max_chars=max_chars
    )
    return [("system", system), ("user", user)]


# --- grounding check --------------------------------------------------------------------------

NEGATIONS = frozenset(
    """not no never cannot cant without none nor neither nobody nothing isnt arent doesnt dont
wont didnt wasnt werent shouldnt couldnt wouldnt hasnt havent hadnt unable""".split()
)
FILLER = frozenset(
    """also may might some such other more most very usually often many much any all each both
however like just only well yes people person someone help helps need needs way ways called known thing things
lot really would should must able make makes made take takes used use using type kind kinds include includes
including etc sometimes generally common commonly""".split()
)
# scikit-learn's English stop words, less those that carry meaning here (amounts, order, severity).
FUNCTION_WORDS = ENGLISH_STOP_WORDS - frozenset(
    """serious fire detail system thick thin empty full fill move found
less least few always every everyone alone against again once cry bill call keep enough except together same
behind below above top bottom front back side part amount last first next due third one two three four five six
eight nine ten eleven twelve fifteen twenty forty fifty sixty hundred""".split()
)
_TOKEN = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_URL = re.compile(
    r"(?i)\bhttps?://[^\s<>\"')]+|\bwww\.[^\s<>\"')]+"
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:gov|com|org|net|edu|info|io|us|uk)\b(?:/[^\s<>\"')]*)?"
)
_PHONE = re.compile(
    r"(?<![\w-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]?\d{4}(?![\w-])"
    r"|\b1-8\d\d-[A-Za-z0-9-]{7,}"
)
_MARKUP = re.compile(r"</?\s*(?:passage|passages|question|system|user|assistant)\b|```", re.I)


@dataclass(frozen=True)
class Grounding:
    ok: bool
    reason: str  # "grounded" or why the output was rejected
    sentence: int | None = None  # index of the first unsupported sentence


def _words(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("’", "'").replace("'", ""))


def _stem(word: str) -> str:
    for suffix, repl in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""), ("ly", "")):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)] + repl
    return word


def content_words(text: str) -> set[str]:
    return {_stem(w) for w in _words(text) if _is_content(w)}


def _matches(word: str, pool: set[str]) -> bool:
    if word in pool:
        return True
    # "pain"/"painful", "inherit"/"inheritance": one word starting with the other (4+ letters).
    return len(word) >= 4 and any(len(p) >= 4 and (p.startswith(word) or word.startswith(p)) for p in pool)


def _is_content(word: str) -> bool:
    return not (
        word in STOPWORDS or word in FUNCTION_WORDS or word in FILLER or word in NEGATIONS or _NUMBER.fullmatch(word)
    )


def polarity(text: str, reach: int = 4) -> tuple[set[str], set[str]]:
    """(words said plainly, words negated): a negated word is the first content word within
    `reach` words after "not", "no", "never", "can't"..."""
    plain: set[str] = set()
    negated_: set[str] = set()
    words = _words(text)
    pending = 0  # words left in which a negation still applies
    for w in words:
        if w in NEGATIONS:
            pending = reach
            continue
        if _is_content(w):
            (negated_ if pending else plain).add(_stem(w))
            pending = 0
        elif pending:
            pending -= 1
    return plain, negated_


def _support(passages: list[str]) -> tuple[list[list[set[str]]], set[str], set[str]]:
    """Content words of each passage sentence, and the passages' plain and negated words."""
    per_sentence, plain, negated_ = [], set(), set()
    for passage in passages:
        parts = sentences(passage)
        per_sentence.append([content_words(p) for p in parts])
        for part in parts:  # a negation ends with its sentence
            p_plain, p_neg = polarity(part)
            plain |= p_plain
            negated_ |= p_neg
    return per_sentence, plain, negated_


def sentence_support(
    sentence: str,
    support: tuple[list[list[set[str]]], set[str], set[str]],
    threshold: float = SUPPORT_THRESHOLD,
    window: int = 3,
) -> bool:
    """Supported: 1..3 consecutive sentences of one passage hold most of the sentence's content
    words (a generated sentence may merge two); what it negates, a passage negates; and it does not
    state plainly what the passages only ever negate ("is contagious" against "is not contagious")."""
    words = content_words(sentence)
    if not words:
        return False
    per_sentence, p_plain, p_neg = support
    plain, neg = polarity(sentence)
    if any(not _matches(w, p_neg) for w in neg):
        return False
    if any(_matches(w, p_neg) and not _matches(w, p_plain) for w in plain):
        return False
    for parts in per_sentence:
        for i in range(len(parts)):
            pool: set[str] = set()
            for part in parts[i : i + window]:
                pool |= part
                if sum(_matches(w, pool) for w in words) / len(words) >= threshold:
                    return True
    return False


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def check_grounding(
    text: str,
    passages: list[str],
    max_chars: int,
    allowed_links: tuple[str, ...] = (),
    threshold: float = SUPPORT_THRESHOLD,
) -> Grounding:
    """Accept a generated answer only if every sentence is supported by a passage."""
    body = (text or "").strip()
    if not body:
        return Grounding(False, "empty")
    if len(body) > max_chars:
        return Grounding(False, "too_long")
    if body.lower().replace("’", "'").rstrip(".! ").startswith(DONT_KNOW):
        return Grounding(False, "declined")
    if _MARKUP.search(body):
        return Grounding(False, "markup")
    source = " ".join(passages)
    squashed_source = _squash(source + " " + " ".join(allowed_links))
    for link in _URL.findall(body):
        link = re.sub(r"^(?i:https?://)?(?i:www\.)?", "", link.rstrip(".,;:!?")).rstrip("/")
        if _squash(link) not in squashed_source:
            return Grounding(False, "unsupported_link")
    for phone in _PHONE.findall(body):
        if _squash(phone) not in _squash(source):
            return Grounding(False, "unsupported_phone")
    if not _numbers(body) <= _numbers(source):
        return Grounding(False, "unsupported_number")
    support = _support(passages)
    for i, sentence in enumerate(sentences(_URL.sub(" ", body))):  # links were checked above
        if not sentence_support(sentence, support, threshold):
            return Grounding(False, "unsupported_sentence", i)
    return Grounding(True, "grounded")


# --- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generated:
    text: str | None  # None: use the extractive answer
    reason: str  # "grounded", or why not (no message text: it is logged)
    latency_ms: int = 0


def text_of(reply: Any) -> str:
    content = getattr(reply, "content", reply)
    if isinstance(content, list):  # content blocks
        content = "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return re.sub(r"\s+", " ", str(content or "")).strip()


def _retryable(exc: Exception) -> bool:
    """Rate limits, server errors and dropped connections; not timeouts (the deadline is spent)."""
    from langchain_core.exceptions import ModelAPIError, ModelConnectionError, ModelRateLimitError, ModelTimeoutError

    if isinstance(exc, ModelTimeoutError):
        return False
    if isinstance(exc, (ModelRateLimitError, ModelAPIError, ModelConnectionError)):
        return True
    status = getattr(exc, "status_code", None)  # providers whose errors LangChain does not classify
    return isinstance(status, int) and (status == 429 or status >= 500)


def _invoke(model, messages: list[tuple[str, str]], retries: int, deadline: float):
    """The call, retried at most `retries` times here rather than in the client, so that no retry
    starts after the deadline (when the patient already has the extractive answer)."""
    from langsmith import tracing_context

    for attempt in range(retries + 1):
        try:
            # Patient questions must not go to a tracing service, whatever the environment says.
            with tracing_context(enabled=False):
                return model.invoke(messages)
        except Exception as exc:  # noqa: BLE001 - re-raised unless one retry is worth it
            if attempt == retries or not _retryable(exc) or deadline - time.monotonic() < 0.5:
                raise
            time.sleep(0.2)


class Generator:
    """A chat model with a wall-clock deadline and the grounding check on its output."""

    def __init__(self, model, timeout_s: float, retries: int = 1):
        self.model = model
        self.timeout_s = timeout_s
        self.retries = min(max(retries, 0), 1)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="careline-llm")

    def generate(self, question: str, passages: list[Hit], max_chars: int) -> Generated:
        start = time.monotonic()
        messages = build_messages(question, passages, max_chars)
        future = self._pool.submit(_invoke, self.model, messages, self.retries, start + self.timeout_s)
        try:
            reply = future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()  # a running call ends by the client's own timeout, with no retry
            return Generated(None, "timeout", _ms(start))
        except Exception as exc:  # noqa: BLE001 - any failure means the extractive answer
            return Generated(None, f"error:{type(exc).__name__}", _ms(start))
        text = text_of(reply)
        links = tuple(str(h.metadata.get("url") or "") for h in passages)
        grounding = check_grounding(text, [h.text for h in passages], max_chars, links)
        return Generated(text if grounding.ok else None, grounding.reason, _ms(start))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def build_chat_model(settings):
    """The configured chat model through LangChain's init_chat_model (provider package needed)."""
    from langchain.chat_models import init_chat_model

    # The client never retries: Generator retries once at most, and only within the deadline.
    kwargs: dict[str, Any] = {
        "timeout": settings.timeout_s,
        "max_retries": 0,
        "temperature": 0,
        "max_tokens": settings.max_tokens,
    }
    if settings.base_url:
        kwargs["base_url"] = settings.base_url
    if settings.api_key:
        kwargs["api_key"] = settings.api_key
    if settings.model.split(":", 1)[0] == "openai":
        kwargs["use_responses_api"] = False  # Chat Completions, which OpenAI-compatible servers speak
    return init_chat_model(settings.model, **kwargs)


def make_generator(settings=None) -> Generator | None:
    """None unless LLM_MODEL is set. A model that cannot be built disables generation (logged)."""
    if settings is None:
        from careline.settings import LLMSettings

        try:
            settings = LLMSettings()
        except ValueError as exc:  # a bad LLM_* value must not cost the extractive answers
            log.warning("llm generation disabled reason=bad_settings:%s", type(exc).__name__)
            return None
    if not settings.model:
        return None
    try:
        model = build_chat_model(settings)
    except Exception as exc:  # noqa: BLE001 - missing provider package, missing key, bad name
        log.warning("llm generation disabled reason=build_failed:%s", type(exc).__name__)
        return None
    return Generator(model, settings.timeout_s, settings.max_retries)


# --- composing the answer ---------------------------------------------------------------------


def body_limit(hit: Hit, channel: str, page_chars: int | None = None) -> int:
    """Characters the generated text may take in the first message (SMS: its first page), citation
    included as usual."""
    if channel == "sms" and page_chars:
        return max(60, page_chars - len(citation_line(hit, short=True)) - 1)
    return WEB_SHORT_LIMIT


def render_generated(
    hit: Hit, channel: str, body: str, extractive: Rendered, page_chars: int | None = None
) -> Rendered:
    """The generated text with exactly the extractive answer's citation line; "more" continues
    with the passage itself when the extractive answer had more to show."""
    parts = sentences(hit.text)
    if channel == "sms":
        cite = citation_line(hit, short=True)
        return Rendered(f"{body}\n{cite}", sms_pages(parts, cite, page_chars) if extractive.rest else [])
    cite = citation_line(hit)
    rest = [f"{' '.join(parts)}\n\n{cite}"] if extractive.rest else []
    return Rendered(f"{body}\n\n{cite}", rest)


def compose(
    generator: Generator | None,
    question: str,
    hit: Hit,
    channel: str,
    extractive: Rendered,
    page_chars: int | None = None,
) -> tuple[Rendered, str]:
    """The generated answer if there is a generator and its output is grounded, else the
    extractive one. Returns (rendered, reason); only the reason is logged, never text."""
    if generator is None:
        return extractive, "disabled"
    try:
        result = generator.generate(question, [hit], body_limit(hit, channel, page_chars))
    except Exception as exc:  # noqa: BLE001 - a broken prompt file or check must not cost the answer
        result = Generated(None, f"error:{type(exc).__name__}")
    if result.text is None:
        level = logging.WARNING if result.reason.startswith(("error", "timeout")) else logging.INFO
        log.log(
            level,
            "kb generation fallback reason=%s citation=%s ms=%d",
            result.reason,
            hit.citation_id,
            result.latency_ms,
        )
        return extractive, result.reason
    log.info("kb generation used citation=%s ms=%d", hit.citation_id, result.latency_ms)
    return render_generated(hit, channel, result.text, extractive, page_chars), "generated"
