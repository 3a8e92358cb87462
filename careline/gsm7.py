"""GSM-7, the SMS alphabet (GSM 03.38), the conversion to it, and the most one SMS turn sends:
what the SMS channel (channels/sms_text.py) and the safety rules' loader (knowledge/triage/
redflags.py, which refuses an emergency SMS text that would not go out whole) both need. Here
rather than in channels/ because knowledge/ must not import the gateway. Pure functions, no I/O.
"""

from __future__ import annotations

import re
import unicodedata

# The most characters one SMS turn sends, the MORE prompt included: two full GSM-7 segments
# (channels/sms_text.split_for_sms).
MAX_SEND = 320

# --- GSM 03.38 (3GPP TS 23.038) ---------------------------------------------------------------

# The basic character set in code order, 0x00-0x7F. 0x1B is the escape to the extension table,
# not a character, so it is left out of GSM7_BASIC below.
_GSM7_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(_GSM7_BASIC_TABLE) == 128
GSM7_BASIC: frozenset[str] = frozenset(_GSM7_BASIC_TABLE) - {"\x1b"}

# The extension table: each is sent as ESC + code, so it costs 2 septets.
GSM7_EXTENSION_TABLE: dict[int, str] = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
GSM7_EXTENSION: frozenset[str] = frozenset(GSM7_EXTENSION_TABLE.values())


def is_gsm_char(c: str) -> bool:
    return c in GSM7_BASIC or c in GSM7_EXTENSION


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM-7 basic or extension table (so no UCS-2)."""
    return all(is_gsm_char(c) for c in text)


# --- to_gsm7 ------------------------------------------------------------------------------------

# Characters with a GSM-7 equivalent that Unicode decomposition does not find (or finds wrongly).
_GSM_EQUIVALENTS: dict[str, str] = {
    # quotes and apostrophes; the backtick and acute accent are not in GSM-7 either
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",
    "`": "'",
    "\u00b4": "'",
    "\u02bc": "'",
    "\u2039": "'",
    "\u203a": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u201f": '"',
    "\u2033": '"',
    "\u00ab": '"',
    "\u00bb": '"',
    # dashes and minus
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u2015": "-",
    "\u2212": "-",
    "\ufe58": "-",
    "\ufe63": "-",
    "\uff0d": "-",
    "\u00ad": "",
    "\u2026": "...",
    # bullets
    "\u2022": "-",
    "\u2023": "-",
    "\u25e6": "-",
    "\u2043": "-",
    "\u2219": "-",
    "\u25cf": "-",
    "\u25aa": "-",
    "\u25a0": "-",
    "\u00b7": "-",
    "\u2027": "-",
    # symbols
    "\u2122": "(TM)",
    "\u00ae": "(R)",
    "\u00a9": "(C)",
    "\u2192": "->",
    "\u27f6": "->",
    "\u2190": "<-",
    "\u27f5": "<-",
    "\u2194": "<->",
    "\u21d2": "=>",
    "\u2264": "<=",
    "\u2265": ">=",
    "\u2260": "!=",
    "\u00b1": "+/-",
    "\u00d7": "x",
    "\u00f7": "/",
    "\u2044": "/",
    "\u00bd": "1/2",
    "\u00bc": "1/4",
    "\u00be": "3/4",
    "\u2153": "1/3",
    "\u2154": "2/3",
    "\u00b5": "u",
    "\u03bc": "u",
    # letters with no decomposition
    "\u0153": "oe",
    "\u0152": "OE",
    "\u0142": "l",
    "\u0141": "L",
    "\u0111": "d",
    "\u0110": "D",
    "\u0131": "i",
    "\u00f0": "d",
    "\u00fe": "th",
    "\u00de": "Th",
    # lower-case c cedilla: only the capital is in GSM-7 and a capital mid-word reads oddly
    "\u00e7": "c",
    # line and paragraph separators, tab
    "\u2028": "\n",
    "\u2029": "\n",
    "\t": " ",
}
# Invisible characters that only steer layout; dropped everywhere.
_INVISIBLE = frozenset("\u200b\u2060\ufeff\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u180e")
# Joiners and variation selectors glue emoji sequences together: dropped only between GSM text.
JOINERS = frozenset("\u200c\u200d\ufe0e\ufe0f")

_MICROGRAM = re.compile(r"[\u00b5\u03bc]g\b")  # "µg" is written "mcg" in clinical use
_DEGREE = re.compile(r"[ \u00a0]*\u00b0[ \u00a0]*")
_DEG_BEFORE_END = re.compile(r" deg (?=[\s.,;:!?)\]]|$)")


def _strip_marks(text: str, form: str) -> str:
    decomposed = unicodedata.normalize(form, text)
    return "".join(c for c in decomposed if not unicodedata.category(c).startswith("M"))


def _gsm_equivalent(c: str) -> str:
    if c in _GSM_EQUIVALENTS:
        return _GSM_EQUIVALENTS[c]
    if unicodedata.category(c) == "Zs":  # no-break, thin, figure, ideographic ... spaces
        return " "
    for form in ("NFD", "NFKD"):  # á -> a, È -> E, ﬁ -> fi, ² -> 2, Ａ -> A
        plain = _strip_marks(c, form)
        if plain and is_gsm7(plain):
            return plain
    return c  # no equivalent: it forces UCS-2, correctly


def to_gsm7(text: str) -> str:
    """Replace characters that would force UCS-2 by a GSM-7 equivalent where one exists.

    Accented letters that are in GSM-7 (é è ù ì ò à ä ö ñ ü Ä Ö Ñ Ü É Å å Æ æ ß Ø ø Ç) are kept;
    others lose their accent. Emoji and letters of other scripts are kept as they are, because
    dropping them would change the meaning; they make the message UCS-2.
    """
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\u2103", "\u00b0C").replace("\u2109", "\u00b0F")
    text = _MICROGRAM.sub("mcg", text)
    text = _DEG_BEFORE_END.sub(" deg", _DEGREE.sub(" deg ", text))  # 38°C -> 38 deg C

    out: list[str] = []
    for i, c in enumerate(text):
        if c in _INVISIBLE:
            continue
        prev_gsm = not out or is_gsm7(out[-1])
        if c in JOINERS:
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if prev_gsm and (not nxt or is_gsm_char(nxt) or nxt in _GSM_EQUIVALENTS):
                continue
            out.append(c)
        elif unicodedata.category(c).startswith("M") and prev_gsm:
            continue  # an accent NFC could not compose onto a GSM letter
        elif is_gsm_char(c):
            out.append(c)
        else:
            out.append(_gsm_equivalent(c))
    return "".join(out)
