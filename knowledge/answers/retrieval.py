"""Hybrid retrieval over the knowledge base: dense (MiniLM in Chroma), lexical (BM25 over the
chunks) and name matching (focus and synonyms, robust to misspellings: rare disease names
matter more than meaning). A logistic model over these signals gives a calibrated probability
that a passage answers the question; below a threshold the assistant abstains."""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from knowledge.answers.documents import body_of

if TYPE_CHECKING:
    from knowledge.answers.question import Question

CALIBRATION_FILE = Path(__file__).with_name("retrieval_calibration.json")

STOPWORDS = frozenset(
    """a an and are as at be been but by can could do does for from had has have how i if in
into is it its me my of on or our so than that the their them then there these they this to was we were what
when where which who why will with you your im ive id dont does did doing get got about tell know""".split()
)

# Words that say which kind of answer is wanted, mapped to MedQuAD question types. Each cue is a
# regular expression matched from a word start ("cause" must not match "because").
QTYPE_CUES: dict[str, tuple[str, ...]] = {
    "symptoms": (r"symptoms?\b", r"signs?\b", "feel like", "look like", "how do i know", "tell if"),
    "causes": (
        r"caus(e|es|ed|ing)\b",
        "why do",
        "why does",
        "why did",
        "what makes",
        r"reasons?\b",
        r"trigger",
        "from what",
    ),
    "treatment": (
        r"treat",
        r"cur(e|es|ed)\b",
        r"medicines?\b",
        r"medications?\b",
        r"therap",
        "get rid",
        r"manag(e|ed|ing)\b",
        r"heal(s|ed|ing)?\b",
        r"fix",
    ),
    "inheritance": (
        r"inherit",
        r"genetic(ally)?\b",
        "hereditary",
        "pass it",
        "pass on",
        "passed on",
        "passed down",
        "runs in",
        "my kids get",
        "children get",
        "kids get",
    ),
    "frequency": (
        "how common",
        "how many people",
        "how many ppl",
        "how rare",
        "rare is",
        "common is",
        "prevalen",
        "how many kids",
        "how many children",
    ),
    "prevention": (r"prevent", r"avoid", "lower my risk", "reduce my risk", "stop getting", r"protect"),
    "exams and tests": (r"test(s|ing|ed)?\b", r"diagnos", r"screen", "check for", "find out if"),
    "outlook": (
        "outlook",
        "prognosis",
        "life expectancy",
        "survival",
        "live with",
        "go away",
        r"gets? better",
        "fatal",
        "permanent",
        "how long will",
        "how long until",
        "will he be ok",
        "will she be ok",
        "lifespan",
        "die from",
        r"chances? of",
        r"recover",
    ),
    "susceptibility": ("who gets", "at risk", r"risk factors?\b", "who is at risk", "more likely"),
    "genetic changes": (r"genes?\b", r"mutation", r"dna\b"),
    "complications": (r"complications?\b", r"risks of\b", r"dangers of\b", r"side effects?\b"),
    "considerations": (r"eat(s|ing)?\b", r"diet", r"foods?\b", "what to do"),  # NIDDK's "What to do for ..."
}
_CUE_PATTERNS = {qtype: re.compile(r"\b(?:" + "|".join(cues) + ")") for qtype, cues in QTYPE_CUES.items()}

# Kinds of MedQuAD entry that also answer a kind of question: GHR explains what causes a genetic
# condition under "genetic changes".
ANSWERS_ALSO = {"causes": {"genetic changes"}}

# A patient's account ("my mom was just diagnosed", "the geneticist ran a test") names kinds of
# answer they did not ask for: the clauses that ask something say what is wanted.
_CLAUSE = re.compile(r"[^.?!;\n]+[.?!;\n]*")
_ASKING = re.compile(
    r"^(?:(?:and|but|so|also|ok|okay|hi|hey|um|pls|please)\s+)*(?:what|whats|how|why|when|who|which|"
    r"where|is|are|am|can|could|does|do|did|will|would|should|was|were|has|have|any)\b"
)
_NARRATIVE = re.compile(r"\b(?:was|were|been|got|get|gets|just|recently|newly|being)\s+(?:\w+\s+)?diagnosed\b")

