"""A small real knowledge base for the actions: the real retriever (dense MiniLM in an in-memory
Chroma, BM25, name matching, the shipped calibration) over a few passages in MedQuAD's shape
(MedlinePlus health topics, paraphrased) and the clinic's own hours file. Built once per session:
loading the embedding model is most of the cost."""

from __future__ import annotations

import uuid

import pytest
from langchain_core.documents import Document

import actions.knowledge as kb
from knowledge.answers.documents import ClinicLoader, split
from knowledge.answers.vectorstore import make_chroma_client, make_embeddings, make_vector_store
from tests.unit.actions.support import ROOT

MEDLINEPLUS = "MedlinePlus, National Library of Medicine (NIH)"


def medical(cid: str, focus: str, qtype: str, answer: str, url: str, synonyms: str = "") -> Document:
    question = "What is (are) {} ?" if qtype == "information" else "What are the treatments for {} ?"
    metadata = {
        "citation_id": cid,
        "kind": "medical",
        "source": "MPlusHealthTopics",
        "organisation": MEDLINEPLUS,
        "url": url,
        "title": focus,
        "focus": focus,
        "synonyms": synonyms,
        "question": question.format(focus),
        "qtype": qtype,
        "file": cid.split("#")[0],
    }
    return Document(page_content=answer, metadata=metadata)


GOUT_URL = "https://medlineplus.gov/gout.html"
# Long enough that the web shows a short answer with "Tell me more" and SMS needs several pages.
GOUT = (
    "Gout is a common, painful form of arthritis. It causes swollen, red, hot and stiff joints. "
    "Gout happens when uric acid builds up in your body. Uric acid comes from the breakdown of substances "
    "called purines. Purines are in your body's tissues and in foods, such as liver, dried beans and peas, "
    "and anchovies. Normally, uric acid dissolves in the blood. It passes through the kidneys and out of the "
    "body in urine. But sometimes uric acid can build up and form needle-like crystals. When they form in "
    "your joints, it is very painful. The crystals can also cause kidney stones. Often, gout first attacks "
    "your big toe. It can also attack ankles, heels, knees, wrists, fingers, and elbows. At first, gout "
    "attacks usually get better in days. Eventually, attacks last longer and happen more often."
)
GOUT_TREATMENT = (
    "Your health care provider may prescribe medicines to treat gout attacks, such as anti-inflammatory "
    "medicines and corticosteroids. Other medicines lower the level of uric acid in your blood to prevent "
    "future attacks."
)
PAIN_RELIEVERS = (
    "Pain relievers are medicines that reduce or relieve headaches, sore muscles, arthritis, or other aches "
    "and pains. Over-the-counter medicines such as acetaminophen and ibuprofen are good for many types of "
    "pain. Always follow the directions on the label and do not take more than the label says."
)
FEVER_TREATMENT = (
    "Most fevers go away on their own in a few days. Rest and drink plenty of fluids. Medicines such as "
    "acetaminophen or ibuprofen can lower a fever and help you feel more comfortable; follow the directions "
    "on the label."
)

PASSAGES = [
    medical("t/gout.xml#1", "Gout", "information", GOUT, GOUT_URL),
    medical("t/gout.xml#2", "Gout", "treatment", GOUT_TREATMENT, GOUT_URL),
    medical(
        "t/shingles.xml#1",
        "Shingles",
        "information",
        "Shingles is a disease caused by the varicella-zoster virus, the same virus that causes chickenpox. "
        "After you have chickenpox, the virus stays in your body. As you get older, the virus may reappear as "
        "shingles. It usually causes a painful rash on one side of the body.",
        "https://medlineplus.gov/shingles.html",
        "Herpes zoster",
    ),
    medical(
        "t/pain.xml#1",
        "Pain Relievers",
        "information",
        PAIN_RELIEVERS,
        "https://medlineplus.gov/painrelievers.html",
        "Analgesics; ibuprofen; acetaminophen",
    ),
    medical(
        "t/fever.xml#2",
        "Fever",
        "treatment",
        FEVER_TREATMENT,
        "https://medlineplus.gov/fever.html",
        "Pyrexia; High temperature",
    ),
    medical(
        "t/asthma.xml#1",
        "Asthma",
        "information",
        "Asthma is a chronic disease that affects your airways. Your airways are tubes that carry air in and "
        "out of your lungs. If you have asthma, the inside walls of your airways become sore and swollen.",
        "https://medlineplus.gov/asthma.html",
    ),
]


@pytest.fixture(scope="session")
def embeddings():
    return make_embeddings()


def build_store(embeddings, documents):
    client = make_chroma_client(ephemeral=True)
    store = make_vector_store(client, embeddings, f"actions-{uuid.uuid4().hex[:12]}")
    chunks = dict(split(iter(documents)))
    store.add_documents(list(chunks.values()), ids=list(chunks))
    return client, store


@pytest.fixture(scope="session")
def small_kb(embeddings):
    """The real Retriever over the passages above and knowledge/clinic/hours.md."""
    from knowledge.answers.retrieval import Retriever

    clinic = ClinicLoader(ROOT / "knowledge" / "clinic").lazy_load()
    hours = [d for d in clinic if d.metadata["file"] == "clinic/hours.md"]
    _, store = build_store(embeddings, PASSAGES + hours)
    return Retriever(store)


@pytest.fixture
def use_kb(monkeypatch, small_kb):
    """The actions answer from the small knowledge base, with LLM generation off."""
    monkeypatch.setattr(kb, "get_retriever", lambda: small_kb)
    monkeypatch.setattr(kb, "get_generator", lambda: None)
    return small_kb
