"""MedQuAD parsing: one record per question/answer pair, with its citation id and provenance."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Folder source code → the public organisation patients see in a citation.
ORGANISATIONS = {
    "CancerGov": "National Cancer Institute (NCI), NIH",
    "GARD": "Genetic and Rare Diseases Information Center (GARD), NIH",
    "GHR": "MedlinePlus Genetics, National Library of Medicine (NIH)",
    "MPlusHealthTopics": "MedlinePlus, National Library of Medicine (NIH)",
    "NIDDK": "National Institute of Diabetes and Digestive and Kidney Diseases (NIDDK), NIH",
    "NINDS": "National Institute of Neurological Disorders and Stroke (NINDS), NIH",
    "NIHSeniorHealth": "NIHSeniorHealth, National Institute on Aging (NIH)",
    "NHLBI": "National Heart, Lung, and Blood Institute (NHLBI), NIH",
    "CDC": "Centers for Disease Control and Prevention (CDC)",
}
FOLDER_SOURCES = {
    "1_CancerGov_QA": "CancerGov",
    "2_GARD_QA": "GARD",
    "3_GHR_QA": "GHR",
    "4_MPlus_Health_Topics_QA": "MPlusHealthTopics",
    "5_NIDDK_QA": "NIDDK",
    "6_NINDS_QA": "NINDS",
    "7_SeniorHealth_QA": "NIHSeniorHealth",
    "8_NHLBI_QA_XML": "NHLBI",
    "9_CDC_QA": "CDC",
}


@dataclass(frozen=True)
class QAPair:
    citation_id: str  # "<folder>/<file>#<pid>"
    source: str
    organisation: str
    url: str
    focus: str
    synonyms: tuple[str, ...]
    question: str
    qtype: str
    answer: str


def parse_file(path: Path, root: Path) -> list[QAPair]:
    """All pairs of one MedQuAD XML file that carry an answer."""
    rel = path.relative_to(root).as_posix()
    doc = ET.parse(path).getroot()
    source = doc.get("source") or FOLDER_SOURCES.get(rel.split("/", 1)[0], "")
    focus = " ".join((doc.findtext("Focus") or "").split())
    synonyms = tuple(" ".join((s.text or "").split()) for s in doc.iter("Synonym") if (s.text or "").strip())
    pairs = []
    for qa in doc.iter("QAPair"):
        answer = (qa.findtext("Answer") or "").strip()
        question_el = qa.find("Question")
        if not answer or question_el is None:
            continue
        pairs.append(
            QAPair(
                citation_id=f"{rel}#{qa.get('pid')}",
                source=source,
                organisation=ORGANISATIONS.get(source, source),
                url=(doc.get("url") or "").strip(),
                focus=focus,
                synonyms=synonyms,
                question=" ".join((question_el.text or "").split()),
                qtype=question_el.get("qtype") or "information",
                answer=answer,
            )
        )
    return pairs


def iter_medquad(root: Path) -> Iterator[QAPair]:
    for folder in sorted(FOLDER_SOURCES):
        for path in sorted((root / folder).glob("*.xml")):
            yield from parse_file(path, root)
