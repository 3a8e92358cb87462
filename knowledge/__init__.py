"""Curated knowledge: MedQuAD, clinic information, curation rules, ingestion and retrieval."""
