"""The triage rules engine: the safety screen's red-flag rules and the symptom protocols, as YAML
in this folder beside the code that reads them."""

from pathlib import Path

RULES_DIR = Path(__file__).resolve().parent
