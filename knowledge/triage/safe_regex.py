"""Rule patterns in bounded time: RE2 where it can, Python `re` only where it must and is safe.

The clinical rules (knowledge/triage/*.yml) are regular expressions over normalised text. A
backtracking engine such as Python's `re` can take exponential time on an ambiguous pattern:
"potassium" + " came back at" × 22 took 0.85 s, and every added repetition doubled it.

`compile_bounded()` runs a pattern on RE2 (google-re2), whose automata match in time linear in
the text whatever the pattern. RE2 has no lookarounds, so the standard wrapper's
(`(?<![a-z0-9])` before, `(?![0-9])` after) become consumed context: the pattern searched is
`[^a-z0-9](BODY)(?:[^0-9]|$)` over "\\n" + text in multi-line mode (so that `^` in a body still
means the start of the text), and a match is group 1's span.

The negation-safe gaps (lexicon.yml `gap`: "(?:(?!\\b(?:no|not|...)\\b)[^.;!?]){0,60}", a run of
characters in which no negation word starts) run on RE2 too: normalised text is lower case, so
the first letter of every negation word is upper-cased in a copy of the text, the gap's class
leaves out upper case, and the rest of the pattern ignores case. This was where the backtracking
was worst: a gap can end at any of its 60 positions, after any comma.

A body that needs any other lookaround (an exception window such as "(?![a-z ,]{0,30}(but|...))")
falls back to `re`, but only after `ambiguity()` finds no nested or ambiguous repetition in it;
`worst_case()` measures any pattern on adversarial inputs built from its own pieces, and
tests/unit/knowledge/triage/test_safe_regex.py runs it on every pattern.

Texts are single lines of lower-case text (normalise() guarantees both); a newline is read as
a space.
"""

from __future__ import annotations

import math
import re
import re._constants as sre
import re._parser as sre_parse
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import re2

MESSAGE_LIMIT = 2000  # characters; the gateway refuses longer messages
WORD = "a-z0-9"

# Python and RE2 read these differently ("{,3}" is a repetition in `re`, literal text in RE2),
# so a rule may not use them.
_DIVERGENT = re.compile(r"\{,|\[\[:|\\[pPCzZ]|\(\?[a-zA-Z]*U")
_LOOKAROUND = ("(?=", "(?!", "(?<=", "(?<!")


class UnsafePattern(ValueError):
    """A pattern that would need backtracking and has nested or ambiguous repetition."""


class Match:
    """What callers use of a match: start, end, span and the matched text (group 0)."""

    __slots__ = ("string", "_start", "_end")

    def __init__(self, string: str, start: int, end: int):
        self.string, self._start, self._end = string, start, end

    def start(self, group: int = 0) -> int:
        self._only_whole(group)
        return self._start

    def end(self, group: int = 0) -> int:
        self._only_whole(group)
        return self._end

    def span(self, group: int = 0) -> tuple[int, int]:
        self._only_whole(group)
        return self._start, self._end

    def group(self, group: int = 0) -> str:
        self._only_whole(group)
        return self.string[self._start : self._end]

    __getitem__ = group

    @staticmethod
    def _only_whole(group: int) -> None:
        if group != 0:
            raise IndexError("rule patterns report the whole match only")

    def __repr__(self) -> str:
        return f"<Match span={self.span()} {self.group()!r}>"


_PADDED: dict[int, tuple[str, str, bytes | None]] = {}


def _padded(subject: str) -> tuple[str, bytes | None]:
    """ "\\n" + the text, and its bytes when it is ASCII; kept for the next patterns, which
    search the same sentence."""
    entry = _PADDED.get(id(subject))
    if entry is not None and entry[0] is subject:
        return entry[1], entry[2]
    padded = "\n" + (subject.replace("\n", " ") if "\n" in subject else subject)
    data = padded.encode("ascii") if padded.isascii() else None
    if len(_PADDED) >= 8:
        _PADDED.clear()
    _PADDED[id(subject)] = (subject, padded, data)
    return padded, data


