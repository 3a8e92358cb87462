"""Medical vocabulary: which words of a message are about the body, symptoms, medicines, tests
or care. Used by the health-domain guard (knowledge/domain.py) and by whoever needs to know that
a message names a medicine.

    mentions_medicine(text) -> bool        a medicine is named, or medicine in general ("my meds")
    medicine_names(text)    -> list[str]   the medicines named, as normalised words
    health_terms(text)      -> list[str]   the words that on their own make a message about health

Data: knowledge/vocabulary/terms.txt, one term a line (term, kind, strong|weak; for a word ending
that names a medicine or a condition, "suffix:medicine" or "suffix:condition" and the shortest
word it applies to). It is generated, never edited by hand:

    .venv/bin/python -m knowledge.vocabulary build --medquad /work/shared/data/medquad

which merges knowledge/vocabulary/seeds.yml (hand-written: medicines, WHO INN stems, symptoms,
body parts, tests, care), the MedQuAD focus names and synonyms (NIH/CDC, CC BY 4.0) and the
triage lexicon's spellings (knowledge/triage/lexicon.yml). Run time reads terms.txt only.

Matching is a token-set lookup: the message is cut into words once, and each position looks up
at most MAX_WORDS phrases in a dict (longest first), so a message costs linear time (well under a
millisecond for a chat message) and no pattern can backtrack.
"""

from __future__ import annotations

import argparse
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "vocabulary"
TERMS_FILE = DATA_DIR / "terms.txt"
SEEDS_FILE = DATA_DIR / "seeds.yml"
MAX_WORDS = 6  # the longest phrase looked up
MEDICINE_KINDS = ("medicine", "medicine_word")


def mentions_medicine(text: str) -> bool:
    """True when the message names a medicine, or speaks of medicine in general ("my meds",
    "the dose", "a side effect")."""
    return any(t.kind in MEDICINE_KINDS and t.strong for t in find_terms(text))


def medicine_names(text: str) -> list[str]:
    """The medicines named (generic, brand, class, vitamin, supplement, vaccine, or a word with a
    drug-name stem such as -pril or -statin), as written (lower case), in order, each once."""
    return _unique(t.text for t in find_terms(text) if t.kind == "medicine")


def health_terms(text: str) -> list[str]:
    """The words that on their own make the message about health (conditions, symptoms,
    medicines, tests, care), as written (lower case), in order, each once. Body parts and everyday words
    ("back", "sick", "cold") are left out: see find_terms for those."""
    return _unique(t.text for t in find_terms(text) if t.strong)


@dataclass(frozen=True)
class Term:
    text: str  # the words matched, as written (lower case)
    key: str  # the same words normalised, as in terms.txt
    kind: str  # condition | symptom | medicine | medicine_word | test | care | body
    strong: bool  # about health on its own (weak: only next to other health words)
    start: int  # first word's index in words(text)
    end: int  # one past the last word's index


@dataclass(frozen=True)
class Vocabulary:
    phrases: dict[str, tuple[str, bool]]  # normalised phrase -> (kind, strong); kind "none" hides
    longest: dict[str, int]  # first word -> the most words of a phrase starting with it
    # word endings that name a medicine (INN stems: "-pril") or a condition ("-itis"), each with
    # the shortest word it applies to and the kind it gives
    suffixes: tuple[tuple[str, int, str], ...]
    not_stemmed: frozenset[str]  # everyday words with such an ending ("april", "diploma")
    stems: tuple[str, ...] = ()  # the endings alone, for one str.endswith call a word
    shortest: int = 0  # no ending applies to a shorter word


