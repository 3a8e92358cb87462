from pathlib import Path

import pytest

from knowledge.answers.clinic_content import ClinicContentError, ClinicPassage, load_clinic_passages, slugify
from tests.helpers import ROOT

CLINIC_DIR = ROOT / "knowledge" / "clinic"

FRONT = """---
title: Clinic hours
topic: hours
source: Test Clinic
url: https://clinic.example/hours
updated: 2026-01-31
keywords: [hours, open]
---
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


# The real content


@pytest.fixture
def real_passages() -> list[ClinicPassage]:
    return load_clinic_passages(CLINIC_DIR)


def test_real_folder_loads(real_passages):
    assert len(real_passages) >= 60
    ids = [p.citation_id for p in real_passages]
    assert len(ids) == len(set(ids))


def test_every_real_file_has_passages_and_matching_topic(real_passages):
    files = sorted(p.name for p in CLINIC_DIR.glob("*.md") if p.name != "README.md")
    assert sorted({p.file for p in real_passages}) == files
    for p in real_passages:
        assert p.topic == p.file.removesuffix(".md")
        assert p.citation_id == f"clinic/{p.file}#{slugify(p.section)}"


def test_every_real_passage_is_complete(real_passages):
    for p in real_passages:
        assert p.url.startswith("https://"), p.citation_id
        assert p.keywords, p.citation_id
        assert p.title and p.text and p.source, p.citation_id
        assert p.updated, p.citation_id


def test_emergency_line_where_patients_may_be_at_risk(real_passages):
    by_id = {p.citation_id: p for p in real_passages}
    for cid in [
        "clinic/hours.md#after-hours-care",
        "clinic/contact.md#after-hours-nurse-line",
        "clinic/walk-ins.md#walk-in-clinic-hours",
        "clinic/walk-ins.md#what-the-walk-in-clinic-is-for",
        "clinic/holidays.md#getting-care-on-a-holiday",
    ]:
        assert "If this is an emergency, call 911." in by_id[cid].text


# Parsing


def test_parses_fields_and_sections(tmp_path):
    write(tmp_path, "hours.md", FRONT + "\n## Saturday hours\n\nOpen 9 to 1.\nClosed after.\n\n## Sunday\nClosed.\n")
    write(tmp_path, "README.md", "# Not content\n")
    write(tmp_path, "notes.txt", "ignored")
    first, second = load_clinic_passages(tmp_path)
    assert first == ClinicPassage(
        citation_id="clinic/hours.md#saturday-hours",
        title="Clinic hours",
        section="Saturday hours",
        text="Open 9 to 1.\nClosed after.",
        url="https://clinic.example/hours",
        topic="hours",
        keywords=("hours", "open"),
        updated="2026-01-31",
        source="Test Clinic",
        file="hours.md",
    )
    assert (second.citation_id, second.text) == ("clinic/hours.md#sunday", "Closed.")


def test_subheadings_stay_in_their_section(tmp_path):
    write(tmp_path, "a.md", FRONT + "## Main\n\nIntro.\n\n### Detail\n\n- item\n")
    [p] = load_clinic_passages(tmp_path)
    assert p.text == "Intro.\n\n### Detail\n\n- item"


@pytest.mark.parametrize(
    "keywords, expected",
    [
        ("[a, b c]", ("a", "b c")),
        ("a, b c ,", ("a", "b c")),
        (None, ()),
    ],
)
def test_keywords_forms(tmp_path, keywords, expected):
    line = f"keywords: {keywords}\n" if keywords is not None else ""
    write(tmp_path, "a.md", f"---\ntitle: T\ntopic: a\nsource: S\nurl: https://x.example\n{line}---\n## S\nBody.\n")
    [p] = load_clinic_passages(tmp_path)
    assert p.keywords == expected
    assert p.updated == ""


def test_passages_in_file_then_document_order(tmp_path):
    write(tmp_path, "b.md", FRONT + "## One\nx\n## Two\ny\n")
    write(tmp_path, "a.md", FRONT + "## Zed\nz\n")
    assert [p.citation_id for p in load_clinic_passages(tmp_path)] == [
        "clinic/a.md#zed",
        "clinic/b.md#one",
        "clinic/b.md#two",
    ]


def test_empty_folder_gives_no_passages(tmp_path):
    assert load_clinic_passages(tmp_path) == []


# Errors


@pytest.mark.parametrize(
    "content, reason",
    [
        ("## Hours\nOpen.\n", "missing front matter"),
        ("", "missing front matter"),
        ("---\ntitle: T\n## Hours\nOpen.\n", "no closing"),
        ("---\n---\n## Hours\nOpen.\n", "missing front matter"),
        ("---\n- a\n- b\n---\n## Hours\nOpen.\n", "field: value"),
        ("---\ntitle: [unclosed\n---\n## Hours\nOpen.\n", "not valid YAML"),
        (
            "---\ntopic: hours\nsource: S\nurl: https://x.example\n---\n## Hours\nOpen.\n",
            "missing required field(s): title",
        ),
        (
            "---\ntitle: T\nsource: S\nurl: https://x.example\n---\n## Hours\nOpen.\n",
            "missing required field(s): topic",
        ),
        ("---\ntitle: T\ntopic: hours\nsource: S\n---\n## Hours\nOpen.\n", "missing required field(s): url"),
        (
            "---\ntitle: T\ntopic: hours\nurl: https://x.example\n---\n## Hours\nOpen.\n",
            "missing required field(s): source",
        ),
        ("---\ntitle: ''\ntopic: hours\nsource: S\nurl: https://x.example\n---\n## Hours\nOpen.\n", "field(s): title"),
        ("---\ntitle: T\n---\n## Hours\nOpen.\n", "field(s): topic, url, source"),
        (FRONT + "## Hours\n\n   \n## Sunday\nClosed.\n", "section 'Hours' has an empty body"),
        (FRONT + "## Sunday\nClosed.\n## Hours\n", "section 'Hours' has an empty body"),
        (FRONT + "## Hours\nOpen.\n## Hours\nAgain.\n", "duplicate citation id 'clinic/hours.md#hours'"),
        (FRONT + "## Open hours\nOpen.\n## Open: hours!\nAgain.\n", "duplicate citation id"),
        (FRONT + "\n# Clinic hours\n## Hours\nOpen.\n", "text before the first '## ' section (line 10)"),
        (FRONT + "Intro text.\n\n## Hours\nOpen.\n", "text before the first '## ' section"),
        (FRONT + "\n\n", "no '## ' sections"),
        (FRONT + "## !!!\nOpen.\n", "has no letters or digits"),
        (FRONT.replace("keywords: [hours, open]", "keywords: {a: 1}") + "## Hours\nOpen.\n", "keywords"),
        (FRONT.replace("2026-01-31", "last week") + "## Hours\nOpen.\n", "updated must be an ISO date"),
    ],
)
def test_errors_name_the_file_and_reason(tmp_path, content, reason):
    write(tmp_path, "good.md", FRONT + "## Fine\nFine.\n")
    write(tmp_path, "hours.md", content)
    with pytest.raises(ClinicContentError) as caught:
        load_clinic_passages(tmp_path)
    err = caught.value
    assert isinstance(err, ValueError)
    assert err.file == "hours.md"
    assert reason in err.reason
    assert str(err).startswith("hours.md: ")


def test_missing_directory_is_an_error(tmp_path):
    with pytest.raises(ClinicContentError, match="not a directory"):
        load_clinic_passages(tmp_path / "absent")


# Slugs


@pytest.mark.parametrize(
    "heading, slug",
    [
        ("Saturday hours", "saturday-hours"),
        ("  Weekday hours  ", "weekday-hours"),
        ("Sign language (ASL)", "sign-language-asl"),
        ("Arrive 15 minutes early", "arrive-15-minutes-early"),
        ("Cancel -- or -- reschedule?", "cancel-or-reschedule"),
        ("What's a co-pay?", "what-s-a-co-pay"),
        ("Ayuda en español", "ayuda-en-espanol"),
        ("MyMaplewood PORTAL", "mymaplewood-portal"),
        ("!!!", ""),
        ("", ""),
    ],
)
def test_slugify(heading, slug):
    assert slugify(heading) == slug
