"""Make the assistant's replies right for SMS, and read what patients text back.

Plain functions only: no Twilio, no Redis; their words (the MORE prompt, "Reply 1 for ...") come from
the message catalogue (knowledge/messages/). The SMS channel calls them in this order:

    text = for_sms(reply.text)                      # plain_text, then to_gsm7
    text, options = numbered_options(text, buttons)
    parts, rest = split_for_sms(text)               # send `parts`, store `rest` for "MORE"

Why each step matters:

* One character outside the GSM-7 alphabet (a curly quote pasted from a leaflet, an en dash)
  switches the whole message to UCS-2, which cuts a segment from 160 to 70 characters and more
  than doubles the cost. `to_gsm7` replaces such characters where an equivalent exists and leaves
  the rest (emoji, other scripts) alone, so they still force UCS-2, correctly.
* SMS has no markdown, HTML or buttons: `plain_text` strips mark-up, `numbered_options` turns
  buttons into "Reply 1 for ..., 2 for ..." and `map_numbered_reply` maps the answer back.

Split choice (`split_for_sms`): every part is sent as its own SMS and must fit ONE segment of its
own encoding: at most 160 GSM-7 septets (extension characters count 2) or 70 UTF-16 code units.
The parts sent now total at most `max_send` characters (320 by default), counting the
"Reply MORE for more." line that ends the last part when text is left over. We chose single
segments over concatenated messages because a single-segment SMS needs no user data header,
so it shows correctly on every handset and carrier (some still show concatenated parts as
separate texts, out of order), and parts break at sentence ends where they can, so each reads on
its own. It makes good use of the 320-character cap: two full GSM-7 segments carry 320
characters, where a concatenated message needs 3 segments for more than 306 septets; UCS-2 is
billed per 67 units when concatenated, so 70-unit parts are no dearer. The price is sometimes
one more text when sentence breaks leave parts short. "Characters" in `max_send` are Python
characters (code points). Separate texts can in principle arrive out of order; the sender posts
them in sequence, and each part reads on its own.

`segments` reports the real count for any text, using the concatenation rules (153 septets or
67 code units per part, never splitting an escape pair or a surrogate pair).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from careline.contracts import PAGE_BREAK
from careline.gsm7 import GSM7_BASIC, GSM7_EXTENSION, JOINERS, MAX_SEND, is_gsm7, to_gsm7
from knowledge.messages import msg

# --- segments ------------------------------------------------------------------------------------
# The GSM 03.38 alphabet, to_gsm7 and MAX_SEND live in careline/gsm7.py: the safety rules' loader
# measures emergency texts with them too, and knowledge/ does not import the gateway.

GSM7_SINGLE, GSM7_PART = 160, 153  # septets: one message / each part of a concatenated one
UCS2_SINGLE, UCS2_PART = 70, 67  # UTF-16 code units, likewise

Encoding = Literal["GSM-7", "UCS-2"]


def more_prompt() -> str:
    """The line that ends the last part when text is left over ("Reply MORE for more.")."""
    return msg("sms.more_prompt")


def septets(text: str) -> int:
    """Length in GSM-7 septets: extension characters cost 2 (escape + code).

    Raises ValueError for text that is not GSM-7, because it has no septet length: it would be
    sent as UCS-2 (use `segments`).
    """
    total = 0
    for c in text:
        if c in GSM7_BASIC:
            total += 1
        elif c in GSM7_EXTENSION:
            total += 2
        else:
            raise ValueError(f"U+{ord(c):04X} is not in the GSM-7 alphabet")
    return total


def _utf16_units(c: str) -> int:
    return 2 if ord(c) > 0xFFFF else 1


def segments(text: str) -> tuple[Encoding, int]:
    """(encoding, number of segments) the text is billed and sent as.

    GSM-7: up to 160 septets is one segment; longer text is concatenated at 153 septets a part,
    and an escape pair is never split across parts. UCS-2: 70 code units single, 67 per part,
    and a character outside the BMP (most emoji, 2 code units) is never split. Empty text is 0
    segments: there is nothing to send.
    """
    if not text:
        return "GSM-7", 0
    if is_gsm7(text):
        single, per_part, cost = GSM7_SINGLE, GSM7_PART, (lambda c: 2 if c in GSM7_EXTENSION else 1)
        encoding: Encoding = "GSM-7"
    else:
        single, per_part, cost = UCS2_SINGLE, UCS2_PART, _utf16_units
        encoding = "UCS-2"
    costs = [cost(c) for c in text]
    if sum(costs) <= single:
        return encoding, 1
    count, used = 1, 0
    for n in costs:
        if used + n > per_part:
            count, used = count + 1, 0
        used += n
    return encoding, count


def _fits_one_segment(text: str) -> bool:
    if is_gsm7(text):
        return septets(text) <= GSM7_SINGLE
    return sum(_utf16_units(c) for c in text) <= UCS2_SINGLE


# --- plain_text ---------------------------------------------------------------------------------

_FENCE = re.compile(r"^[ \t]*(```|~~~).*$", re.MULTILINE)
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\(\s*([^()\s]*(?:\([^()\s]*\)[^()\s]*)*)(?:\s+\"[^\"]*\")?\s*\)")
_HTML_LINK = re.compile(r"<a\s[^>]*?href\s*=\s*[\"']([^\"']+)[\"'][^>]*>(.*?)</a\s*>", re.IGNORECASE | re.DOTALL)
_AUTOLINK = re.compile(r"<((?:https?://|mailto:)[^>\s]+)>", re.IGNORECASE)
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"]+", re.IGNORECASE)
_BREAK_TAGS = re.compile(r"<\s*(?:br|/p|/div|/li|/h[1-6]|/tr)\s*/?\s*>", re.IGNORECASE)
_LI_TAG = re.compile(r"<\s*li\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]+", re.MULTILINE)
_QUOTE = re.compile(r"^[ \t]*>[ \t]?", re.MULTILINE)
_RULE = re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$", re.MULTILINE)
_BULLET = re.compile(r"^[ \t]*[*+][ \t]+", re.MULTILINE)
_CODE = re.compile(r"`+([^`]+?)`+")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])")
_ITALIC_UNDER = re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_SPACE_RUN = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{2,}")


def _link(title: str, url: str) -> str:
    title = title.strip()
    return url if not title or title == url else f"{title}: {url}"


def plain_text(text: str) -> str:
    """Strip markdown and HTML the way a patient's phone would otherwise show them literally.

    Links become "title: url" so the address survives; URLs are protected while emphasis is
    removed, so an underscore in a URL is never taken for italics. Runs of spaces collapse to one
    and blank lines to a single line break, because every character costs on SMS.
    """
    text = _FENCE.sub("", text)
    text = _COMMENT.sub("", text)
    text = _MD_LINK.sub(lambda m: _link(m[1], m[2]), text)
    text = _HTML_LINK.sub(lambda m: _link(_TAG.sub("", m[2]), m[1]), text)
    text = _AUTOLINK.sub(lambda m: m[1], text)

    urls: list[str] = []

    def protect(m: re.Match[str]) -> str:
        url, trail = m[0], ""
        # Punctuation or mark-up right after a URL belongs to the sentence, not the address.
        while url and (url[-1] in ".,;:!?*_'`]" or (url[-1] == ")" and url.count("(") < url.count(")"))):
            url, trail = url[:-1], url[-1] + trail
        urls.append(url)
        return f"\x00{len(urls) - 1}\x00{trail}"

    text = _URL.sub(protect, text)
    text = _BREAK_TAGS.sub("\n", text)
    text = _LI_TAG.sub("\n- ", text)
    text = _TAG.sub("", text)
    text = html.unescape(text)
    text = _RULE.sub("", text)
    text = _HEADING.sub("", text)
    text = _QUOTE.sub("", text)
    text = _BULLET.sub("- ", text)
    text = _CODE.sub(r"\1", text)
    for pattern in (_BOLD, _STRIKE, _ITALIC_STAR, _ITALIC_UNDER):
        text = pattern.sub(lambda m: m[m.lastindex], text)
    text = re.sub(r"\x00(\d+)\x00", lambda m: urls[int(m[1])], text)

    lines = (_SPACE_RUN.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n", "\n".join(lines)).strip()


def for_sms(text: str) -> str:
    """Plain text in GSM-7 where possible: what every SMS reply goes through before splitting."""
    return to_gsm7(plain_text(text))


# --- split_for_sms ------------------------------------------------------------------------------

# Words ending in "." that do not end a sentence, so we do not break after "Dr." or "e.g.".
_ABBREVIATIONS = frozenset({"dr", "mr", "mrs", "ms", "st", "vs", "e.g", "i.e", "approx", "a.m", "p.m"})


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _is_sentence_end(text: str, p: int) -> bool:
    """Is there a sentence boundary just before index p (where text[p] is whitespace)?"""
    if text[p] == "\n":
        return True
    prev = text[p - 1]
    if prev in "?!":
        return True
    if prev != ".":
        return False
    before = text[: p - 1].split()
    word = before[-1].lstrip("(\"'").lower() if before else ""
    return word not in _ABBREVIATIONS


def _max_fit(text: str, pos: int, budget: int, suffix: str) -> int:
    """The largest end such that text[pos:end] + suffix fits one segment and `budget` chars."""
    s_gsm = is_gsm7(suffix)
    s_sept = septets(suffix) if s_gsm else 0
    s_units = sum(_utf16_units(c) for c in suffix)
    gsm, sept, units = s_gsm, s_sept, s_units
    end = pos
    for i in range(pos, len(text)):
        c = text[i]
        units += _utf16_units(c)
        if gsm:
            if c in GSM7_BASIC:
                sept += 1
            elif c in GSM7_EXTENSION:
                sept += 2
            else:
                gsm = False
        fits = (gsm and sept <= GSM7_SINGLE) or units <= UCS2_SINGLE
        if not fits or i + 1 - pos + len(suffix) > budget:
            break
        end = i + 1
    # Never cut between a character and the accent, joiner or skin tone that belongs to it.
    while pos < end < len(text) and (
        unicodedata.category(text[end]).startswith("M")
        or text[end] in JOINERS
        or "\U0001f3fb" <= text[end] <= "\U0001f3ff"
    ):
        end -= 1
    return end


def _take(text: str, pos: int, budget: int, suffix: str = "") -> tuple[str, int]:
    """The next part starting at pos, and where it ends; ("", pos) when nothing fits.

    Breaks at the last sentence end that fits, unless that leaves the part less than 40% as full
    as breaking at the last word would; then at a clause (", ", "; ", ": ") if that is at least
    60% as full; else between words. Never breaks inside a word (so never inside a URL) unless
    the word is too long for a whole segment by itself.
    """
    hard_end = _max_fit(text, pos, budget, suffix)
    if hard_end <= pos:
        return "", pos
    if not text[hard_end:].strip():
        return text[pos:].rstrip(), len(text)

    sentence = clause = word = None
    for p in range(pos + 1, min(hard_end + 1, len(text))):
        if text[p].isspace() and not text[p - 1].isspace():
            word = p
            if _is_sentence_end(text, p):
                sentence = p
            elif text[p - 1] in ",;:":
                clause = p
        elif text[p] == "\n":
            sentence = word = p
    if word is not None:
        full = word - pos
        end = (
            sentence
            if sentence is not None and sentence - pos >= 0.4 * full
            else clause
            if clause is not None and clause - pos >= 0.6 * full
            else word
        )
        return text[pos:end].rstrip(), end

    word_end = pos
    while word_end < len(text) and not text[word_end].isspace():
        word_end += 1
    if _fits_one_segment(text[pos:word_end]):
        return "", pos  # the word fits a fresh part: do not cut it
    return text[pos:hard_end], hard_end


_MIN_TAIL = 60


def _ends_sentence(text: str, end: int) -> bool:
    return end >= len(text) or (text[end].isspace() and _is_sentence_end(text, end))


def split_for_sms(text: str, max_send: int = MAX_SEND) -> tuple[list[str], str | None]:
    """(parts to send now, the rest or None).

    Each part is one SMS that fits a single segment of its own encoding (160 GSM-7 septets or
    70 UCS-2 code units); see the module docstring for why. The parts total at most `max_send`
    characters including the "Reply MORE for more." line, which ends the last part whenever a
    rest is returned. Breaks at sentence ends (". ", "? ", "! ", new lines), else between words.
    Run `for_sms` first: this function does not change characters.

    A PAGE_BREAK (careline.contracts) is a forced boundary: the parts end there with the prompt,
    and the rest starts after it. A page that fits goes out whole (its citation last, then the
    prompt, as a text of its own if need be); a longer one goes on in the rest like any text.
    """
    prompt = more_prompt()
    if max_send <= len(prompt) + 1:
        raise ValueError(f"max_send must be more than {len(prompt) + 1} characters")
    page, _, later = text.partition(PAGE_BREAK)
    while not page.strip() and later.strip():  # an empty page is no page
        page, _, later = later.partition(PAGE_BREAK)
    page, later = page.strip(), later.strip()
    if not later:
        return _split(page, max_send, prompt)
    parts, rest = _split(f"{page}\n{prompt}", max_send, prompt)
    if rest is None:
        return parts, later
    parts, rest = _split(page, max_send, prompt, more=True)
    return parts, PAGE_BREAK.join(p for p in (rest, later) if p)


def _split(text: str, max_send: int, prompt: str, more: bool = False) -> tuple[list[str], str | None]:
    """split_for_sms on text without page breaks; `more`: text follows it, so the prompt ends the
    parts even when all of `text` fits."""
    suffix = "\n" + prompt
    if not text:
        return [], None

    sent: list[tuple[str, int]] = []  # (part, where it starts in text)
    pos = used = 0
    while pos < len(text):
        part, end = _take(text, pos, max_send - used)
        if part and _skip_space(text, end) >= len(text) and not more:
            sent.append((part, pos))
            return [p for p, _ in sent], None
        if not part or used + len(part) + len(suffix) > max_send or _skip_space(text, end) >= len(text):
            break
        sent.append((part, pos))
        used += len(part)
        pos = _skip_space(text, end)

    # Something is left over: the last part must end with the MORE prompt. A new part in the
    # budget left is used only if it is worth a text of its own (a whole sentence, or not a
    # scrap like "Take"); otherwise the prompt goes on the last part, re-cut shorter if need be.
    part, end = _take(text, pos, max_send - used, suffix)
    if part and (not sent or _ends_sentence(text, end) or len(part) >= _MIN_TAIL):
        sent.append((part + suffix, pos))
        pos = _skip_space(text, end)
    elif sent and _fits_one_segment(sent[-1][0] + suffix):
        sent[-1] = (sent[-1][0] + suffix, sent[-1][1])
    elif sent:  # re-cut the last part shorter to make room
        last, start = sent.pop()
        used -= len(last)
        part, end = _take(text, start, max_send - used, suffix)
        if part:
            sent.append((part + suffix, start))
            pos = _skip_space(text, end)
        else:
            sent.append((prompt, start))
            pos = start
    else:  # not even the first word fits max_send
        sent.append((prompt, pos))
    return [p for p, _ in sent], text[pos:].strip() or None


# --- buttons as numbered options ----------------------------------------------------------------

_MAX_TITLE = 30


def _short_title(title: str) -> str:
    title = for_sms(title).replace("\n", " ").strip(" .!?:;,")
    if len(title) > _MAX_TITLE:
        head = title[: _MAX_TITLE + 1]
        title = (head.rsplit(" ", 1)[0] if " " in head else title[:_MAX_TITLE]).rstrip(" .!?:;,-")
    return title


def _button_field(button: Any, name: str) -> str:
    value = button.get(name) if isinstance(button, Mapping) else getattr(button, name, None)
    return "" if value is None else str(value)


def numbered_options(text: str, buttons: Iterable[Any]) -> tuple[str, dict[str, str]]:
    """Turn buttons into "Reply 1 for <title>, 2 for <title>." and a map number -> payload.

    SMS has no buttons. Buttons are {"title", "payload"} mappings or objects with those
    attributes (channels.messages.Button). Titles are made plain and cut to about 30 characters
    at a word, so the options line stays short.
    """
    options: dict[str, str] = {}
    choices: list[str] = []
    for number, button in enumerate(buttons, start=1):
        title = _short_title(_button_field(button, "title")) or msg("sms.option_untitled", number=number)
        options[str(number)] = _button_field(button, "payload")
        choices.append(msg("sms.option", number=number, title=title))
    if not choices:
        return text, {}
    line = msg("sms.options", choices=", ".join(choices))
    return (f"{text.rstrip()}\n{line}" if text.strip() else line), options


_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
}
_NUMBERED_REPLY = re.compile(
    r"^(?:(?:option|choice|number|num|no\.|#)\s*)?#?\s*(\d{1,2}|" + "|".join(_NUMBER_WORDS) + r")\s*[.)!]*$"
)


def map_numbered_reply(body: str, options: Mapping[str, str]) -> str | None:
    """The payload for a reply such as "1", " 2 ", "2.", "#2", "option 2" or "two"; else None.

    Only a message that is just the choice counts, so "I have 2 questions" is not option 2.
    """
    if not options or not body:
        return None
    m = _NUMBERED_REPLY.match(unicodedata.normalize("NFKC", body).strip().lower())
    if not m:
        return None
    key = m[1] if m[1].isdigit() else str(_NUMBER_WORDS[m[1]])
    return options.get(str(int(key)))


# --- inbound text -------------------------------------------------------------------------------

_ADDRESS_CHAR = r"[\w.%+-]"
_INNER_INVERTED = re.compile(rf"(?<={_ADDRESS_CHAR})¡(?={_ADDRESS_CHAR})")


def undo_carrier_quirks(body: str) -> str:
    """Turn "¡" back into "@" where a carrier mis-mapped it (GSM 0x00 is "@", 0x40 is "¡").

    Rule: a "¡" with address characters on both sides ("ana¡mail.com") is always "@", because
    Spanish never puts "¡" inside a word. Any other "¡" is "@" too ("text me ¡ 5pm", "¡careline")
    unless a "!" follows it later in the message: then it is the Spanish opening mark ("¡Hola!").
    """
    body = _INNER_INVERTED.sub("@", body)
    out: list[str] = []
    for i, c in enumerate(body):
        if c == "¡" and "!" not in body[i + 1 :]:
            c = "@"
        out.append(c)
    return "".join(out)


OPT_OUT_KEYWORDS = frozenset(
    {
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        # also named by the FCC's 2025 revocation rule; match the Twilio opt-out list
        "REVOKE",
        "OPTOUT",
    }
)
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})

KeywordKind = Literal["opt_out", "opt_in", "help"]


def normalise_keyword(body: str) -> str:
    """Upper case with everything but letters and digits removed: "  stop " and "S T O P." -> STOP."""
    folded = unicodedata.normalize("NFKC", body).upper()
    return "".join(c for c in folded if c.isalnum())


def keyword_kind(body: str) -> KeywordKind | None:
    """Which consent keyword the WHOLE message is, if any ("I want to stop my meds" is none).

    "YES" is an opt-in keyword only for a number that has opted out; for anyone else it is an
    answer. The caller, which knows the consent state, decides.
    """
    word = normalise_keyword(body)
    if word in OPT_OUT_KEYWORDS:
        return "opt_out"
    if word in OPT_IN_KEYWORDS:
        return "opt_in"
    if word in HELP_KEYWORDS:
        return "help"
    return None


_TEXTS = r"(?:texts?|txts?|text messages?|messages?|msgs?|sms(?:es)?|reminders?|notifications?)"
_DETERMINER = r"(?:the\s+|these\s+|those\s+|your\s+|any\s+|all\s+|this\s+)?"
_TEXTING = (
    rf"(?:texting|txting|messaging|msging|contacting|spamming"
    rf"|sending\s+(?:me\s+)?{_DETERMINER}{_TEXTS})"
)
_STOP_TEXTING = [
    # "stop texting me", "pls stop messaging me", "quit sending me texts"
    re.compile(rf"\b(?:stop|quit|cease|end)\s+(?:all\s+)?{_TEXTING}\b"),
    # "don't text me anymore", "do not message me", "never contact me again"
    re.compile(
        r"\b(?:dont|do not|never|no longer)\s+(?:ever\s+)?(?:text|txt|message|msg|sms|contact)\s+"
        r"(?:me|us|this number)\b"
    ),
    # "stop these texts", "no more messages", "i don't want any more reminders"
    re.compile(rf"\b(?:stop|no more|dont want|do not want)\s+{_DETERMINER}(?:more\s+|further\s+)?{_TEXTS}\b"),
    re.compile(r"\bunsubscribe\b|\bopt (?:me )?out\b"),
    re.compile(
        rf"\b(?:remove|take)\s+(?:me|my number|this number)\s+(?:off|from)\s+{_DETERMINER}"
        rf"(?:list|{_TEXTS})\b"
    ),
]


def asks_to_stop_texting(body: str) -> bool:
    """Does free text ask us to stop texting ("stop texting me", "unsubscribe me")?

    For messages that are not an exact keyword. "stop my medication" or "when does the clinic
    stop taking walk-ins" are not. A match should make the channel offer the STOP keyword (or
    hand to staff), not opt the patient out silently: free text is ambiguous.
    """
    text = unicodedata.normalize("NFKC", body).lower().replace("\u2019", "'")
    text = re.sub(r"\b(do|does|did|can|wo)n'?t\b", lambda m: m[1] + "nt", text).replace("'", "")
    text = re.sub(r"[^\w\s]", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return any(p.search(text) for p in _STOP_TEXTING)
