"""Ingestion is a re-runnable job: unchanged chunks are skipped, edits replace, deletions remove.
Real MiniLM embeddings and a real (in-memory) Chroma; a small subset of MedQuAD."""

import shutil
import uuid

import pytest

from knowledge.answers.ingest import collect, ingest
from knowledge.answers.vectorstore import collection_name, make_chroma_client, make_embeddings, make_vector_store
from tests.helpers import ROOT

MEDQUAD = ROOT.parent / "shared" / "data" / "medquad"


@pytest.fixture(scope="module")
def embeddings():
    return make_embeddings()


@pytest.fixture
def store(embeddings):
    return make_vector_store(make_chroma_client(ephemeral=True), embeddings, f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def clinic(tmp_path):
    directory = tmp_path / "clinic"
    shutil.copytree(ROOT / "knowledge" / "clinic", directory)
    return directory


def test_collection_name_carries_the_model():
    assert collection_name() == "careline-kb-all-minilm-l6-v2"


def test_reingest_writes_nothing_and_an_edit_reindexes_only_that_file(store, clinic):
    chunks, report = collect(MEDQUAD, clinic, folders=["9_CDC_QA"])
    assert all(cid.split("~")[0].split("#")[0].startswith(("9_CDC_QA/", "clinic/")) for cid in chunks)
    first = ingest(store, chunks, report, progress=False)
    assert first.added == len(chunks) == store._collection.count()

    again = ingest(store, collect(MEDQUAD, clinic, folders=["9_CDC_QA"])[0], progress=False)
    assert (again.added, again.updated, again.deleted) == (0, 0, 0)
    assert again.seconds < first.seconds / 5

    edited = [
        c for c, d in chunks.items() if c.startswith("clinic/hours.md") and "9:00 a.m. to 1:00 p.m." in d.page_content
    ]
    assert edited
    hours = clinic / "hours.md"
    hours.write_text(hours.read_text().replace("9:00 a.m. to 1:00 p.m.", "9:00 a.m. to 2:00 p.m."))
    (clinic / "parking.md").unlink()
    chunks3, _ = collect(MEDQUAD, clinic, folders=["9_CDC_QA"])
    third = ingest(store, chunks3, progress=False)
    assert third.updated == len(edited) and third.added == 0  # only the edited sections of hours.md
    assert third.deleted == sum(1 for c in chunks if c.startswith("clinic/parking.md"))
    got = store._collection.get(ids=["clinic/hours.md#saturday-hours~0"], include=["documents"])
    assert "2:00 p.m." in got["documents"][0]


def test_long_answers_are_split_with_ids_extending_the_citation(store):
    chunks, _ = collect(MEDQUAD, None, folders=["1_CancerGov_QA"])
    split_ids = [c for c in chunks if not c.endswith("~0")]
    assert split_ids
    cid = split_ids[0]
    base = cid.rsplit("~", 1)[0]
    assert f"{base}~0" in chunks and chunks[cid].metadata["citation_id"] == base
    assert chunks[cid].metadata["chunks"] > 1
