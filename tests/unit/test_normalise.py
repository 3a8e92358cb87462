import pytest

from channels.errors import InvalidMessage, MessageTooLong
from channels.pipeline import normalise_text


@pytest.mark.parametrize("raw, expected", [
    ("  hello  ", "hello"),
    ("hi\tthere   you", "hi there you"),
    ("caf\u0065\u0301", "caf\u00e9"),
    ("bad\x00byte", "badbyte"),
    ("line one\nline two", "line one\nline two"),
])
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
