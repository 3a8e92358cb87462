"""LangChain loaders and splitting: MedQuAD pairs and clinic passages become chunks with ids that
extend their citation ids (`3_GHR_QA/0000804.xml#2` → `3_GHR_QA/0000804.xml#2~0`, `~1`, ...)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document
from langchain_text_splitters import RecursiveCharacterTextSplitter

from knowledge.answers.clinic_content import load_clinic_passages
from knowledge.answers.curation import Curation, CurationReport
from knowledge.answers.medquad import iter_medquad

CHUNK_CHARS = 2000
CHUNK_OVERLAP = 200
HEADER_END = "\n\n"  # the header (question, focus, synonyms) ends at the first blank line


def content_hash(text: str, metadata: dict) -> str:
    h = hashlib.sha256(text.encode())
    for key in sorted(metadata):
        h.update(f"\x1f{key}={metadata[key]}".encode())
    return h.hexdigest()[:32]


class MedQuADLoader(BaseLoader):
    """One Document per MedQuAD question/answer pair, curated by the reviewed rules."""

    def __init__(self, root: Path, curation: Curation, report: CurationReport):
        self.root, self.curation, self.report = root, curation, report

    def lazy_load(self) -> Iterator[Document]:
        for pair in self.curation.apply(iter_medquad(self.root), self.report):
            yield Document(
                page_content=pair.answer,
                metadata={
                    "citation_id": pair.citation_id,
                    "kind": "medical",
                    "source": pair.source,
                    "organisation": pair.organisation,
                    "url": pair.url,
                    "title": pair.focus,
                    "focus": pair.focus,
                    "synonyms": "; ".join(pair.synonyms),
                    "question": pair.question,
                    "qtype": pair.qtype,
                    "file": pair.citation_id.split("#", 1)[0],
                },
            )


class ClinicLoader(BaseLoader):
    """One Document per section of the clinic's Markdown files."""

    def __init__(self, directory: Path):
        self.directory = directory

    def lazy_load(self) -> Iterator[Document]:
        for p in load_clinic_passages(self.directory):
            yield Document(
                page_content=p.text,
                metadata={
                    "citation_id": p.citation_id,
                    "kind": "clinic",
                    "source": "clinic",
                    "organisation": p.source,
                    "url": p.url,
                    "title": p.title,
                    "focus": p.section,
                    "synonyms": "; ".join(p.keywords),
                    "question": p.section,
                    "qtype": p.topic,
                    "file": "clinic/" + p.file,
                    "updated": p.updated,
                },
            )


def split(docs: Iterator[Document]) -> Iterator[tuple[str, Document]]:
    """(chunk id, chunk) pairs. Each chunk's text starts with a header naming its question, focus
    and synonyms, which is what a patient's wording is matched against."""
    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_CHARS, chunk_overlap=CHUNK_OVERLAP)
    for doc in docs:
        pieces = splitter.split_text(doc.page_content) if len(doc.page_content) > CHUNK_CHARS else [doc.page_content]
        m = doc.metadata
        header = f"{m['question']}\n{m['focus']}" + (f" ({m['synonyms']})" if m["synonyms"] else "")
        header = " ".join(header.split("\n\n"))
        for n, piece in enumerate(pieces):
            metadata = {**m, "chunk": n, "chunks": len(pieces)}
            text = header + HEADER_END + piece.strip()
            metadata["hash"] = content_hash(text, metadata)
            yield f"{m['citation_id']}~{n}", Document(page_content=text, metadata=metadata)


def body_of(page_content: str) -> str:
    return page_content.split(HEADER_END, 1)[1] if HEADER_END in page_content else page_content