class _CueMarks:
    """Upper-cases the first letter of every place a cue ("\\b(?:no|not|...)\\b") starts, so that
    a class without upper case stops a gap there. One copy per text, kept for the next pattern
    with the same cue (_marks_for)."""

    __slots__ = ("_finder", "_last")

    def __init__(self, cue: str):
        self._finder = re2.compile(rf"\b(?:{cue})\b", _re2_options(2 << 20))
        self._last: tuple[str, str] = ("", "")

    def mark(self, text: str) -> str:
        last = self._last
        if last[0] is text or last[0] == text:
            return last[1]
        if text.lower() != text:
            raise ValueError("rule patterns with gaps match normalised (lower-case) text")
        chars, pos = None, 0
        while True:  # every start, also inside another cue ("and it works" / "it works")
            m = self._finder.search(text, pos)
            if m is None:
                break
            start = m.start()
            chars = chars or list(text)
            chars[start] = chars[start].upper()
            pos = start + 1
        marked = "".join(chars) if chars else text
        self._last = (text, marked)
        return marked


_MARKS: dict[str, _CueMarks] = {}


def _marks_for(cue: str) -> _CueMarks:
    marks = _MARKS.get(cue)
    if marks is None:
        marks = _MARKS.setdefault(cue, _CueMarks(cue))
    return marks


class BoundedPattern:
    """A compiled rule pattern with the subset of `re.Pattern` the callers use."""

    engine = "re2"
    __slots__ = ("source", "body", "_regexp", "_match", "_marks")

    def __init__(self, source: str, regexp: Any, marks: _CueMarks | None = None, body: str = ""):
        self.source = source  # the same pattern as Python `re` would read it
        self.body = body  # without the wrapper, for any_of()
        self._regexp = regexp
        self._marks = marks
        raw = getattr(regexp, "_regexp", None)
        self._match = raw.Match if raw is not None and hasattr(raw, "Match") else None

    @property
    def pattern(self) -> str:
        return self.source

    def search(self, text: str, pos: int = 0) -> Match | None:
        if pos > len(text):
            return None
        pos = max(pos, 0)
        padded, data = _padded(self._marks.mark(text) if self._marks is not None else text)
        # The search starts at the character before `pos` (padded index pos): the lead class
        # consumes it, so the body can start at `pos` itself.
        if self._match is not None and data is not None:
            spans = self._match(_UNANCHORED, data, pos, len(data))
            start, end = spans[1]
            if start < 0:
                return None
        else:
            m = self._regexp.search(padded, pos)
            if m is None:
                return None
            start, end = m.span(1)
        return Match(text, start - 1, end - 1)

    def finditer(self, text: str, pos: int = 0) -> Iterator[Match]:
        """Python's non-overlapping order: each search starts where the last match ended."""
        while pos <= len(text):
            m = self.search(text, pos)
            if m is None:
                return
            yield m
            pos = m._end if m._end > m._start else m._end + 1

    def sub(self, repl: str | Callable[[Any], str], text: str, count: int = 0) -> str:
        return _sub(self, repl, text, count)

    def __repr__(self) -> str:
        return f"BoundedPattern({self.source!r})"


class FallbackPattern:
    """A pattern that needs a lookaround, on Python `re`. A lookaround-free copy on RE2 (it
    matches wherever the pattern does, and more) finds each place a match can start, in order;
    `re` tries only those places, anchored, so it never scans the text itself."""

    engine = "re"
    __slots__ = ("source", "body", "_compiled", "_prefilter")

    def __init__(self, compiled: re.Pattern, prefilter: BoundedPattern | None, body: str = ""):
        self.source = compiled.pattern
        self.body = body
        self._compiled = compiled
        self._prefilter = prefilter

    @property
    def pattern(self) -> str:
        return self.source

    def search(self, text: str, pos: int = 0) -> re.Match | None:
        if self._prefilter is None:
            return self._compiled.search(text, pos)
        while True:
            hint = self._prefilter.search(text, pos)
            if hint is None:
                return None
            m = self._compiled.match(text, hint._start)
            if m is not None:
                return m
            pos = hint._start + 1

    def finditer(self, text: str, pos: int = 0) -> Iterator[re.Match]:
        while pos <= len(text):
            m = self.search(text, pos)
            if m is None:
                return
            yield m
            pos = m.end() if m.end() > m.start() else m.end() + 1

    def sub(self, repl: str | Callable[[Any], str], text: str, count: int = 0) -> str:
        return _sub(self, repl, text, count)

    def __repr__(self) -> str:
        return f"FallbackPattern({self.source!r})"


