"""Grounded answers: MedQuAD and the clinic's files, curated, chunked, indexed in Chroma, retrieved,
and answered with citations (extractive, or generated and checked against the passage)."""