def words(text: str) -> list[str]:
    """The message as matchable words: lower case, accents and apostrophes dropped ("can't" ->
    "cant", "Crohn's" -> "crohn"), cut at anything but a letter or digit, plurals made singular."""
    return [w for w, _, _ in word_spans(text)]


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """(normalised word, start, end) with start and end as offsets into text.lower()."""
    lower = text.lower()
    folded = lower if lower.isascii() else "".join(map(_fold, lower))  # same length: offsets hold
    return [(_singular(_APOSTROPHES.sub("", m.group())), m.start(), m.end()) for m in _WORD.finditer(folded)]


# A word, with apostrophes inside it ("can't"). Unambiguous: each character is read once.
_WORD = re.compile(r"[a-z0-9]+(?:['\u2019`][a-z0-9]+)*")
_APOSTROPHES = re.compile(r"['\u2019`]")


def _fold(ch: str) -> str:
    """One character without its accent ("ñ" -> "n"); any other character as it is."""
    base = unicodedata.normalize("NFKD", ch)[:1]
    return base if base.isascii() else ch


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def find_terms(text: str, vocabulary: Vocabulary | None = None) -> list[Term]:
    """Every health term in the message, longest phrase first at each word, left to right."""
    vocab = vocabulary or load()
    spans = word_spans(text)
    ws = [w for w, _, _ in spans]
    lower = text.lower()
    found: list[Term] = []
    i = 0
    while i < len(ws):
        for n in range(min(vocab.longest.get(ws[i], 0), len(ws) - i), 0, -1):
            phrase = " ".join(ws[i : i + n])
            hit = vocab.phrases.get(phrase)
            if hit is not None:
                if hit[0] != "none":
                    surface = lower[spans[i][1] : spans[i + n - 1][2]]
                    found.append(Term(surface, phrase, hit[0], hit[1], i, i + n))
                i += n
                break
        else:
            kind = _stem_kind(ws[i], vocab)
            if kind:
                found.append(Term(lower[spans[i][1] : spans[i][2]], ws[i], kind, True, i, i + 1))
            i += 1
    return found


def _stem_kind(word: str, vocab: Vocabulary) -> str | None:
    """ "medicine" for "perindopril", "condition" for "fasciitis", else None."""
    if len(word) < vocab.shortest or not word.endswith(vocab.stems) or word in vocab.not_stemmed:
        return None
    if not word.isalpha():
        return None
    return next((k for stem, n, k in vocab.suffixes if len(word) >= n and word.endswith(stem)), None)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


@lru_cache(maxsize=2)
def load(path: Path = TERMS_FILE) -> Vocabulary:
    """Read terms.txt (built once per process, on first use)."""
    phrases: dict[str, tuple[str, bool]] = {}
    suffixes: list[tuple[str, int, str]] = []
    not_stemmed: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        term, kind, note = line.split("\t")
        if kind.startswith("suffix:"):
            suffixes.append((term, int(note), kind.split(":", 1)[1]))
        elif kind == "not_stemmed":
            not_stemmed.add(term)
        else:
            phrases[term] = (kind, note == "strong")
    longest: dict[str, int] = {}
    for phrase in phrases:
        first, n = phrase.split(" ", 1)[0], phrase.count(" ") + 1
        longest[first] = max(longest.get(first, 0), n)
    stems = tuple(stem for stem, _, _ in suffixes)
    shortest = min((n for _, n, _ in suffixes), default=0)
    return Vocabulary(phrases, longest, tuple(suffixes), frozenset(not_stemmed), stems, shortest)


# --- building terms.txt (a job run by hand when a source changes; never at run time) -----------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m knowledge.vocabulary", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="regenerate knowledge/vocabulary/terms.txt")
    build.add_argument("--medquad", type=Path, required=True, help="the MedQuAD folder (/work/shared/data/medquad)")
    build.add_argument("--out", type=Path, default=TERMS_FILE)
    args = parser.parse_args(argv)
    from knowledge.vocabulary_build import build_terms

    lines = build_terms(args.medquad, SEEDS_FILE)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{args.out}: {sum(1 for x in lines if not x.startswith('#'))} terms")


if __name__ == "__main__":
    main()
