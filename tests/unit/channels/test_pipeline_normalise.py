import time

import pytest

from channels.errors import InvalidMessage, MessageTooLong
from channels.pipeline import normalise_text
from knowledge import messages
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
    "raw, error, detail",
    [
        (42, InvalidMessage, "text must be a string"),
        ("  ", InvalidMessage, "text must not be empty"),
        ("a" * 101, MessageTooLong, "text is longer than 100 characters"),
    ],
)
def test_what_is_wrong_is_worded_as_before_and_read_from_the_catalogue(raw, error, detail, tmp_path, monkeypatch):
    """The detail reaches patients (the web chat shows it, SMS says it in sms.unreadable)."""
    with pytest.raises(error) as caught:
        normalise_text(raw, 100)
    assert caught.value.detail == str(caught.value) == detail

    (tmp_path / "en.yml").write_text((messages.DIRECTORY / "en.yml").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "es.yml").write_text(
        'errors.text_not_a_string: "el texto debe ser texto"\n'
        'errors.text_empty: "el mensaje está vacío"\n'
        'errors.text_too_long: "el mensaje tiene más de {limit} caracteres"\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(messages, "default_catalogue", lambda: messages.Catalogue.load("es", tmp_path))
    with pytest.raises(error) as caught:
        normalise_text(raw, 100)
    assert caught.value.detail.startswith("el ") and caught.value.detail != detail


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