def _sub(pattern: BoundedPattern | FallbackPattern, repl: str | Callable[[Any], str], text: str, count: int) -> str:
    if isinstance(repl, str):
        if "\\" in repl:
            raise ValueError("rule patterns substitute plain text or a function's result")
        literal = repl
        repl = lambda m: literal  # noqa: E731
    out, last = [], 0
    for n, m in enumerate(pattern.finditer(text), 1):
        out.append(text[last : m.start()])
        out.append(repl(m))
        last = m.end()
        if count and n >= count:
            break
    out.append(text[last:])
    return "".join(out)


_UNANCHORED = re2._Anchor.UNANCHORED


def _re2_options(max_mem: int) -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = max_mem
    return options


def compile_bounded(body: str, before: str = WORD, after: str = "0-9") -> BoundedPattern | FallbackPattern:
    """`(?<![before])(?:body)(?![after])` in bounded time (`before`/`after` are class contents).

    RE2 when it can compile the body. A body with a lookaround falls back to `re`, provided that
    ambiguity() finds nothing in it (else UnsafePattern)."""
    source = f"(?<![{before}])(?:{body})(?![{after}])"
    if _DIVERGENT.search(body):
        raise re.error(f"uses syntax that RE2 and re read differently: {body!r}")
    regexp = _re2_compile(f"(?m)[^{before}]({_uncaptured(body)})(?:[^{after}]|$)")
    if regexp is not None:
        return BoundedPattern(source, regexp, body=body)
    compiled = re.compile(source)  # raises re.error for a pattern that is simply wrong
    gapped = _marked_gaps(body)
    if gapped is not None:
        cue, marked_body = gapped
        regexp = _re2_compile(f"(?mi)[^{before}]({_uncaptured(marked_body)})(?:[^{after}]|$)")
        if regexp is not None:
            return BoundedPattern(source, regexp, _marks_for(cue), body)
    problem = ambiguity(source)
    if problem:
        raise UnsafePattern(f"{problem} (this pattern needs Python re, which would backtrack): {body!r}")
    loose = _re2_compile(f"(?m)[^{before}]({_uncaptured(_without_lookarounds(body))})(?:[^{after}]|$)")
    prefilter = BoundedPattern(source, loose) if loose is not None else None
    return FallbackPattern(compiled, prefilter, body)


def any_of(bodies: list[str], before: str = WORD, after: str = "0-9") -> BoundedPattern | None:
    """One RE2 search that matches wherever any of the bodies could (their lookarounds, `^` and
    `$` left out): when it finds nothing in a message, none of them can match in the message or
    in any of its sentences, and they need not be tried."""
    if not bodies:
        return None
    union = "|".join(f"(?:{_uncaptured(_without_anchors(_without_lookarounds(b)))})" for b in bodies)
    regexp = _re2_compile(f"(?m)[^{before}]({union})(?:[^{after}]|$)")
    if regexp is None:
        return None
    return BoundedPattern(f"(?<![{before}])(?:{union})(?![{after}])", regexp, body=union)


def _re2_compile(pattern: str) -> Any | None:
    """The RE2 program, or None when the pattern needs a feature RE2 lacks. A large pattern gets
    more memory (RE2 refuses a program over its budget) rather than falling back."""
    # The budget also caps the automaton each pattern builds as it meets new text: with ~2,900
    # patterns, RE2's default 8 MiB let a process grow past 400 MiB on the adversarial corpus
    # (careline.bench_screen); 2 MiB keeps it under 300 MiB at no measurable cost in time.
    max_mem = 2 << 20
    while True:
        try:
            return re2.compile(pattern, _re2_options(max_mem))
        except re2.error as exc:
            if "too large" in str(exc) and max_mem < (256 << 20):
                max_mem *= 4
                continue
            return None


