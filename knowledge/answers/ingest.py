"""`careline kb ingest`: a re-runnable job. Unchanged chunks are skipped, changed ones replaced,
deleted ones removed; the chunk's content hash (stored in its metadata) is the record."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from langchain_core.documents import Document
from tqdm import tqdm

from knowledge.answers.curation import DEFAULT_RULES, Curation, CurationReport
from knowledge.answers.documents import ClinicLoader, MedQuADLoader, split

BATCH = 256


@dataclass
class IngestResult:
    chunks: int
    added: int
    updated: int
    deleted: int
    unchanged: int
    seconds: float
    embedded_per_second: float
    curation: dict


def collect(
    medquad_root: Path | None,
    clinic_dir: Path | None,
    folders: Iterable[str] | None = None,
    curation_path: Path = DEFAULT_RULES,
) -> tuple[dict[str, Document], CurationReport]:
    report = CurationReport()
    chunks: dict[str, Document] = {}
    if medquad_root is not None:
        loader = MedQuADLoader(medquad_root, Curation.load(curation_path), report)
        wanted = set(folders) if folders else None
        docs = (d for d in loader.lazy_load() if wanted is None or d.metadata["file"].split("/")[0] in wanted)
        chunks.update(split(docs))
    if clinic_dir is not None:
        chunks.update(split(ClinicLoader(clinic_dir).lazy_load()))
    return chunks, report


def ingest(
    vector_store, chunks: dict[str, Document], report: CurationReport | None = None, progress: bool = True
) -> IngestResult:
    t0 = time.perf_counter()
    collection = vector_store._collection
    existing: dict[str, str] = {}
    total = collection.count()
    for offset in range(0, total, 5000):
        got = collection.get(include=["metadatas"], limit=5000, offset=offset)
        existing.update({i: (m or {}).get("hash", "") for i, m in zip(got["ids"], got["metadatas"], strict=False)})
    todo = [cid for cid, doc in chunks.items() if existing.get(cid) != doc.metadata["hash"]]
    stale = [cid for cid in existing if cid not in chunks]
    added = sum(1 for cid in todo if cid not in existing)
    t_embed = time.perf_counter()
    with tqdm(total=len(todo), desc="Embedding chunks", unit="chunk", disable=not progress or not todo) as bar:
        for i in range(0, len(todo), BATCH):
            ids = todo[i : i + BATCH]
            vector_store.add_documents([chunks[c] for c in ids], ids=ids)
            bar.update(len(ids))
    embed_seconds = time.perf_counter() - t_embed
    for i in range(0, len(stale), 5000):
        vector_store.delete(ids=stale[i : i + 5000])
    return IngestResult(
        chunks=len(chunks),
        added=added,
        updated=len(todo) - added,
        deleted=len(stale),
        unchanged=len(chunks) - len(todo),
        seconds=round(time.perf_counter() - t0, 2),
        embedded_per_second=round(len(todo) / embed_seconds, 1) if todo and embed_seconds else 0.0,
        curation=report.to_dict() if report else {},
    )


def save_report(result: IngestResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(result), indent=2))
