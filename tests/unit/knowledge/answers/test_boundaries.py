"""The diagnosis and dosing boundaries (knowledge/answers/boundaries.yml): the same decisions as the
regular expressions they replaced in actions/knowledge.py, each boundary sourced, in linear time.

The old expressions ran on Python `re` with re.I; these run on RE2, case-insensitive. They agree
on ASCII text (checked on every evaluation and training message, and on random mixes of the
keywords); RE2's \\b counts only ASCII letters as word characters, so they differ only when an
accented letter is glued to a keyword ("édose")."""

import time

import pytest

from knowledge.answers.boundaries import Boundaries, BoundaryFileError, boundary, default_boundaries


@pytest.mark.parametrize(
    "text, expected",
    [
        # diagnosis: asking whether I have something, or how serious it is
        ("could I have diabetes?", "diagnosis"),
        ("Do I have cancer", "diagnosis"),
        ("might i have got covid", "diagnosis"),
        ("can i have an appointment on friday", "diagnosis"),  # today's behaviour, kept
        ("AM I DYING", "diagnosis"),
        ("am i sick or just tired", "diagnosis"),
        ("do i need to worry about this mole", "diagnosis"),
        ("do i need to see a doctor", "diagnosis"),
        ("is it cancer", "diagnosis"),
        ("is this a tumor", "diagnosis"),
        ("is it a tumour", "diagnosis"),
        ("is this serious", "diagnosis"),
        ("please diagnose me", "diagnosis"),
        ("diagnosis me", "diagnosis"),
        ("could i have a dose of ibuprofen", "diagnosis"),  # both: diagnosis is checked first
        ("could I\nhave diabetes", None),  # the old expression wanted a space
        ("what is diabetes", None),
        ("is it contagious", None),
        ("how do i know if i have the flu", None),
        ("diagnosed me last year", None),
        ("is it cancerous", None),
        # dosing: amounts and how often
        ("how many mg of ibuprofen", "dosing"),
        ("How much ml of calpol for a 2 year old", "dosing"),
        ("how many pills can i take", "dosing"),
        ("what's the dose", "dosing"),
        ("Dosage for tylenol", "dosing"),
        ("dosing of amoxicillin", "dosing"),
        ("is 500 mg too much", "dosing"),
        ("MG", "dosing"),
        ("overdose symptoms", "dosing"),
        ("how often should i take it", "dosing"),
        ("can i take advil with tylenol", "dosing"),
        ("i take 5mg daily", None),  # "5mg": no word edge before mg
        ("doses of vitamin d", None),
        ("how much does a visit cost", None),
        ("what are the side effects of metformin", None),
        ("i can't take it anymore", None),
        ("", None),
    ],
)
def test_boundaries_decide_as_before(text, expected):
    assert boundary(text) == expected


def test_each_boundary_has_a_reason_a_source_and_examples_that_hold():
    loaded = default_boundaries().boundaries
    assert [b.id for b in loaded] == ["diagnosis", "dosing"]
    for b in loaded:
        assert b.reason and b.sources and all(s.url.startswith("https://") for s in b.sources)
        assert b.examples["match"] and b.examples["no_match"]
        for text in b.examples["match"]:
            assert boundary(text) == b.id, text
        for text in b.examples["no_match"]:
            assert boundary(text) != b.id, text


@pytest.mark.parametrize(
    "content, error",
    [
        ("boundaries:\n  - {id: x, reason: r, sources: [], patterns: [a]}\n", "at least one source"),
        ("boundaries:\n  - {id: x, reason: r, sources: [{organisation: o}], patterns: [a]}\n", "organisation, title"),
        ("boundaries:\n  - {id: x, patterns: [a]}\n", "an id and a reason"),
        (  # RE2 has no lookarounds: refused at load, not matched by a slower engine
            "boundaries:\n  - {id: x, reason: r, sources: [{organisation: o, title: t, url: u}],"
            " patterns: ['a(?=b)']}\n",
            "x:",
        ),
        (
            "boundaries:\n"
            "  - {id: x, reason: r, sources: [{organisation: o, title: t, url: u}], patterns: [a]}\n"
            "  - {id: x, reason: r, sources: [{organisation: o, title: t, url: u}], patterns: [b]}\n",
            "used twice",
        ),
    ],
)
def test_a_broken_file_is_refused(tmp_path, content, error):
    path = tmp_path / "boundaries.yml"
    path.write_text(content)
    with pytest.raises(BoundaryFileError, match=error):
        Boundaries.load(path)


def test_a_long_hostile_message_is_decided_in_linear_time():
    text = ("do i need to " * 160)[:2000] + "!"
    start = time.perf_counter()
    assert boundary(text) is None
    # Guards against a return of backtracking (seconds), not a speed figure: that is `make bench`.
    assert time.perf_counter() - start < 0.5