FEATURES = (
    "dense",
    "bm25",
    "name",
    "qtype",
    "dense_x_name",
    "rank_dense",
    "rank_bm25",
    "qtype_x_name",
    "information",
    "clinic",
    "other_kind",
    "best_name",
    "no_answer",
)


def normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


_TRAILING_ALIAS = re.compile(r"^(.*\S)\s*\(\s*(?:also\s+known\s+as\s+)?([^()]+?)\s*\)$", re.I)


def name_variants(name: str, alias: bool = True) -> list[str]:
    """A name and the names it contains: "Chronic Fatigue Syndrome (CFS)" is also "Chronic Fatigue
    Syndrome" and (`alias`) "CFS", "Parasites - American Trypanosomiasis (also known as Chagas
    Disease)" also "Chagas Disease", "Gum (Periodontal) Disease" also "Gum Disease". A patient
    writes one of them, and a name is only matched by a window of about its own length."""
    variants = [name]
    found = _TRAILING_ALIAS.match(name.strip()) if alias else None
    if found and not found.group(2).lower().startswith("for "):  # "(For Health Care Professionals)"
        variants.append(found.group(2))
    outside = re.sub(r"\s*\([^()]*\)", "", name).strip()
    if outside and outside != name:
        variants.append(outside)
    return variants


def _cued(text: str) -> set[str]:
    text = _NARRATIVE.sub(" ", text)
    return {qtype for qtype, pattern in _CUE_PATTERNS.items() if pattern.search(text)}


def query_qtypes(query: str) -> set[str]:
    """The kinds of answer asked for; none means an overview."""
    from knowledge.answers.question import asks  # requests too: "i want to know if it is inherited"

    clauses = [c.strip() for c in _CLAUSE.findall(query.lower()) if c.strip()]
    asking = [c for c in clauses if c.endswith("?") or _ASKING.match(c) or asks(c)]
    if asking:
        return set().union(*(_cued(c) for c in asking))
    return _cued(query.lower())


def answers_kind(entry_qtype: str | None, wanted: set[str]) -> bool:
    """Whether an entry of this kind answers the question asked (an overview when none was named)."""
    if not wanted:
        return entry_qtype == "information"
    return entry_qtype in wanted or any(entry_qtype in ANSWERS_ALSO.get(w, ()) for w in wanted)


def not_an_answer(body: str) -> bool:
    """Entries with nothing to read out: GHR's treatment entries only list other sites, and some GARD
    answers only repeat their question."""
    body = body.strip()
    return not body or body.startswith("These resources") or (body.endswith("?") and len(body) < 200)


@dataclass
class Calibration:
    weights: dict[str, float]
    bias: float
    threshold: float  # probability under which the assistant abstains

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> Calibration:
        data = json.loads(path.read_text())
        return cls(data["weights"], data["bias"], data["threshold"])

    def probability(self, features: dict[str, float]) -> float:
        z = self.bias + sum(self.weights.get(k, 0.0) * v for k, v in features.items())
        return 1 / (1 + math.exp(-z))


@dataclass
class Hit:
    chunk_id: str
    citation_id: str
    score: float  # calibrated probability that this passage answers the question
    metadata: dict[str, Any]
    text: str  # the passage (answer text, without the matching header)
    features: dict[str, float] = field(default_factory=dict)


