"""The semantic safety net: a second look, after the red-flag rules, for emergencies and crises
that people phrase in ways no rule foresaw ("feels like an elephant is sitting on my chest").

MiniLM sentence embeddings (the project's int8 embedder, offline) feed a 3-class logistic
regression (none / emergency / crisis). Its weights, threshold and training figures are plain
JSON in knowledge/triage/safety_net.json, written by `python -m knowledge.safety_net_train`.

The rules stay first and the net only adds hits: `screen_with_net` returns the rules' screening
when they found anything, skips information questions, and only then asks the net. A net hit
is reported as the synthetic rule `semantic.emergency` or `semantic.crisis` with a general
message from knowledge/triage/safety_net_messages.yml, so `RedFlagRules.message` works as usual.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from knowledge.redflags import Category, Hit, RedFlagRules, Rule, Screening, Source
from knowledge.textmatch import TRIAGE_DIR, is_information_question, normalise, sentences

NET_PATH = TRIAGE_DIR / "safety_net.json"
MESSAGES_PATH = TRIAGE_DIR / "safety_net_messages.yml"
CLASSES = ("none", "emergency", "crisis")
FIRING = ("emergency", "crisis")
# A long message can hide an emergency inside a scheduling request; each sentence of at least
# this many words is scored too, and the message scores its most alarming part.
MIN_SEGMENT_WORDS = 3
_SPLIT = re.compile(r"(?<=[.!?;])\s+|\n+")

Encoder = Callable[[Sequence[str]], np.ndarray]


def make_encoder() -> Encoder:
    """The project's MiniLM embedder (knowledge.store), one torch thread, unit-length vectors."""
    import torch

    from knowledge.store import make_embeddings

    torch.set_num_threads(1)
    embeddings = make_embeddings()

    def encode(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(embeddings.embed_documents(list(texts)), dtype=np.float32)
    return encode


def segments(text: str) -> list[str]:
    """The whole message, then each of its sentences long enough to mean something alone."""
    text = text.strip()
    parts = [p.strip() for p in _SPLIT.split(text) if p and p.strip()]
    extra = [p for p in parts if len(p.split()) >= MIN_SEGMENT_WORDS] if len(parts) > 1 else []
    return [text] + [p for p in extra if p != text]


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def pack_matrix(m: np.ndarray) -> dict[str, Any]:
    m = np.ascontiguousarray(m, dtype="<f2")
    return {"dtype": "float16", "shape": list(m.shape), "base64": base64.b64encode(m.tobytes()).decode("ascii")}


def unpack_matrix(d: dict[str, Any]) -> np.ndarray:
    raw = np.frombuffer(base64.b64decode(d["base64"]), dtype="<f2")
    return raw.reshape(d["shape"]).astype(np.float32)


class SafetyNetError(ValueError):
    pass


@dataclass
class SafetyNet:
    classes: tuple[str, ...]
    coef: np.ndarray                # (n_classes, dim)
    intercept: np.ndarray           # (n_classes,)
    threshold: float                # on P(emergency) + P(crisis)
    example_ids: tuple[str, ...]    # positive training examples, to say what a hit resembles
    example_vectors: np.ndarray     # (n_examples, dim), unit length
    metadata: dict[str, Any]
    encoder: Encoder | None = None

    @classmethod
    def load(cls, path: Path | str = NET_PATH, encoder: Encoder | None = None) -> "SafetyNet":
        data = json.loads(Path(path).read_text())
        try:
            classes = tuple(data["classes"])
            coef = np.asarray(data["coef"], dtype=np.float32)
            intercept = np.asarray(data["intercept"], dtype=np.float32)
            examples = data["examples"]
            net = cls(classes, coef, intercept, float(data["threshold"]), tuple(examples["ids"]),
                      unpack_matrix(examples["vectors"]), data.get("metadata", {}), encoder)
        except (KeyError, TypeError, ValueError) as exc:
            raise SafetyNetError(f"{path}: not a safety net model: {exc}") from exc
        if set(classes) != set(CLASSES) or coef.shape[0] != len(classes) or intercept.shape != (len(classes),):
            raise SafetyNetError(f"{path}: classes must be {CLASSES} with one weight row each")
        if len(net.example_ids) != net.example_vectors.shape[0]:
            raise SafetyNetError(f"{path}: example ids and vectors differ in number")
        return net

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.encoder is None:   # built on first use, never at import
            self.encoder = make_encoder()
        return self.encoder(texts)

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        return softmax(vectors @ self.coef.T + self.intercept)

    def predict(self, text: str) -> tuple[str | None, float, str | None]:
        """(label, probability, nearest_example_id): label is "emergency", "crisis" or None;
        probability is P(emergency or crisis) of the message's most alarming segment; the
        nearest positive training example says what a hit resembles."""
        if not text or not text.strip():
            return None, 0.0, None
        vectors = self._encode(segments(text))
        probs = self.probabilities(vectors)
        none = self.classes.index("none")
        alarm = 1.0 - probs[:, none]
        worst = int(np.argmax(alarm))
        p = float(alarm[worst])
        nearest = self.example_ids[int(np.argmax(self.example_vectors @ vectors[worst]))] if self.example_ids else None
        if p < self.threshold:
            return None, round(p, 4), nearest
        emergency, crisis = probs[worst, self.classes.index("emergency")], probs[worst, self.classes.index("crisis")]
        return ("crisis" if crisis > emergency else "emergency"), round(p, 4), nearest


@lru_cache(maxsize=1)
def default_net() -> SafetyNet:
    return SafetyNet.load(NET_PATH)


@lru_cache(maxsize=2)
def semantic_categories(path: str = str(MESSAGES_PATH)) -> dict[str, tuple[Category, Rule]]:
    """The synthetic category and rule for each net outcome, shaped like the rule files' ones."""
    data = yaml.safe_load(Path(path).read_text())
    sources = {k: Source(str(v["organisation"]), str(v["title"]), str(v["url"])) for k, v in data["sources"].items()}
    out = {}
    for kind in FIRING:
        entry = data[kind]
        messages = {k: str(v).strip() for k, v in entry["message"].items()}
        if not {"web", "sms"} <= set(messages):
            raise SafetyNetError(f"{path}: {kind} needs web and sms messages")
        source = sources[entry["source"]]
        category = Category(f"semantic_{kind}", kind, 90, messages, {entry["source"]: source}, Path(path).name)
        rule = Rule(f"semantic.{kind}", category.name, kind, str(entry["reason"]).strip(), source, patterns=())
        out[kind] = (category, rule)
    return out


def is_information_request(rules: RedFlagRules, text: str) -> bool:
    """Does the message ask for information ("what are the signs of a stroke?") rather than
    report something happening now? Uses the rules' own cues."""
    whole = normalise(text, rules.lexicon)
    return any(is_information_question(clause, whole, rules.lexicon) for clause in sentences(whole))


def screen_with_net(rules: RedFlagRules, net: SafetyNet, text: str) -> Screening:
    """The rules first; the net only when they found nothing and the message is not an
    information question. A net hit is a Screening with rule `semantic.emergency` or
    `semantic.crisis`, whose category carries the general message for the gateway."""
    screening = rules.screen(text)
    if screening.outcome is not None or is_information_request(rules, text):
        return screening
    label, _, _ = net.predict(text)
    if label is None:
        return screening
    category, rule = semantic_categories()[label]
    return Screening(label, [Hit(rule, informational=False)], category)
