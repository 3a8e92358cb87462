"""Clinic information (hours, locations, insurance, policies) as retrievable passages.

The content lives in Markdown files under knowledge/clinic/ so that clinic staff can edit it
without reading Python (see knowledge/clinic/README.md for the format). Each `## ` section of a
file is one passage, cited as `clinic/<file name>#<section slug>`.

Everything here is a pure function of the files on disk: nothing is read at import time.
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml

REQUIRED_FIELDS = ("title", "topic", "url", "source")
SKIPPED_FILES = frozenset({"readme.md"})
DEFAULT_ID_PREFIX = "clinic"

_FENCE = "---"
_SECTION_PREFIX = "## "
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


class ClinicContentError(ValueError):
    """A clinic content file is malformed. `file` names it, `reason` says what is wrong."""

    def __init__(self, file: str, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


@dataclass(frozen=True)
class ClinicPassage:
    citation_id: str
    title: str
    section: str
    text: str
    url: str
    topic: str
    keywords: tuple[str, ...]
    updated: str
    source: str
    file: str


def slugify(heading: str) -> str:
    """`Saturday hours` -> `saturday-hours`: lowercase, runs of non-alphanumerics become one "-",
    trimmed. Accents are dropped first (`Español` -> `espanol`) so ids stay plain ASCII."""
    ascii_text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    return _NON_ALNUM.sub("-", ascii_text.lower()).strip("-")


def load_clinic_passages(directory: Path, *, id_prefix: str = DEFAULT_ID_PREFIX) -> list[ClinicPassage]:
    """Every `## ` section of every `*.md` file directly in `directory` (README.md excepted),
    in file-name order then document order. Raises ClinicContentError on the first bad file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ClinicContentError(str(directory), "not a directory")
    passages: list[ClinicPassage] = []
    seen: dict[str, str] = {}
    for path in sorted(directory.glob("*.md")):
        if path.name.lower() in SKIPPED_FILES or not path.is_file():
            continue
        for passage in parse_clinic_file(path.name, path.read_text(encoding="utf-8-sig"), id_prefix=id_prefix):
            if passage.citation_id in seen:
                raise ClinicContentError(
                    path.name, f"duplicate citation id {passage.citation_id!r} (section {passage.section!r})"
                )
            seen[passage.citation_id] = path.name
            passages.append(passage)
    return passages


def parse_clinic_file(name: str, content: str, *, id_prefix: str = DEFAULT_ID_PREFIX) -> list[ClinicPassage]:
    """The passages of one file, given its name (e.g. `hours.md`) and its text."""
    meta, body, first_line = _split_front_matter(name, content)
    fields = _read_fields(name, meta)
    passages = []
    for heading, text in _split_sections(name, body, first_line):
        slug = slugify(heading)
        if not slug:
            raise ClinicContentError(name, f"section heading {heading!r} has no letters or digits")
        passages.append(
            ClinicPassage(
                citation_id=f"{id_prefix}/{name}#{slug}",
                section=heading,
                text=text,
                file=name,
                **fields,
            )
        )
    return passages


def _split_front_matter(name: str, content: str) -> tuple[dict, list[str], int]:
    """The front matter, the body's lines and the body's first line number in the file."""
    lines = content.splitlines()
    if not lines or lines[0].strip() != _FENCE:
        raise ClinicContentError(name, "missing front matter (the file must start with a '---' line)")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == _FENCE)
    except StopIteration:
        raise ClinicContentError(name, "missing front matter (no closing '---' line)") from None
    try:
        meta = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        raise ClinicContentError(name, f"front matter is not valid YAML ({exc.__class__.__name__})") from exc
    if meta is None:
        raise ClinicContentError(name, "missing front matter (it is empty)")
    if not isinstance(meta, dict):
        raise ClinicContentError(name, "front matter must be a set of 'field: value' lines")
    return meta, lines[end + 1 :], end + 2


def _read_fields(name: str, meta: dict) -> dict:
    missing = [f for f in REQUIRED_FIELDS if not isinstance(meta.get(f), str) or not meta[f].strip()]
    if missing:
        raise ClinicContentError(name, f"missing required field(s): {', '.join(missing)}")
    return {
        "title": meta["title"].strip(),
        "topic": meta["topic"].strip(),
        "url": meta["url"].strip(),
        "source": meta["source"].strip(),
        "keywords": _keywords(name, meta.get("keywords")),
        "updated": _updated(name, meta.get("updated")),
    }


def _keywords(name: str, value) -> tuple[str, ...]:
    # A YAML list, or one comma-separated line for editors who prefer it.
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(k, (str, int, float)) for k in value):
        raise ClinicContentError(name, "keywords must be a list of words or phrases")
    return tuple(k for k in (str(k).strip() for k in value) if k)


def _updated(name: str, value) -> str:
    if value is None:
        return ""
    if isinstance(value, _dt.datetime):
        return value.date().isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise ClinicContentError(name, f"updated must be an ISO date like 2026-01-31, got {value!r}")


def _split_sections(name: str, lines: list[str], first_line: int) -> list[tuple[str, str]]:
    sections: list[tuple[str, list[str]]] = []
    for number, line in enumerate(lines, start=first_line):
        if line.startswith(_SECTION_PREFIX):
            sections.append((line[len(_SECTION_PREFIX) :].strip(), []))
        elif sections:
            sections[-1][1].append(line)
        elif line.strip():
            raise ClinicContentError(
                name, f"text before the first '## ' section (line {number}): {line.strip()[:60]!r}"
            )
    if not sections:
        raise ClinicContentError(name, "no '## ' sections")
    result = []
    for heading, body in sections:
        text = "\n".join(body).strip()
        if not text:
            raise ClinicContentError(name, f"section {heading!r} has an empty body")
        result.append((heading, text))
    return result