def _limit_torch_threads(n: int) -> None:
    """One question is too small to gain from parallel threads, and on a busy machine threads that
    wait for each other made the slowest embeddings 30 times slower (p95 410 ms against 14 ms on 2
    shared cores). This process serves questions; ingestion runs in its own."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(n)


class Retriever:
    def __init__(
        self, vector_store, calibration: Calibration | None = None, candidates: int = 30, torch_threads: int | None = 1
    ):
        self.vs = vector_store
        self.calibration = calibration or Calibration.load()
        self.candidates = candidates
        # One search at a time: the embedding model's fast tokenizer is shared state that raises
        # "Already borrowed" when two threads use it (huggingface/tokenizers#537), and a search is
        # tens of milliseconds of CPU anyway. Callers must not hold it across slow work (an LLM call).
        self._lock = threading.Lock()
        if torch_threads:
            _limit_torch_threads(torch_threads)
        self._build_lexical()

    def _build_lexical(self) -> None:
        collection = self.vs._collection
        ids, docs, metas = [], [], []
        total = collection.count()
        for offset in range(0, total, 5000):
            got = collection.get(include=["documents", "metadatas"], limit=5000, offset=offset)
            ids += got["ids"]
            docs += got["documents"]
            metas += got["metadatas"]
        self.ids, self.docs, self.metas = ids, docs, metas
        self.index_of = {cid: i for i, cid in enumerate(ids)}
        # BM25 over header + passage.
        self.counter = CountVectorizer(
            token_pattern=r"(?u)\b[a-z0-9][a-z0-9]+\b", stop_words=list(STOPWORDS), lowercase=True, dtype=np.float32
        )
        tf = self.counter.fit_transform(docs).tocsr() if docs else sparse.csr_matrix((0, 0))
        if docs:
            k1, b = 1.2, 0.75
            dl = np.asarray(tf.sum(axis=1)).ravel()
            avgdl = dl.mean() if len(dl) else 1.0
            df = np.bincount(tf.indices, minlength=tf.shape[1])
            idf = np.log(1 + (len(docs) - df + 0.5) / (df + 0.5)).astype(np.float32)
            tf = tf.tocoo()
            denom = tf.data + k1 * (1 - b + b * dl[tf.row] / avgdl)
            weights = idf[tf.col] * tf.data * (k1 + 1) / denom
            # Column-major: a question selects a few term columns to add up.
            self.bm25 = sparse.csc_matrix((weights, (tf.row, tf.col)), shape=tf.shape)
        else:
            self.bm25 = tf.tocsc()
        # Names: focus and synonyms of each chunk, char-trigram TF-IDF for misspellings.
        names, owners = [], []
        for i, m in enumerate(metas):
            # A synonym's parenthesis is a note ("(type)", "(formerly)"), a focus's an alias.
            synonyms = [v for s in (m.get("synonyms") or "").split("; ") if s for v in name_variants(s, alias=False)]
            for n in dict.fromkeys(normalise(v) for v in name_variants(m.get("focus", "")) + synonyms):
                if len(n) >= 3:
                    names.append(n)
                    owners.append(i)
        self.name_owner = np.array(owners)
        self.name_words = np.array([len(n.split()) for n in names])
        self.names_vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 3), sublinear_tf=True) if names else None
        # Stored transposed, once: transposing per question cost more than the matching itself.
        self.names_matrix = self.names_vec.fit_transform(names).T.tocsr() if names else None

    # --- signals -----------------------------------------------------------------------------
    def _name_scores(self, query: str) -> dict[int, float]:
        """Best fuzzy match of any focus/synonym against any window of the query's words."""
        return self._names_in([query])[0]

    def _names_in(self, texts: list[str]) -> list[dict[int, float]]:
        """Name matches of several texts (the sentences of a message) in one pass."""
        return [{i: score for i, (score, _) in found.items()} for found in self._name_matches(texts)]

    def _name_matches(self, texts: list[str]) -> list[dict[int, tuple[float, int]]]:
        """For each text, passage index -> (best name match, how many words that name has)."""
        out: list[dict[int, tuple[float, int]]] = [{} for _ in texts]
        if self.names_matrix is None:
            return out
        windows, sizes, text_of = [], [], []
        for t, text in enumerate(texts):
            words = normalise(text).split()
            for size in range(1, min(8, len(words)) + 1):
                for start in range(0, len(words) - size + 1):
                    window = words[start : start + size]
                    if size == 1 and (window[0] in STOPWORDS or len(window[0]) < 4):
                        continue
                    windows.append(" ".join(window))
                    sizes.append(size)
                    text_of.append(t)
        if not windows:
            return out
        sims = (self.names_vec.transform(windows) @ self.names_matrix).tocoo()
        sizes = np.array(sizes)
        keep = sims.data >= 0.55
        for w, n, s in zip(sims.row[keep], sims.col[keep], sims.data[keep], strict=False):
            # A window must be about as long as the name (no credit for "syndrome" alone).
            if abs(sizes[w] - self.name_words[n]) > 1:
                continue
            owner = int(self.name_owner[n])
            scores = out[text_of[w]]
            if s > scores.get(owner, (0.0, 0))[0]:
                scores[owner] = (float(s), int(self.name_words[n]))
        return out

    def _bm25_scores(self, query: str) -> np.ndarray:
        terms = np.unique(self.counter.transform([query]).indices)
        return np.asarray(self.bm25[:, terms].sum(axis=1)).ravel()

    def best_names(self, texts: list[str]) -> list[tuple[str, float] | None]:
        """For each text, the condition it names best (the focus of a medical passage, by its focus
        or a synonym) and how well (0..1), or None: the name matcher knowledge/answers/question.py
        uses to find what a long message is about."""
        found: list[tuple[str, float] | None] = []
        for matches in self._name_matches(texts):
            medical = {i: m for i, m in matches.items() if self.metas[i].get("kind") != "clinic"}
            # On a tie the longer name: "familial Mediterranean fever" rather than "fever".
            best = max(medical, key=lambda i: (round(medical[i][0], 2), medical[i][1]), default=None)
            found.append(None if best is None else (self.metas[best].get("focus", ""), medical[best][0]))
        return found

    def search(self, query: str, k: int = 5, context: str | None = None) -> list[Hit]:
        """Best passages for a message, one per citation, most probable first: the one entry point
        for answering (actions/knowledge.py) and evaluation (careline/kb.py evaluate_rag)."""
        question, hits = self.candidates_for(query, context)
        return rank(hits, set(question.kinds))[:k]

    def candidates_for(self, message: str, context: str | None = None) -> tuple[Question, list[Hit]]:
        """The question found in a message (knowledge/answers/question.py: a long message is cut to
        its subject, the sentences that ask and the condition they are about) and every candidate
        passage for it, scored. Thread-safe: searches run one at a time."""
        from knowledge.answers.question import find_question  # it reads query_qtypes from here

        if not self.ids:
            return find_question(message), []
        with self._lock:
            question = find_question(message, self.best_names)
            return question, self._scored_candidates(question.text, context)

    def scored_candidates(self, query: str, context: str | None = None) -> list[Hit]:
        """Every candidate passage (dense, BM25 and name matches), one per citation, scored.
        Thread-safe: searches run one at a time."""
        if not self.ids:
            return []
        with self._lock:
            return self._scored_candidates(query, context)

    def _scored_candidates(self, query: str, context: str | None) -> list[Hit]:
        names = self._name_scores(query)
        text = query
        if context and max(names.values(), default=0.0) < 0.8:
            # A follow-up ("what about in children") names no topic: the previous topic stands.
            text = f"{context} {query}"
            names = self._name_scores(context)
        # One embedding of the question serves the dense search and the other candidates.
        qvec = np.asarray(self.vs._embedding_function.embed_query(text))
        dense = {}
        for doc, distance in self.vs.similarity_search_by_vector_with_relevance_scores(
            qvec.tolist(), k=self.candidates
        ):
            dense[self.index_of[doc.id]] = 1.0 - float(distance)
        bm25 = self._bm25_scores(text)
        top_bm25 = np.argsort(-bm25)[: self.candidates]
        bm25_max = float(bm25[top_bm25[0]]) if len(top_bm25) else 0.0
        top_names = sorted(names, key=names.get, reverse=True)[: self.candidates]
        candidates = set(dense) | {int(i) for i in top_bm25 if bm25[i] > 0} | set(top_names)
        missing = [self.ids[i] for i in candidates if i not in dense]
        if missing:
            got = self.vs._collection.get(ids=missing, include=["embeddings"])
            for cid, emb in zip(got["ids"], got["embeddings"], strict=False):
                dense[self.index_of[cid]] = float(np.dot(qvec, np.asarray(emb)))
        dense_rank = {i: r for r, i in enumerate(sorted(dense, key=dense.get, reverse=True))}
        bm25_rank = {int(i): r for r, i in enumerate(top_bm25)}
        wanted = query_qtypes(query)
        top_name = max((names.get(i, 0.0) for i in candidates), default=0.0)
        best: dict[str, Hit] = {}
        for i in candidates:
            m = self.metas[i]
            is_clinic = m.get("kind") == "clinic"
            qtype_match = 0.0 if is_clinic else float(answers_kind(m.get("qtype"), wanted))
            name = names.get(i, 0.0)
            body = body_of(self.docs[i])
            features = {
                "dense": dense.get(i, 0.0),
                "bm25": float(bm25[i]) / bm25_max if bm25_max else 0.0,
                "name": names.get(i, 0.0),
                "qtype": qtype_match,
                "dense_x_name": dense.get(i, 0.0) * names.get(i, 0.0),
                "rank_dense": 1.0 / (1 + dense_rank.get(i, 99)),
                "rank_bm25": 1.0 / (1 + bm25_rank.get(i, 99)),
                # The asked-for kind of answer about the named condition: the strongest single cue.
                "qtype_x_name": qtype_match * names.get(i, 0.0),
                "information": 1.0 if m.get("qtype") == "information" else 0.0,
                "clinic": 1.0 if is_clinic else 0.0,
                # Another specific kind than the one asked for (diagnosis when causes were asked).
                "other_kind": float(not is_clinic and not qtype_match and m.get("qtype") != "information"),
                # About the condition the question names best ("long QT", not "short QT").
                "best_name": float(name >= 0.7 and name >= top_name - 0.02),
                "no_answer": float(not_an_answer(body)),
            }
            hit = Hit(self.ids[i], m["citation_id"], self.calibration.probability(features), m, body, features)
            if hit.citation_id not in best or hit.score > best[hit.citation_id].score:
                best[hit.citation_id] = hit
        return list(best.values())


