import pytest

from knowledge.answers.curation import Curation, CurationReport, CurationRulesError
from knowledge.answers.medquad import QAPair, parse_file
from tests.helpers import ROOT

MEDQUAD = ROOT.parent / "shared" / "data" / "medquad"


def pair(answer="", url="http://www.nlm.nih.gov/medlineplus/gout.html", cid="4_MPlus_Health_Topics_QA/x.xml#1"):
    return QAPair(cid, "MPlusHealthTopics", "MedlinePlus", url, "Gout", (), "What is gout?", "information", answer)


def test_parse_keeps_citation_id_focus_synonyms_and_source():
    pairs = parse_file(MEDQUAD / "3_GHR_QA" / "0000804.xml", MEDQUAD)
    first = pairs[0]
    assert first.citation_id == "3_GHR_QA/0000804.xml#1"
    assert first.focus == "polycystic kidney disease"
    assert "PKD" in first.synonyms
    assert first.source == "GHR" and "MedlinePlus Genetics" in first.organisation
    assert first.qtype == "information" and first.answer.startswith("Polycystic kidney disease is")
    assert all(p.answer for p in pairs)


@pytest.mark.parametrize(
    "before, after",
    [
        (
            "call the National Suicide Prevention Lifeline at 1-800-273-TALK (8255). It is",
            "call the 988 Suicide & Crisis Lifeline at 988 (call or text). It is",
        ),
        (
            "hotline at 1-800-273-TALK (1-800-273-8255); TTY: 1-800-799-4TTY (4889) to be",
            "hotline at 988 (call or text) (TTY users: dial 711, then 988) to be",
        ),
        ("call 1-800-273-8255 now", "call 988 (call or text) now"),
        ("nothing stale here", "nothing stale here"),
    ],
)
def test_stale_crisis_line_becomes_988(before, after):
    report = CurationReport()
    (out,) = Curation.load().apply([pair(before)], report)
    assert out.answer == after
    assert "273" not in out.answer


def test_urls_move_to_medlineplus_and_report_counts():
    report = CurationReport()
    out = Curation.load().apply(
        [pair("x"), pair("x", url="http://ghr.nlm.nih.gov/condition/pkd", cid="3_GHR_QA/y.xml#1")], report
    )
    assert out[0].url == "https://medlineplus.gov/gout.html"
    assert out[1].url == "https://medlineplus.gov/genetics/condition/pkd"
    assert report.changed["medlineplus-moved"] == 1 and report.changed["ghr-moved"] == 1


def test_exclusion_and_bad_rules(tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text("exclude:\n  - citation_id: a#1\n    why: wrong\n")
    report = CurationReport()
    assert Curation.load(rules).apply([pair("x", cid="a#1"), pair("y", cid="b#1")], report)[0].citation_id == "b#1"
    assert report.excluded == ["a#1"]
    rules.write_text("text_rules:\n  - id: r\n    pattern: '('\n    replace: x\n    why: w\n    source: s\n")
    with pytest.raises(CurationRulesError, match="bad pattern"):
        Curation.load(rules)
    rules.write_text("text_rules:\n  - id: r\n    pattern: 'a'\n    replace: x\n")
    with pytest.raises(CurationRulesError, match="lacks"):
        Curation.load(rules)
