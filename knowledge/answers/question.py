"""The question inside a long message. Patients write several sentences: a subject line, a
greeting, what happened to whom, what the doctor said, the question, thanks and a name. Retrieval
reads what asks (and the condition it is about), not the rest: a long backstory dilutes the
lexical match, pushes the question out of the embedding model's 128-token window and names other
conditions than the one asked about.

`find_question` keeps the subject line, the sentences that ask, the sentence that spells out an
abbreviation they use ("FMF"), and the story's sentences that name a condition: the one the
question names, or any when it names none ("my son has Duchenne ... is there a cure?"). The
retriever's name matcher (MedQuAD focus names and synonyms) says which names what: it is given
as `names`. The kinds of answer asked for (causes, treatment, outlook...) are read from the kept
text by retrieval's `query_qtypes`. Greetings, thanks, closings, signatures and backstory that
names nothing are dropped. Short questions pass through unchanged."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

# A message of at most this many words on one line, with no subject line, is read as it is.
SHORT_WORDS = 30
# A name match this good names a condition (the retriever's name feature, 0..1).
NAMED = 0.8
# At most this many sentences of the story are kept: those naming a condition, nearest the question.
STORY_SENTENCES = 3
# Words that many names share: two names are of one condition when they share another word.
_GENERIC = frozenset(
    "syndrome disease disorder disorders type deficiency cancer infection familial congenital hereditary chronic "
    "acute adult childhood juvenile primary secondary related with without and the due".split()
)

# "Subject: ...", "Re: ...", "SUBJECT: x MESSAGE: y" (the form consumer web forms send).
_SUBJECT = re.compile(r"^\s*(?:subject|re|fwd?|title|topic|regarding|question)\s*:\s*", re.I)
_MESSAGE_MARK = re.compile(r"\s*\b(?:message|body|question|details)\s*:\s*", re.I)
# Words that make a line a sentence rather than a title ("My son has ..." against "My son's murmur").
_VERB = re.compile(
    r"\b(?:is|are|was|were|am|be|been|being|has|have|had|do|does|did|can|could|will|would|should|shall|"
    r"may|might|must|get|gets|got|need|needs|want|wants|know|think|feel|feels|felt|take|takes|took|said|"
    r"told|went|go|goes|keep|keeps|started|help|tell|please|i|im|ive|id|we|he|she|they|it|its)\b",
    re.I,
)
_GREETING = re.compile(
    r"^\s*(?:(?:hi|hello|hey|hiya|greetings|good\s+(?:morning|afternoon|evening|day)|hola)\b"
    r"(?:\s+(?:there|all|everyone|everybody|team|folks|doc|doctor|nurse|sir|madam|ma'am))*[\s,.!:;-]*|"
    r"dear\b[^,.\n]{0,40}[,.:]\s*|to\s+whom\s+it\s+may\s+concern[\s,.:;-]*)+",
    re.I,
)
_THANKS = re.compile(r"\b(?:thanks?|thank\s+(?:you|u)|thx|ty|appreciated?|grateful|god\s+bless|many\s+thanks)\b", re.I)
# A closing is followed by a comma, a full stop or the end of the line ("Regards, Tom"; not
# "Best treatment for ...").
_CLOSING = re.compile(
    r"^\s*(?:(?:best|kind|warm|warmest|with\s+(?:kind\s+)?)?\s*regards|sincerely|yours(?:\s+(?:truly|sincerely))?|"
    r"respectfully|cheers|best(?:\s+wishes)?|take\s+care|love|blessings|god\s+bless|thanks|thank\s+you)"
    r"(?=\s*(?:[,.!-]|$))[\s,.!-]*",
    re.I,
)
_CONTACT = re.compile(r"\S+@\S+\.\w+|\(?\b\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}\b")
# Sentences that ask without a question mark, or whose question mark patients leave out.
_ASKS = re.compile(
    r"\b(?:(?:i|we)\s+(?:would\s+|'d\s+|d\s+)?(?:want|wanted|like|need|wish|hope|am\s+hoping|was\s+hoping)\s+"
    r"(?:to\s+)?(?:know|find\s+out|learn|understand|ask|get\s+(?:some\s+)?(?:info|information|advice))|"
    r"(?:can|could|would|will)\s+(?:you|u|someone|somebody|anyone)\s+(?:please\s+)?"
    r"(?:tell|send|give|explain|help|let|provide|advise|recommend|point|direct|suggest|clarify|inform)|"
    r"please\s+(?:send|tell|provide|explain|advise|help|let|give|forward|mail|share|inform)|"
    r"(?:send|mail|need|want|seeking|looking\s+for|searching\s+for|requesting|request)\s+(?:me\s+)?"
    r"(?:some\s+|any\s+|more\s+|all\s+|the\s+)?(?:info|information|literature|material|materials|details|"
    r"advice|help|answers?|facts|resources|guidance)|"
    r"(?:info|information|literature|details|advice)\s+(?:on|about|regarding|concerning|for|of)\b|"
    r"(?:is|are)\s+there\s+(?:a|an|any|some)?\s*(?:cure|cures|treatment|treatments|test|tests|medicine|"
    r"medication|way|ways|help|hope|research|trials?|surgery|therapy|therapies|remedy|remedies|doctors?|"
    r"specialists?|support|options?)|"
    r"(?:i|we)\s+(?:am\s+|'m\s+|m\s+|are\s+|was\s+|were\s+)?(?:wondering|curious|wonder)|"
    r"\bwondering\s+(?:if|whether|what|how|why|when|about)|"
    r"my\s+question\s+(?:is|was)|(?:any|some)\s+(?:advice|suggestions|ideas|help|information|info)\b|"
    r"(?:does|do)\s+(?:anyone|anybody|someone)\s+know|let\s+(?:me|us)\s+know|tell\s+(?:me|us)\s+(?:about|more|what|"
    r"how|why|if|whether)|where\s+(?:can|could|do|should)\s+(?:i|we)|what\s+(?:can|should|do)\s+(?:i|we))",
    re.I,
)
# A question form at the start of a sentence (leading "so", "and", "also" allowed). Auxiliaries
# that also open statements ("was diagnosed ...", "have had ...") count only with a question mark.
_OPENS_A_QUESTION = re.compile(
    r"^(?:(?:and|but|so|also|ok|okay|well|now|then|please|my\s+question(?:\s+is)?)[\s,:]+)*"
    r"(?:what|whats|what's|how|why|who|where|when\s+(?:is|are|will|would|should|can|could|do|does)|"
    r"is\s+(?:it|this|that|there|he|she)|are\s+(?:there|they|these|those)|"
    r"(?:can|could|does|will|would|should)(?!'t|n't|\s+not\b)|do\s+(?:i|you|they|we|people))\b",
    re.I,
)
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+|\s*\n+\s*")
# An abbreviation as patients write a condition's ("FMF", "RMSF", "CLL"), spelled out earlier in the message.
_ACRONYM = re.compile(r"\b[A-Z][A-Z]{1,5}s?\b")


@dataclass(frozen=True)
class Question:
    """What retrieval reads from a message."""

    message: str  # as sent
    text: str  # what retrieval reads: the whole message when short, else subject + naming + asking sentences
    subject: str = ""
    asking: tuple[str, ...] = ()
    focus: str | None = None  # the condition named (a MedQuAD focus), when the name matcher found one
    focus_score: float = 0.0
    kinds: frozenset[str] = field(default_factory=frozenset)  # the kinds of answer asked for (MedQuAD qtypes)

    @property
    def shortened(self) -> bool:
        return self.text != self.message


# The retriever's name matcher (Retriever.best_names): for each text, the condition it names best
# and how well (0..1), or None.
NameMatcher = Callable[[list[str]], "list[tuple[str, float] | None]"]


def is_short(message: str) -> bool:
    """One line of a few words with nothing to drop: no subject, greeting, thanks or signature."""
    text = message.strip()
    if "\n" in text or len(text.split()) > SHORT_WORDS or _SUBJECT.match(text) or _GREETING.match(text):
        return False
    return not any(is_pleasantry(s) or _CLOSING.match(s) for s in _SENTENCE_END.split(text) if s.strip())


def asks(sentence: str) -> bool:
    """Whether a sentence asks something (a question mark, a question form, or a request)."""
    s = sentence.strip()
    return s.endswith("?") or "?" in s or bool(_OPENS_A_QUESTION.match(s) or _ASKS.search(s))


def is_pleasantry(sentence: str) -> bool:
    """Thanks, a closing or contact details: says nothing about the question."""
    s = sentence.strip()
    if _CONTACT.search(s) and len(s.split()) <= 8:
        return True
    if _CLOSING.match(s) and len(_CLOSING.sub("", s, count=1).split()) <= 3:
        return True
    return bool(_THANKS.search(s)) and len(s.split()) <= 12 and not asks(s)


def split_subject(message: str) -> tuple[str, str]:
    """(subject line, the rest). A subject is a "Subject:"/"Re:" line, or a short first line with
    no verb that is followed by more lines."""
    text = message.strip()
    first, _, rest = text.partition("\n")
    if _SUBJECT.match(first):
        subject = _SUBJECT.sub("", first, count=1)
        # "SUBJECT: knee pain MESSAGE: ..." on one line.
        inline = _MESSAGE_MARK.split(subject, maxsplit=1)
        if len(inline) == 2 and inline[0].strip():
            return inline[0].strip(" .:-"), (inline[1] + "\n" + rest).strip()
        # "Subject: NF1. My 3 year old has ..." on one line: the subject ends with its first sentence.
        title, *more = _SENTENCE_END.split(subject, maxsplit=1)
        return title.strip(" .:-"), (" ".join(more) + "\n" + rest).strip()
    if rest.strip() and len(first.split()) <= 8 and not first.rstrip().endswith((".", "!", ",")):
        if not _VERB.search(first) and not _GREETING.match(first) and not is_pleasantry(first):
            return first.strip(" .:-"), rest.strip()
    return "", text


def sentences(body: str) -> list[str]:
    """Sentences (and lines), greetings stripped, pleasantries and what follows a closing dropped."""
    out: list[str] = []
    lines = [ln.strip() for ln in body.split("\n") if ln.strip()]
    for n, line in enumerate(lines):
        if _CLOSING.match(line) and len(_CLOSING.sub("", line, count=1).split()) <= 3:
            break  # "Regards, Jane" and the signature under it
        # A short last line after the message, no sentence end: a name.
        if n == len(lines) - 1 and n > 0 and len(line.split()) <= 3 and not asks(line) and line[-1:] not in ".!":
            break
        for part in _SENTENCE_END.split(line):
            part = _GREETING.sub("", part, count=1).strip()
            if len(part.split()) >= 2 and not is_pleasantry(part):
                out.append(part)
            elif part and part.endswith("?"):
                out.append(part)
    return out


def spelled_out(acronym: str, sentence: str) -> bool:
    """Whether the sentence has words whose initials spell the acronym ("familial Mediterranean
    fever" for FMF)."""
    letters = acronym.rstrip("s").lower()
    initials = "".join(w[0] for w in re.findall(r"[a-z]+", sentence.lower()))
    return len(letters) >= 2 and letters in initials


def expansions(asking: list[str], story: list[str]) -> list[str]:
    """The story's sentences that spell out an abbreviation the question uses ("the doctor is
    worried about Rocky Mountain spotted fever" for "what are the symptoms of RMSF?")."""
    found: list[str] = []
    for acronym in dict.fromkeys(_ACRONYM.findall(" ".join(asking))):
        if len(acronym.rstrip("s")) < 3:  # two letters ("OK", "ER") spell too much by chance
            continue
        spelled = [s for s in story if acronym not in s and spelled_out(acronym, s)]
        if spelled and spelled[-1] not in found:
            found.append(spelled[-1])
    return found


def same_condition(a: str, b: str) -> bool:
    """Whether two names are of one condition: they share a word that is not generic ("Ehlers-Danlos
    syndrome, hypermobility type" and "Ehlers-Danlos-like syndrome"; not "breast cancer" and "lung
    cancer")."""

    def distinctive(name: str) -> set[str]:
        return {w for w in re.findall(r"[a-z0-9]+", name.lower()) if len(w) >= 3 and w not in _GENERIC}

    return bool(distinctive(a) & distinctive(b))


def find_question(message: str, names: NameMatcher | None = None) -> Question:
    """The question in a message, for retrieval. `names` (the retriever's name matcher) finds the
    condition a long message asks about; without it the focus is left unknown and the story is
    not searched for it. A short question is returned as it is, with no focus looked up (the
    retriever matches its names anyway)."""
    from knowledge.answers.retrieval import query_qtypes  # retrieval uses this module

    if is_short(message):
        return Question(message, message, kinds=frozenset(query_qtypes(message)))
    subject, body = split_subject(message)
    parts = sentences(body)
    asking = [s for s in parts if asks(s)]
    head = [subject] if subject else []
    story = [s for s in parts if s not in asking]
    if asking:  # what an abbreviation in the question stands for, from the story
        head += expansions(head + asking, story)
    kept = head + (asking or parts)  # nothing asks: all but the pleasantries
    focus, score = None, 0.0
    if names and asking:
        named, *matches = names([" ".join(kept)] + [s for s in story if s not in head])
        told = [(i, s) for i, s in enumerate(parts) if s in story and s not in head]
        naming = [(i, s, m) for (i, s), m in zip(told, matches, strict=True) if m and m[1] >= NAMED]
        if named and named[1] >= NAMED:
            # The question names its condition: the story adds only what it says of that one
            # ("Subject: Ehlers-Danlos" ... "she has Ehlers-Danlos syndrome, hypermobility type").
            focus, score = named
            naming = [n for n in naming if same_condition(n[2][0], focus)]
        elif naming:
            # The question names none ("is there a cure?"): the story's best name, the more
            # specific (more words) on a tie, then the nearest before the question.
            first = parts.index(asking[0])
            best = max(
                naming, key=lambda n: (round(n[2][1], 2), len(n[2][0].split()), n[0] < first, -abs(n[0] - first))
            )
            focus, score = best[2]
        # The sentences that name it, nearest the question first, told in the message's order.
        first = parts.index(asking[0])
        chosen = sorted(sorted(naming, key=lambda n: abs(n[0] - first))[:STORY_SENTENCES])
        kept = head + [s for _, s, _ in chosen] + asking
    elif names and kept:
        (named,) = names([" ".join(kept)])
        if named and named[1] >= NAMED:
            focus, score = named
    text = " ".join(k.strip() for k in kept if k.strip()) or message.strip()
    return Question(
        message,
        text,
        subject=subject,
        asking=tuple(asking),
        focus=focus,
        focus_score=score,
        kinds=frozenset(query_qtypes(text)),
    )