def rank(hits: list[Hit], wanted: set[str], calibration: Calibration | None = None) -> list[Hit]:
    """Most probable first (rescored by `calibration` when given), the asked-for kind promoted."""
    if calibration is not None:
        hits = [replace(h, score=calibration.probability(h.features)) for h in hits]
    return prefer_asked_kind(sorted(hits, key=lambda h: h.score, reverse=True), wanted)


def prefer_asked_kind(ranked: list[Hit], wanted: set[str], window: int = 8, ratio: float = 0.3) -> list[Hit]:
    """Among passages about the same topic as the best one, the kind of answer the patient asked
    for (causes, treatment, inheritance...; an overview when they did not say) goes first."""
    if not ranked or ranked[0].metadata.get("kind") == "clinic":
        return ranked
    top = ranked[0]
    topic = normalise(top.metadata.get("focus", ""))

    def same_topic(h: Hit) -> bool:
        return normalise(h.metadata.get("focus", "")) == topic or (
            top.features.get("name", 0) >= 0.7 and h.features.get("name", 0) >= 0.7
        )

    def asked_kind(h: Hit) -> bool:
        return answers_kind(h.metadata.get("qtype"), wanted) and not h.features.get("no_answer")

    if asked_kind(top):
        return ranked
    for i, h in enumerate(ranked[1:window], 1):
        if same_topic(h) and asked_kind(h) and h.score >= top.score * ratio:
            promoted = Hit(h.chunk_id, h.citation_id, top.score, h.metadata, h.text, {**h.features, "promoted": 1.0})
            return [promoted] + ranked[:i] + ranked[i + 1 :]
    return ranked
