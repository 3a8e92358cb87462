import time

import pytest

from channels.errors import InvalidMessage, MessageTooLong
from channels.pipeline import normalise_text
from knowledge.triage.textmatch import load_lexicon, normalise


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  hello  ", "hello"),
        ("hi\tthere   you", "hi there you"),
        ("caf\u0065\u0301", "caf\u00e9"),
        ("bad\x00byte", "badbyte"),
        ("line one\nline two", "line one\nline two"),
    ],
)
def test_normalises(raw, expected):
    assert normalise_text(raw, 100) == expected


@pytest.mark.parametrize("raw", ["", "   ", "\x00\x01", None, 42, ["hi"], {"t": 1}])
def test_rejects_empty_or_non_text(raw):
    with pytest.raises(InvalidMessage):
        normalise_text(raw, 100)


def test_rejects_over_long():
    with pytest.raises(MessageTooLong):
        normalise_text("a" * 101, 100)
    assert normalise_text("a" * 100, 100) == "a" * 100


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("temp 38.5°C", "temperature 38.5 c"),
        ("101 degrees F", "101 f"),
        ("39 deg c since this morning", "39 c since this morning"),
        ("5 yo with fever", "5 year old with fever"),
        ("my 3 month old", "my 3 month old"),
        ("pain 8/10", "pain 8 out of 10"),
        ("58M with CP", "58 year old male with chest pain"),
        ("+SI", "positive si"),
    ],
)
def test_message_text_is_normalised_for_the_rules(raw, expected):
    assert normalise(raw, load_lexicon()) == expected


def test_normalising_a_long_run_of_spaces_and_digits_is_quick():
    start = time.perf_counter()
    normalise("1" + " " * 1998 + "x", load_lexicon())
    normalise("1 " * 1000, load_lexicon())
    assert time.perf_counter() - start < 0.5
