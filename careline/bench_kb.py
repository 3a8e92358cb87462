"""`make bench` (knowledge part): ingest throughput, answer latency and memory, as JSON.

BENCH_KB_FULL=1 (default) re-ingests everything into a temporary store to time a full ingest;
0 skips that and reports the last ingest of var/chroma.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from pathlib import Path

from careline.kb import read_rag_cases
from careline.stats import summary
from careline.supervisor import find_root
from channels.paging import page_chars
from knowledge.answers.answer import decide, render
from knowledge.answers.ingest import collect, ingest
from knowledge.answers.retrieval import Retriever
from knowledge.answers.vectorstore import make_chroma_client, make_embeddings, make_vector_store, paths


def main() -> None:
    root = find_root()
    out: dict = {}
    t0 = time.perf_counter()
    embeddings = make_embeddings()
    out["model_load_s"] = round(time.perf_counter() - t0, 2)
    p = paths(root)
    if os.environ.get("BENCH_KB_FULL", "1") == "1":
        out.update(_time_ingest(p, embeddings))
    t0 = time.perf_counter()
    retriever = Retriever(make_vector_store(make_chroma_client(p["chroma"]), embeddings))
    out["retriever_load_s"] = round(time.perf_counter() - t0, 2)
    questions = [c["question"] for c in read_rag_cases(root / "tests" / "eval" / "rag_dev.jsonl")]
    t0 = time.perf_counter()
    retriever.search(questions[0])
    out["cold_first_answer_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    out.update(_time_answers(retriever, embeddings, questions))
    out["max_rss_mib_with_model_and_index"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out, indent=2))


def _time_ingest(p: dict, embeddings) -> dict:
    """A full ingest into a temporary store, then an unchanged re-ingest of the same content."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        chunks, report = collect(p["medquad"], p["clinic"])
        parse_s = time.perf_counter() - t0
        vs = make_vector_store(make_chroma_client(Path(tmp)), embeddings)
        first = ingest(vs, chunks, report, progress=False)
        t0 = time.perf_counter()
        chunks2, _ = collect(p["medquad"], p["clinic"])
        second = ingest(vs, chunks2, None, progress=False)
        second_s = time.perf_counter() - t0
    return {
        "full_ingest": {
            "chunks": first.chunks,
            "parse_s": round(parse_s, 1),
            "seconds": round(first.seconds + parse_s, 1),
            "chunks_per_second": round(first.chunks / (first.seconds + parse_s), 1),
            "embedded_per_second": first.embedded_per_second,
        },
        "unchanged_reingest": {
            "seconds": round(second_s, 2),
            "written": second.added + second.updated + second.deleted,
            "fraction_of_full": round(second_s / (first.seconds + parse_s), 4),
        },
    }


def _time_answers(retriever, embeddings, questions: list[str]) -> dict:
    """Warm latencies over the questions: the whole answer, the embedding alone, the composition alone."""
    embed, total, compose = [], [], []
    for q in questions:
        t0 = time.perf_counter()
        embeddings.embed_query(q)
        embed.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        hits = retriever.search(q, k=3)
        t1 = time.perf_counter()
        d = decide(hits, retriever.calibration.threshold)
        if d.answer:
            render(d.cited[0], "sms", page_chars())
            render(d.cited[0], "web")
        t2 = time.perf_counter()
        total.append((t2 - t0) * 1000)
        compose.append((t2 - t1) * 1000)
    return {
        "warm_answer": summary(total),
        "warm_embedding_only": summary(embed),
        "warm_composition_only": summary(compose),
    }


if __name__ == "__main__":
    main()