def _scan(pattern: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, kind) of each token: 'escape', 'class', 'open' (with its opener text as
    kind suffix), 'close' or 'char'."""
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            yield i, i + 2, "escape"
            i += 2
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            yield i, j + 1, "class"
            i = j + 1
        elif c == "(":
            if pattern.startswith("(?", i):
                for opener in ("(?<=", "(?<!", "(?=", "(?!", "(?:", "(?P<"):
                    if pattern.startswith(opener, i):
                        if opener == "(?P<":
                            j = pattern.index(">", i) + 1
                            yield i, j, "open(?P<"
                            i = j
                        else:
                            yield i, i + len(opener), "open" + opener
                            i += len(opener)
                        break
                else:  # flags such as (?i) or (?i:...)
                    j = i + 2
                    while j < n and pattern[j].isalpha():
                        j += 1
                    if j < n and pattern[j] == ":":
                        yield i, j + 1, "open(?:"
                        i = j + 1
                    else:
                        yield i, j + 1, "char"
                        i = j + 1
            else:
                yield i, i + 1, "open("
                i += 1
        elif c == ")":
            yield i, i + 1, "close"
            i += 1
        else:
            yield i, i + 1, "char"
            i += 1


def _uncaptured(pattern: str) -> str:
    """Every capturing group made non-capturing: RE2 then reports only the wrapper's group,
    and the callers use the whole match only."""
    out = []
    for start, end, kind in _scan(pattern):
        out.append("(?:" if kind in ("open(", "open(?P<") else pattern[start:end])
    return "".join(out)


def _without_anchors(pattern: str) -> str:
    return "".join(pattern[s:e] for s, e, kind in _scan(pattern) if not (kind == "char" and pattern[s:e] in "^$"))


def _marked_gaps(body: str) -> tuple[str, str] | None:
    """(cue, body) with every tempered gap character "(?:(?!\\bCUE\\b)[^...])" replaced by
    "(?-i:[^...A-Z])", for a body whose only lookarounds are such gaps, all with the same cue,
    and which has no upper case of its own (the rest of it is matched ignoring case)."""
    tokens = list(_scan(body))
    out, cue, i = [], None, 0
    while i < len(tokens):
        start, end, kind = tokens[i]
        gap = _tempered_at(body, tokens, i)
        if gap is not None:
            this_cue, cls, after = gap
            if cue is not None and this_cue != cue:
                return None
            cue = this_cue
            out.append(f"(?-i:{cls})")
            i = after
            continue
        if kind[4:] in _LOOKAROUND:
            return None
        text = body[start:end]
        if kind in ("char", "class") and re.sub(r"\\.", "", text) != re.sub(r"\\.", "", text).lower():
            return None
        out.append(text)
        i += 1
    return (cue, "".join(out)) if cue is not None else None


def _tempered_at(body: str, tokens: list, i: int) -> tuple[str, str, int] | None:
    """(cue, class without upper case, index after) if tokens[i:] open "(?:(?!\\bCUE\\b)[CLASS])"."""
    if i + 2 >= len(tokens) or tokens[i][2] != "open(?:" or tokens[i + 1][2] != "open(?!":
        return None
    if body[tokens[i + 2][0] : tokens[i + 2][1]] != "\\b":
        return None
    depth, j = 0, i + 1
    while j < len(tokens):
        kind = tokens[j][2]
        depth += kind.startswith("open")
        depth -= kind == "close"
        if depth == 0:
            break
        j += 1
    if j + 2 >= len(tokens) or body[tokens[j - 1][0] : tokens[j - 1][1]] != "\\b":
        return None
    if tokens[j + 1][2] != "class" or tokens[j + 2][2] != "close":
        return None
    cue = body[tokens[i + 2][1] : tokens[j - 1][0]]
    if any(k[4:] in _LOOKAROUND for _, _, k in tokens[i + 3 : j - 1]):
        return None
    try:  # the mark is an upper-case first letter: every cue must start with a letter
        if not _edge(sre_parse.parse(cue), last=False) <= frozenset(range(97, 123)):
            return None
    except re.error:
        return None
    cls = body[tokens[j + 1][0] : tokens[j + 1][1]]
    if cls.startswith("[^"):
        cls = cls[:-1] + "A-Z]"
    elif re.search(r"A-Z|\\[wWSD]|[A-Z]", cls):
        return None
    return cue, cls, j + 3


def _without_lookarounds(pattern: str) -> str:
    """The pattern with every lookaround removed: it matches wherever the pattern does, and more."""
    out, depth, skipping = [], 0, None
    for start, end, kind in _scan(pattern):
        if kind.startswith("open"):
            depth += 1
            if skipping is None and kind[4:] in _LOOKAROUND:
                skipping = depth
                continue
        elif kind == "close":
            depth -= 1
            if skipping is not None and depth < skipping:
                skipping = None
                continue
        if skipping is None:
            out.append(pattern[start:end])
    return "".join(out)


# --- static check: nested or ambiguous repetition ----------------------------------------------

_ALPHABET = frozenset(range(128))
_CATEGORY = {
    sre.CATEGORY_DIGIT: frozenset(range(48, 58)),
    sre.CATEGORY_SPACE: frozenset(b" \t\n\r\f\v"),
    sre.CATEGORY_WORD: frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"),
}
_CATEGORY[sre.CATEGORY_NOT_DIGIT] = _ALPHABET - _CATEGORY[sre.CATEGORY_DIGIT]
_CATEGORY[sre.CATEGORY_NOT_SPACE] = _ALPHABET - _CATEGORY[sre.CATEGORY_SPACE]
_CATEGORY[sre.CATEGORY_NOT_WORD] = _ALPHABET - _CATEGORY[sre.CATEGORY_WORD]
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)
_ZERO_WIDTH = (sre.AT, sre.ASSERT, sre.ASSERT_NOT, sre.GROUPREF, sre.GROUPREF_EXISTS)


def _class_chars(items) -> frozenset[int]:
    chars: set[int] = set()
    negate = False
    for op, av in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            chars.add(av)
        elif op is sre.RANGE:
            chars.update(range(av[0], min(av[1], 127) + 1))
        elif op is sre.CATEGORY:
            chars |= _CATEGORY.get(av, _ALPHABET)
    return _ALPHABET - chars if negate else frozenset(chars)


def _node_chars(op, av) -> frozenset[int]:
    """Characters a node can consume, anywhere in it."""
    if op is sre.LITERAL:
        return frozenset([av]) if av < 128 else frozenset()
    if op is sre.NOT_LITERAL:
        return _ALPHABET - {av}
    if op is sre.ANY:
        return _ALPHABET - {10}
    if op is sre.IN:
        return _class_chars(av)
    out: frozenset[int] = frozenset()
    for sub in _children(op, av):
        for o, a in sub:
            out |= _node_chars(o, a)
    return out


def _children(op, av) -> list:
    if op is sre.SUBPATTERN:
        return [av[3]]
    if op is sre.BRANCH:
        return list(av[1])
    if op in _REPEATS:
        return [av[2]]
    if op is sre.ATOMIC_GROUP:
        return [av]
    return []


def _nullable(items) -> bool:
    return all(_node_nullable(op, av) for op, av in items)


def _node_nullable(op, av) -> bool:
    if op in _ZERO_WIDTH:
        return True
    if op is sre.SUBPATTERN:
        return _nullable(av[3])
    if op is sre.ATOMIC_GROUP:
        return _nullable(av)
    if op is sre.BRANCH:
        return any(_nullable(b) for b in av[1])
    if op in _REPEATS:
        return av[0] == 0 or _nullable(av[2])
    return False


def _edge(items, last: bool) -> frozenset[int]:
    """Characters a match of `items` can start (or, with last, end) with."""
    out: frozenset[int] = frozenset()
    for op, av in reversed(list(items)) if last else items:
        if op in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN):
            return out | _node_chars(op, av)
        for sub in _children(op, av):
            out |= _edge(sub, last)
        if not _node_nullable(op, av):
            return out
    return out


def _edge_repeats(items, last: bool) -> list:
    """Repetitions (max > 1) that can be the first (or last) thing to consume in `items`."""
    out = []
    for op, av in reversed(list(items)) if last else items:
        if op in _REPEATS and av[1] > 1:
            out.append(av)
        elif op in _REPEATS or op in (sre.SUBPATTERN, sre.BRANCH, sre.ATOMIC_GROUP):
            for sub in _children(op, av):
                out += _edge_repeats(sub, last)
        if not _node_nullable(op, av):
            break
    return out


def _language(items, cap: int = 256) -> set[str] | None:
    """Every string `items` matches, if that is a small finite set (lookarounds ignored)."""
    words = {""}
    for op, av in items:
        if op is sre.LITERAL:
            options = {chr(av)}
        elif op is sre.IN:
            chars = _class_chars(av)
            if len(chars) > 4:
                return None
            options = {chr(c) for c in chars}
        elif op in _ZERO_WIDTH:
            continue
        elif op is sre.SUBPATTERN:
            options = _language(av[3], cap)
        elif op is sre.BRANCH:
            options = set()
            for branch in av[1]:
                sub = _language(branch, cap)
                if sub is None:
                    return None
                options |= sub
        elif op in _REPEATS and av[1] <= 3:
            sub = _language(av[2], cap)
            if sub is None:
                return None
            options, layer = set(), {""}
            for n in range(av[1] + 1):
                if n >= av[0]:
                    options |= layer
                layer = {a + b for a in layer for b in sub}
                if len(layer) > cap:
                    return None
        else:
            return None
        if options is None:
            return None
        words = {w + o for w in words for o in options}
        if len(words) > cap:
            return None
    return words


def _dangling_pair(code: set[str]) -> tuple[str, str] | None:
    """Sardinas-Patterson: two different ways to cut a string into words of `code`, witnessed
    by a pair of words; None when every concatenation has one reading only."""
    code = {w for w in code if w}
    dangling = {(b[len(a) :], (a, b)) for a in code for b in code if a != b and b.startswith(a)}
    seen: set[str] = set()
    while dangling:
        for suffix, pair in dangling:
            if suffix in code:
                return pair
        seen |= {s for s, _ in dangling}
        nxt = set()
        for suffix, pair in dangling:
            for w in code:
                if w.startswith(suffix) and w != suffix:
                    nxt.add((w[len(suffix) :], pair))
                if suffix.startswith(w) and suffix != w:
                    nxt.add((suffix[len(w) :], pair))
        dangling = {(s, p) for s, p in nxt if s not in seen}
    return None


def ambiguity(source: str) -> str | None:
    """Why a backtracking engine could take exponential time on this pattern, or None.

    Looks at every repetition (max > 1): a body that can match nothing; a repetition inside it
    that can run into the next round ("(a+)+", "(\\w+\\s?)*"); alternatives that can cut the
    same text two ways ("( came back| at| came back at)*", "(a|aa)*"). Polynomial cases (two
    gaps that overlap) are left to worst_case()."""
    return _ambiguity(sre_parse.parse(source))


def _ambiguity(items) -> str | None:
    for op, av in items:
        if op in _REPEATS and av[1] > 1:
            body = av[2]
            if _nullable(body):
                return "a repetition of something that can match nothing"
            first, last = _edge(body, last=False), _edge(body, last=True)
            for inner in _edge_repeats(body, last=True):
                if _node_chars(sre.SUBPATTERN, (None, 0, 0, inner[2])) & first:
                    return "a repetition inside a repetition that can run into the next round"
            for inner in _edge_repeats(body, last=False):
                if _node_chars(sre.SUBPATTERN, (None, 0, 0, inner[2])) & last:
                    return "a repetition inside a repetition that can run into the previous round"
            code = _language(body)
            if code is not None:
                pair = _dangling_pair(code)
                if pair:
                    return f"repeated alternatives that cut the same text two ways ({pair[0]!r}, {pair[1]!r})"
        for sub in _children(op, av):
            problem = _ambiguity(sub)
            if problem:
                return problem
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            problem = _ambiguity(av[1])
            if problem:
                return problem
    return None


# --- dynamic check: the worst time on adversarial inputs ---------------------------------------

_CANDIDATES = "ae so1,.!?x0z9-_\t"


@dataclass(frozen=True)
class Worst:
    ms: float  # the slowest full pass (finditer to the end) over the inputs tried
    input: str  # which input, for the failure message
    length: int
    engine: str
    text: str = field(default="", repr=False)

    def describe(self) -> str:
        return f"{self.ms:.1f} ms on {self.engine} ({self.input}, {self.length} chars)"


def _pick(chars: frozenset[int], n: int = 2) -> list[str]:
    out = [c for c in _CANDIDATES if ord(c) in chars][:n]
    if not out and chars:
        out = [chr(min(chars))]
    return out


class _Samples:
    """Short strings that match pieces of a pattern, built from its own literals; with a hole
    ("\\0") where a chosen repetition goes, to cut the rest into what comes before and after."""

    def __init__(self, cap: int = 6):
        self.cap = cap

    def seq(self, items, hole=None) -> list[str]:
        out = [""]
        for op, av in items:
            options = self.node(op, av, hole)
            if not options:
                return []
            width = min(self.cap, max(len(out), len(options)))
            out = [out[i % len(out)] + options[i % len(options)] for i in range(width)]
        return _unique(out)

    def node(self, op, av, hole=None) -> list[str]:
        if hole is not None and av is hole:
            return ["\0"]
        if op is sre.LITERAL:
            return [chr(av)]
        if op is sre.NOT_LITERAL:
            return _pick(_ALPHABET - {av}, 1)
        if op is sre.ANY:
            return ["a"]
        if op is sre.IN:
            return _pick(_class_chars(av))
        if op in _ZERO_WIDTH:
            return [""]
        if op is sre.SUBPATTERN:
            return self.seq(av[3], hole)
        if op is sre.ATOMIC_GROUP:
            return self.seq(av, hole)
        if op is sre.BRANCH:
            branches = av[1]
            if hole is not None:
                holding = [b for b in branches if _contains(b, hole)]
                if holding:
                    return self.seq(holding[0], hole)
            out = []
            for branch in branches:
                out += self.seq(branch)[:2]
            return _unique(out)[:48]
        if op in _REPEATS:
            lo, hi, body = av
            if hole is not None and _contains(body, hole):
                inner = self.seq(body, hole)
                plain = self.seq(body)
                return [(plain[0] if plain else "") * max(lo - 1, 0) + s for s in inner]
            body_samples = self.seq(body)
            more = [s * (lo + 1) for s in body_samples] if hi > lo else []
            return _unique(more + [s * lo for s in body_samples])
        return [""]


def _contains(items, target) -> bool:
    for op, av in items:
        if av is target:
            return True
        if any(_contains(sub, target) for sub in _children(op, av)):
            return True
        if op in (sre.ASSERT, sre.ASSERT_NOT) and _contains(av[1], target):
            return True
    return False


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _repeats(items) -> list:
    out = []
    for op, av in items:
        if op in _REPEATS and av[1] > 1:
            out.append(av)
        for sub in _children(op, av):
            out += _repeats(sub)
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            out += _repeats(av[1])
    return out


def adversarial_inputs(source: str, limit: int = MESSAGE_LIMIT) -> Iterator[tuple[str, Callable[[int], str], int]]:
    """(label, build, most) triples: build(k) is an input made of k repetitions of a piece of the
    pattern, at most `limit` characters when k == most. For each repetition in the pattern:
    what comes before it, then its body's samples pumped, then nothing, a failing "!" or what
    comes after it; the whole of that repeated (many starts); and the pattern's own samples
    repeated, whole and cut short."""
    tree = sre_parse.parse(source)
    samples = _Samples()
    seen: set[tuple[str, str, str]] = set()

    def family(label: str, head: str, unit: str, tail: str):
        if not unit or (head, unit, tail) in seen:
            return None
        seen.add((head, unit, tail))
        most = max(1, (limit - len(head) - len(tail)) // len(unit))
        return label, (lambda k: head + unit * k + tail), most

    out = []
    for rep in _repeats(tree):
        for around in samples.seq(tree, hole=rep)[:2]:
            if "\0" not in around:
                continue
            before, after = around.split("\0", 1)
            bodies = [s for s in samples.seq(rep[2]) if s]
            # each sample alone, then all of them in a row: "( is| came back| came back at)*"
            # needs " came back" next to " at" or " came back at" to show its two readings
            pumps = bodies[:4] + (["".join(bodies)] if len(bodies) > 1 else [])
            for pump in pumps:
                for tail in ("", "!", after):
                    out.append(family(f"{before!r} + {pump!r}*k + {tail!r}", before, pump, tail))
                out.append(family(f"({before!r} + {pump!r})*k", "", before + pump, "!"))
                out.append(family(f"({before!r} + {pump!r}*3)*k", "", before + pump * 3, ""))
    for whole in samples.seq(tree)[:3]:
        if whole:
            out.append(family(f"({whole!r} + ' ')*k", "", whole + " ", ""))
            out.append(family(f"{whole!r}*k", "", whole, "!"))
            if len(whole) > 1:
                out.append(family(f"({whole[:-1]!r} + ' ')*k", "", whole[:-1] + " ", ""))
    # Soups: the pieces of one alternative, each said r times, without its last piece or with a
    # blocker before it (what a negative lookahead refuses, "no" for a gap): a gap then has
    # many places to end and the match fails only after trying them all.
    blockers = [""] + [s.strip() for a in _asserts(tree) for s in samples.seq(a)[:2] if s.strip()][:3]
    for pieces in _alternatives(tree, samples)[:12]:
        if len(pieces) < 2:
            continue
        for r in (1, 3, 8):
            lead = " ".join(" ".join([piece] * r) for piece in pieces[:-1])
            for blocker in blockers:
                unit = f"{lead} {blocker} {pieces[-1]} " if blocker else lead + " "
                out.append(family(f"({unit!r})*k", "", unit, ""))
    return iter([f for f in out if f is not None])


def _asserts(items) -> list:
    """The contents of every negative lookaround, for blockers."""
    out = []
    for op, av in items:
        if op is sre.ASSERT_NOT:
            out.append(av[1])
        for sub in _children(op, av) + ([av[1]] if op in (sre.ASSERT, sre.ASSERT_NOT) else []):
            out += _asserts(sub)
    return out


def _alternatives(items, samples: _Samples) -> list[list[str]]:
    """Each top-level alternative as a list of sample pieces (runs of literals kept together)."""
    consuming = [(op, av) for op, av in items if op not in _ZERO_WIDTH]
    if len(consuming) == 1 and consuming[0][0] is sre.SUBPATTERN:
        return _alternatives(consuming[0][1][3], samples)
    if len(consuming) == 1 and consuming[0][0] is sre.BRANCH:
        return [p for branch in consuming[0][1][1] for p in _alternatives(branch, samples)]
    pieces: list[str] = []
    literal = ""
    for op, av in consuming:
        if op is sre.LITERAL:
            literal += chr(av)
            continue
        if literal:
            pieces.append(literal.strip() or literal)
            literal = ""
        options = samples.node(op, av)
        if options and options[0].strip():
            pieces.append(options[0].strip())
    if literal:
        pieces.append(literal.strip() or literal)
    return [pieces]


def _time_ms(pattern: Any, text: str) -> float:
    t0 = time.perf_counter()
    for _ in pattern.finditer(text):
        pass
    return (time.perf_counter() - t0) * 1000


def worst_case(pattern: Any, limit: int = MESSAGE_LIMIT, bound_ms: float = 20.0) -> Worst:
    """The slowest time `pattern.finditer` takes to run to the end on adversarial inputs of up
    to `limit` characters (see adversarial_inputs). `pattern` is a compiled rule pattern or an
    `re.Pattern`. A backtracking pattern is measured on growing inputs and given up on as soon
    as one takes over `bound_ms` (the next size could take hours); RE2 at full size only."""
    engine = getattr(pattern, "engine", "re2" if isinstance(pattern, re2._Regexp) else "re")
    worst = Worst(0.0, "", 0, engine)
    for label, build, most in adversarial_inputs(pattern.pattern, limit):
        k, last = (most if engine == "re2" else 1), None
        while True:
            text = build(k)
            ms = _time_ms(pattern, text)
            if ms > bound_ms:  # confirm: a scheduler hiccup is not a slow pattern
                ms = min(ms, _time_ms(pattern, text))
            if ms > worst.ms:
                worst = Worst(ms, label, len(text), engine, text)
            if ms > bound_ms:
                return worst
            if k >= most:
                break
            k, last = min(most, _next_size(k, ms, last, bound_ms)), (k, ms)
    return worst


def _next_size(k: int, ms: float, last: tuple[int, float] | None, bound_ms: float) -> int:
    """Grow the input as fast as the growth seen so far allows without jumping past the
    bound: one repetition at a time while time grows exponentially, doubling while it does not."""
    if last is None:
        return k + 1
    floor = 0.002  # timer noise, in ms
    per_step = (max(ms, floor) / max(last[1], floor)) ** (1 / (k - last[0]))
    if per_step <= 1.0:
        # no growth seen, but an earlier measurement may have been inflated by a busy machine:
        # double only while the time is tiny, then step (a doubling at 10 ms can mean hours)
        return 2 * k if ms < 0.02 else k + max(1, k // 8)
    room = math.log(max(bound_ms / 2 / max(ms, floor), 1.0)) / math.log(per_step)
    return k + max(1, min(int(room), k, 16))
