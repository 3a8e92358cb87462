"""The medical vocabulary (knowledge/vocabulary.py) over the shipped terms.txt: medicines by name,
by brand and by their INN stem (names the seeds never list), conditions from MedQuAD, symptoms and
care words; everyday look-alikes left out; the words as written; linear, sub-millisecond matching;
and terms.txt as the build makes it from its sources."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from knowledge.vocabulary import (
    SEEDS_FILE,
    TERMS_FILE,
    find_terms,
    health_terms,
    load,
    medicine_names,
    mentions_medicine,
    words,
)

MEDQUAD = Path(__file__).resolve().parents[4] / "shared" / "data" / "medquad"


@pytest.mark.parametrize(
    "text, names",
    [
        ("can I take ibuprofen with my lisinopril?", ["ibuprofen", "lisinopril"]),
        ("Is it OK to give Tylenol and Motrin together", ["tylenol", "motrin"]),
        ("started on a statin and a blood thinner", ["statin", "blood thinner"]),
        ("should I get the Shingles vaccine this year", ["shingles vaccine"]),
        ("does vitamin D help with anything", ["vitamin d"]),
        # INN stems: none of these names is listed in seeds.yml
        ("my doctor switched me to perindopril", ["perindopril"]),
        ("nadolol or pitavastatin, which first", ["nadolol", "pitavastatin"]),
        ("tobramycin drops and moxifloxacin", ["tobramycin", "moxifloxacin"]),
        ("is ustekinumab an injection", ["ustekinumab"]),
        ("frovatriptan for migraines", ["frovatriptan"]),
        ("saxagliptin and ertugliflozin together", ["saxagliptin", "ertugliflozin"]),
        ("midazolam before the procedure", ["midazolam"]),
        ("vortioxetine side effects", ["vortioxetine"]),
        ("felodipine made my ankles swell", ["felodipine"]),
        # words the stems would take, and no medicine at all
        ("see you in April", []),
        ("what is cholesterol", []),
        ("the alpine spine of the mountains", []),
        ("how much is an overdraft fee", []),
    ],
)
def test_medicine_names(text, names):
    assert medicine_names(text) == names
    assert mentions_medicine(text) == bool(names)


@pytest.mark.parametrize(
    "text, mentions",
    [
        ("I ran out of my meds", True),
        ("what's the right dose for a child", True),
        ("I think it's a side effect", True),
        ("where do I get a prescription refilled", True),
        ("the shot glass broke", False),  # "shot" alone is everyday
        ("my tablet will not charge", False),
    ],
)
def test_mentions_medicine_in_general(text, mentions):
    assert mentions_medicine(text) is mentions
    assert medicine_names(text) == []


@pytest.mark.parametrize(
    "text, terms",
    [
        ("what is Marfan syndrome", ["marfan syndrome"]),  # MedQuAD focus (GHR, GARD)
        ("is myasthenia gravis inherited", ["myasthenia gravis"]),
        ("Crohn's disease flare", ["crohn's disease"]),
        ("sore throat and a rash for 3 days", ["sore throat", "rash"]),
        ("need an x-ray and a blood test", ["x-ray", "blood test"]),
        ("my 2 yo has diarhea", ["diarhea"]),  # the triage lexicon's spelling
        ("I can't breathe", ["can't breathe"]),
        # medical word endings: names the vocabulary does not list
        ("what helps plantar fasciitis", ["fasciitis"]),
        ("is costochondritis serious", ["costochondritis"]),
        ("recovery after a cholecystectomy", ["cholecystectomy"]),
        ("does hypnosis work", []),
        ("nostalgia for the 90s", []),
        # body parts and everyday words are not health on their own
        ("back up my phone", []),
        ("my back", []),
        ("this song is sick", []),
        # look-alike phrases hide their health words
        ("who plays Doctor Who", []),
        ("what caused the great depression", []),
        ("a sick playlist for the gym", []),
        ("we need a brainstorm", []),
    ],
)
def test_health_terms(text, terms):
    assert health_terms(text) == terms


def test_weak_words_are_found_but_not_health_terms():
    found = {(t.key, t.kind, t.strong) for t in find_terms("my back hurts and I am sick")}
    assert ("back", "body", False) in found
    assert ("hurt", "symptom", False) in found
    assert ("sick", "symptom", False) in found
    assert health_terms("my back hurts and I am sick") == []


def test_words_fold_case_accents_apostrophes_and_plurals():
    assert words("Can't BREATHE, niña's allergies & X-rays") == ["cant", "breathe", "nina", "allergy", "x", "ray"]


def test_the_longest_phrase_wins():
    terms = find_terms("my high blood pressure is back")
    assert [(t.text, t.kind) for t in terms] == [("high blood pressure", "condition"), ("back", "body")]


def best_of(runs: int, work) -> float:
    """The fastest of a few runs: the machine is shared, the slower runs measure the neighbours."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return min(times)


def test_matching_is_fast_and_linear():
    load()
    messages = [
        "my son has had a fever of 102 since last night and now a rash on his chest",
        "can I take ibuprofen with lisinopril and metformin for my back pain?",
        "what are the side effects of atorvastatin, is muscle pain one of them",
    ] * 100
    per_message = best_of(5, lambda: [find_terms(m) for m in messages]) / len(messages)
    assert per_message < 0.001  # under a millisecond a message

    def cost(n: int) -> float:
        text = "pain in my lisinopril hand foot and mouth aaaa " * n
        return best_of(3, lambda: find_terms(text))

    assert cost(16000) < 3 * 16 * cost(1000)  # sixteen times the text: about 16 times the time, not 256


def test_terms_file_is_well_formed():
    kinds = {"condition", "symptom", "medicine", "medicine_word", "test", "care", "body", "none"}
    for n, line in enumerate(TERMS_FILE.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("#"):
            continue
        term, kind, note = line.split("\t")
        stem = kind.startswith("suffix:")
        assert term == " ".join(words(term)) or stem, (n, line)
        assert kind in kinds | {"suffix:medicine", "suffix:condition", "not_stemmed"}, (n, line)
        assert note in ("strong", "weak", "-") or (stem and note.isdigit()), (n, line)
    seeds = yaml.safe_load(SEEDS_FILE.read_text(encoding="utf-8"))
    assert seeds["medicine_suffix"] and seeds["condition_suffix"]


@pytest.mark.skipif(not MEDQUAD.is_dir(), reason="needs the MedQuAD copy in shared/data")
def test_terms_file_is_what_the_build_makes_from_its_sources():
    from knowledge.vocabulary_build import build_terms

    built = build_terms(MEDQUAD, SEEDS_FILE)
    shipped = TERMS_FILE.read_text(encoding="utf-8").splitlines()
    assert built == shipped, "terms.txt is stale: python -m knowledge.vocabulary build --medquad ..."
