import random

import pytest

from careline.contracts import PAGE_BREAK
from channels.messages import Button
from channels.sms_text import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    MAX_SEND,
    asks_to_stop_texting,
    for_sms,
    is_gsm7,
    keyword_kind,
    map_numbered_reply,
    more_prompt,
    normalise_keyword,
    numbered_options,
    plain_text,
    segments,
    septets,
    split_for_sms,
    to_gsm7,
    undo_carrier_quirks,
)
from knowledge import messages

MORE_PROMPT = more_prompt()  # "Reply MORE for more." in English

URL = "https://www.nhs.uk/conditions/high-temperature-fever-in-adults/"

# About 1,000 characters of answer with curly quotes, a dash, a URL mid-text and a list.
LONG_ANSWER = (
    "A **high temperature** is usually 38°C or above. You may feel hot or shivery, and your chest "
    "or back may feel hotter than usual. Most fevers get better on their own within 3 days. "
    "Here’s what you can do at home:\n"
    "* rest and drink plenty of fluids – water is best, to avoid dehydration\n"
    "* take paracetamol or ibuprofen if you feel uncomfortable; do not take both at the same time\n"
    "* wear light clothes and keep the room cool, but don’t sleep in a cold room\n"
    f"You can read more at [the NHS fever page]({URL}) which also covers children. "
    "Call your GP or 111 if the fever lasts more than 5 days, if you feel worse, or if you have "
    "an illness that weakens your immune system, such as diabetes or a condition treated with "
    "chemotherapy. Get help straight away if you have a rash that does not fade when you press a "
    "glass against it, a stiff neck, confusion, or trouble breathing. If you are not sure what "
    "to do, reply to this message and a member of our team will get back to you as soon as they can."
)

EMOJI_ANSWER = (
    "Great news 🎉 your appointment is confirmed for Tuesday at 10:30 with Dr. Patel 👩‍⚕️. "
    "Please arrive 10 minutes early and bring your insurance card 💳 and a list of your "
    "medicines 💊. If you need to cancel, reply to this message at least 24 hours before. "
    "We look forward to seeing you 😊. Parking is free in the lot behind the clinic 🚗."
)


def one_segment(part: str) -> bool:
    return segments(part)[1] == 1


def words_of(parts: list[str], rest: str | None) -> list[str]:
    sent = " ".join(p.removesuffix("\n" + MORE_PROMPT) for p in parts)
    return (sent + " " + (rest or "")).split()


# --- GSM-7 tables, septets, segments --------------------------------------------------------------


def test_gsm_tables_are_the_full_03_38_sets():
    assert len(GSM7_BASIC) == 127  # 128 codes less the escape
    assert GSM7_EXTENSION == set("\f^{}\\[~]|€")
    for c in "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà\n\r":
        assert c in GSM7_BASIC


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello, how are you?", True),
        ("Café à 5€ [ok] {x} ~ | ^ \\", True),
        ("It’s", False),  # curly apostrophe forces UCS-2
        ("fine 👍", False),
        ("ç", False),  # only the capital Ç is in the basic set
        ("`", False),
        ("", True),
    ],
)
def test_is_gsm7(text, expected):
    assert is_gsm7(text) is expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", 0),
        ("abc", 3),
        ("€", 2),
        ("a{b}c", 7),
        ("^{}\\[~]|€", 18),
        ("@£\n", 3),
    ],
)
def test_septets_count_extension_characters_twice(text, expected):
    assert septets(text) == expected


def test_septets_refuses_text_that_is_not_gsm7():
    with pytest.raises(ValueError):
        septets("hi 😀")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", ("GSM-7", 0)),
        ("a" * 160, ("GSM-7", 1)),
        ("a" * 161, ("GSM-7", 2)),
        ("a" * 306, ("GSM-7", 2)),
        ("a" * 307, ("GSM-7", 3)),
        ("€" * 80, ("GSM-7", 1)),  # 160 septets
        ("a" * 159 + "€", ("GSM-7", 2)),  # 161 septets
        ("a" * 152 + "€" + "a" * 152, ("GSM-7", 3)),  # 306 septets, but ESC+€ may not straddle parts
        ("ą" * 70, ("UCS-2", 1)),
        ("ą" * 71, ("UCS-2", 2)),
        ("ą" * 134, ("UCS-2", 2)),
        ("ą" * 135, ("UCS-2", 3)),
        ("😀" * 35, ("UCS-2", 1)),  # 70 code units
        ("😀" * 36, ("UCS-2", 2)),
        ("ą" * 66 + "😀" + "ą" * 66, ("UCS-2", 3)),  # 134 units, but the emoji may not be split
        ("a" * 159 + "’", ("UCS-2", 3)),  # one curly quote: 160 chars at 67 a part
    ],
)
def test_segments(text, expected):
    assert segments(text) == expected


# --- to_gsm7 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("It’s ‘fine’", "It's 'fine'"),
        ("“Quoted” „low“ «guillemets»", '"Quoted" "low" "guillemets"'),
        ("9–5 — or − 3 ‐ x", "9-5 - or - 3 - x"),
        ("Wait…", "Wait..."),
        ("a\u00a0b\u2009c\u202fd\u3000e\u2007f\tg", "a b c d e f g"),
        ("• one\n◦ two\n▪ three", "- one\n- two\n- three"),
        ("á í ó ú â ê õ ç Á Í È Ê Ó Ú", "a i o u a e o c A I E E O U"),
        ("é è ù ì ò à ä ö ñ ü Ä Ö Ñ Ü É Å å Æ æ ß Ø ø Ç", "é è ù ì ò à ä ö ñ ü Ä Ö Ñ Ü É Å å Æ æ ß Ø ø Ç"),
        ("e\u0301 n\u0303 a\u0301", "é ñ a"),  # decomposed accents compose or drop
        ("zero\u200bwidth\ufeff\u2060 \u200ejoin", "zerowidth join"),
        ("soft\u00adhyphen", "softhyphen"),
        ("38°C, 100.4 °F, 90°.", "38 deg C, 100.4 deg F, 90 deg."),
        ("39℃", "39 deg C"),
        ("CareLine™ Brand® ©2024", "CareLine(TM) Brand(R) (C)2024"),
        ("A → B ← C ⇒ D", "A -> B <- C => D"),
        ("≤ 5, ≥ 2, ± 1, 2×3, ½ tab", "<= 5, >= 2, +/- 1, 2x3, 1/2 tab"),
        ("500 µg", "500 mcg"),
        ("ﬁve m² Ｈｉ", "five m2 Hi"),
        ("`code`", "'code'"),
        ("œdema Łódź", "oedema Lodz"),
        ("€10 [a] {b} ~c ^d |e \\f", "€10 [a] {b} ~c ^d |e \\f"),  # extension characters stay
    ],
)
def test_to_gsm7_replaces_what_has_an_equivalent(raw, expected):
    assert to_gsm7(raw) == expected
    assert is_gsm7(to_gsm7(raw))


@pytest.mark.parametrize(
    "raw",
    [
        "See you soon 😊",
        "Family 👨\u200d👩\u200d👧 ok",  # the joiners hold the emoji together
        "I ❤\ufe0f it",
        "Keycap 1\ufe0f\u20e3",
        "Thumbs 👍🏽",
        "Привет",
        "你好",
        "Δ is GSM but δ is not",
    ],
)
def test_to_gsm7_keeps_what_has_no_equivalent(raw):
    assert to_gsm7(raw) == raw
    assert not is_gsm7(to_gsm7(raw))


@pytest.mark.parametrize("raw", [LONG_ANSWER, EMOJI_ANSWER, "38°C – ‘ok’ 👨\u200d👩 1\ufe0f\u20e3 µg"])
def test_to_gsm7_is_idempotent(raw):
    # The SMS channel converts the whole reply, then each part again before sending.
    once = to_gsm7(raw)
    assert to_gsm7(once) == once


def test_to_gsm7_drops_joiners_between_plain_text_only():
    assert to_gsm7("a\u200db") == "ab"
    assert to_gsm7("©\ufe0f 2024") == "(C) 2024"


# --- plain_text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("**Bold** and __bold__", "Bold and bold"),
        ("*italic* and _italic_", "italic and italic"),
        ("Run `make up` now", "Run make up now"),
        ("# Heading\nText", "Heading\nText"),
        ("### Deep heading", "Deep heading"),
        ("#2 is not a heading", "#2 is not a heading"),
        ("See [the NHS page](https://www.nhs.uk/a_b) today", "See the NHS page: https://www.nhs.uk/a_b today"),
        ("[https://x.org](https://x.org)", "https://x.org"),
        (
            "[Fever](https://en.wikipedia.org/wiki/Fever_(disambiguation))",
            "Fever: https://en.wikipedia.org/wiki/Fever_(disambiguation)",
        ),
        ("<p>Hello <b>there</b></p><p>Next</p>", "Hello there\nNext"),
        (
            'Visit <a href="https://careline.example/book">our booking page</a>.',
            "Visit our booking page: https://careline.example/book.",
        ),
        ("Fish &amp; chips &lt;3", "Fish & chips <3"),
        ("Go to <https://x.org/path_with_underscores_>", "Go to https://x.org/path_with_underscores_"),
        ("https://x.org/snake_case_path and _this_", "https://x.org/snake_case_path and this"),
        ("**Read https://x.org/a**", "Read https://x.org/a"),
        ("keep snake_case_words and 2 * 3 * 4", "keep snake_case_words and 2 * 3 * 4"),
        ("* one\n+ two\n- three", "- one\n- two\n- three"),
        ("> quoted line", "quoted line"),
        ("a   b \t c\n\n\n\nd  ", "a b c\nd"),
        ("```\ncode block\n```", "code block"),
        ("above\n---\nbelow", "above\nbelow"),
        ("x < y and y > z", "x < y and y > z"),
    ],
)
def test_plain_text(raw, expected):
    assert plain_text(raw) == expected


def test_for_sms_is_plain_then_gsm7():
    assert for_sms("**It’s** 38°C – see [page](https://x.org)") == "It's 38 deg C - see page: https://x.org"


# --- split_for_sms -----------------------------------------------------------------------------------


def test_split_short_text_is_one_part():
    assert split_for_sms("  Your appointment is at 10:30.  ") == (["Your appointment is at 10:30."], None)


def test_split_empty_text():
    assert split_for_sms("   ") == ([], None)


def test_exactly_160_gsm_characters_is_one_part():
    text = ("x" * 9 + " ") * 15 + "y" * 10
    assert len(text) == 160
    assert split_for_sms(text) == ([text], None)


def test_161_gsm_characters_are_two_parts_and_nothing_left():
    text = ("x" * 9 + " ") * 16 + "y"
    assert len(text) == 161
    parts, rest = split_for_sms(text)
    assert rest is None and len(parts) == 2
    assert all(one_segment(p) and is_gsm7(p) for p in parts)
    assert " ".join(parts) == text


def test_160_characters_with_one_extension_character_is_two_parts():
    text = "Costs €5. " + "x" * 150
    assert len(text) == 160 and septets(text) == 161
    parts, rest = split_for_sms(text)
    assert parts == ["Costs €5.", "x" * 150] and rest is None


def test_long_answer_is_cut_with_more_and_the_rest_returned():
    text = for_sms(LONG_ANSWER)
    assert 950 <= len(text) <= 1100 and is_gsm7(text)
    parts, rest = split_for_sms(text)
    assert rest and len(parts) >= 2
    assert sum(len(p) for p in parts) <= 320
    assert all(one_segment(p) for p in parts)
    assert all(segments(p)[0] == "GSM-7" for p in parts)
    assert parts[-1].endswith("\n" + MORE_PROMPT)
    assert words_of(parts, rest) == text.split()
    assert URL in " ".join(parts) + " " + rest  # the URL is whole, wherever it landed


def test_rest_of_long_answer_splits_again_until_done():
    text, rounds, words = for_sms(LONG_ANSWER), 0, []
    rest: str | None = text
    while rest:
        parts, rest = split_for_sms(rest)
        rounds += 1
        assert all(one_segment(p) for p in parts) and sum(len(p) for p in parts) <= 320
        assert parts[-1].endswith(MORE_PROMPT) == (rest is not None)
        words += " ".join(p.removesuffix("\n" + MORE_PROMPT) for p in parts).split()
    assert rounds == 4 and words == text.split()


def test_unconverted_answer_is_ucs2_and_still_fits():
    parts, rest = split_for_sms(plain_text(LONG_ANSWER))  # curly quotes left in: UCS-2 parts
    assert rest and sum(len(p) for p in parts) <= 320
    assert all(one_segment(p) for p in parts)
    assert "UCS-2" in {segments(p)[0] for p in parts}


def test_emoji_answer_parts_fit_ucs2_segments():
    parts, rest = split_for_sms(EMOJI_ANSWER)
    assert all(one_segment(p) for p in parts)
    assert all(segments(p)[0] == "UCS-2" for p in parts if not is_gsm7(p))
    assert all(len(p) <= 70 for p in parts if not is_gsm7(p))
    assert sum(len(p) for p in parts) <= 320
    assert parts[-1].endswith(MORE_PROMPT) and rest
    assert words_of(parts, rest) == EMOJI_ANSWER.split()
    assert "👩‍⚕️" in " ".join(parts) + (rest or "")  # the ZWJ sequence is not cut apart


def test_gsm_part_beside_emoji_part_keeps_its_own_encoding():
    text = "Your results are ready and look normal, nothing to worry about. " * 2 + "Well done 🎉"
    parts, rest = split_for_sms(text)
    assert rest is None
    assert [segments(p)[0] for p in parts] == ["GSM-7", "UCS-2"]


def test_split_prefers_sentence_ends():
    first = "Take one tablet every morning with food."
    second = "If you feel dizzy, sit down and call us, or call 111 out of hours, " + "and rest. " * 9
    parts, rest = split_for_sms(f"{first} {second.strip()}")
    assert parts[0].startswith(first) and parts[0].endswith(".")
    assert rest is None


def test_split_does_not_break_after_abbreviation():
    text = "Please see Dr. Patel on Monday. " + "Bring your medicines and your card. " * 8
    parts, _ = split_for_sms(text)
    assert not parts[0].endswith("Dr.")


@pytest.mark.parametrize("prefix_words", [20, 22, 24, 26, 28])
def test_split_never_cuts_a_url(prefix_words):
    text = "word " * prefix_words + URL + " and more words after it. " * 3
    parts, rest = split_for_sms(text)
    assert any(URL in p for p in parts) or URL in (rest or "")
    assert words_of(parts, rest) == text.split()  # parts are joined by spaces: a cut URL fails


def test_url_at_the_budget_edge_goes_to_the_rest_whole():
    text = "Most fevers pass in 3 days. " * 9 + "Read more: " + URL + " today."
    parts, rest = split_for_sms(text)
    assert rest and URL in rest and not any("https" in p for p in parts)


def test_a_list_item_is_not_broken_when_a_line_break_is_near():
    text = for_sms(LONG_ANSWER)
    _, rest = split_for_sms(text)
    parts, _ = split_for_sms(rest)
    assert parts[:3] == [
        "- rest and drink plenty of fluids - water is best, to avoid dehydration",
        "- take paracetamol or ibuprofen if you feel uncomfortable; do not take both at the same time",
        "- wear light clothes and keep the room cool, but don't sleep in a cold room",
    ]


def test_a_word_longer_than_a_part_is_cut():
    text = "Link: https://example.org/" + "a" * 300
    parts, rest = split_for_sms(text)
    assert all(one_segment(p) for p in parts)
    joined = "".join(p.removesuffix("\n" + MORE_PROMPT) for p in parts)
    assert (joined.replace(" ", "") + (rest or "")).replace(" ", "") == text.replace(" ", "")


def test_extension_characters_count_double_when_splitting():
    text = " ".join(["{x}"] * 60)  # 239 characters, 359 septets
    parts, rest = split_for_sms(text, max_send=1000)
    assert rest is None and all(septets(p) <= 160 for p in parts)
    assert max(septets(p) for p in parts) > 150
    assert " ".join(parts) == text


@pytest.mark.parametrize("max_send", [40, 100, 160, 200, 320, 500])
@pytest.mark.parametrize("text", [LONG_ANSWER, EMOJI_ANSWER, for_sms(LONG_ANSWER)])
def test_split_holds_its_promises_for_any_budget(max_send, text):
    parts, rest = split_for_sms(text, max_send=max_send)
    assert sum(len(p) for p in parts) <= max_send
    assert all(one_segment(p) for p in parts)
    if rest:
        assert parts[-1].endswith(MORE_PROMPT)
    assert words_of(parts, rest) == text.split()


def test_split_refuses_a_budget_too_small_for_the_prompt():
    with pytest.raises(ValueError):
        split_for_sms("hello", max_send=21)


# --- numbered options ----------------------------------------------------------------------------------


def test_numbered_options_from_dicts():
    text, options = numbered_options(
        "Do you want to book?",
        [
            {"title": "Yes, book it", "payload": "/affirm"},
            {"title": "No thanks", "payload": "/deny"},
        ],
    )
    assert text == "Do you want to book?\nReply 1 for Yes, book it, 2 for No thanks."
    assert options == {"1": "/affirm", "2": "/deny"}


def test_numbered_options_from_buttons_with_long_and_fancy_titles():
    text, options = numbered_options(
        "Pick one:",
        [
            Button("**Book** an appointment with a nurse practitioner today", '/book{"who":"np"}'),
            Button("Talk to staff 💬", "/handoff"),
            Button("", "/other"),
        ],
    )
    line = text.splitlines()[-1]
    assert line == "Reply 1 for Book an appointment with a, 2 for Talk to staff 💬, 3 for option 3."
    assert options == {"1": '/book{"who":"np"}', "2": "/handoff", "3": "/other"}


def test_numbered_options_without_buttons_changes_nothing():
    assert numbered_options("Hello", []) == ("Hello", {})


OPTIONS = {"1": "/affirm", "2": "/deny", "3": "/handoff"}


@pytest.mark.parametrize(
    "body, expected",
    [
        ("1", "/affirm"),
        (" 2 ", "/deny"),
        ("2.", "/deny"),
        ("#2", "/deny"),
        ("option 2", "/deny"),
        ("Option #3", "/handoff"),
        ("two", "/deny"),
        ("THREE!", "/handoff"),
        ("2)", "/deny"),
        ("０２", "/deny"),  # full-width digits from some keyboards
        ("4", None),
        ("0", None),
        ("I have 2 questions", None),
        ("yes", None),
        ("", None),
    ],
)
def test_map_numbered_reply(body, expected):
    assert map_numbered_reply(body, OPTIONS) == expected


def test_map_numbered_reply_without_options():
    assert map_numbered_reply("1", {}) is None


# --- inbound quirks and keywords --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, expected",
    [
        ("my email is ana¡example.com", "my email is ana@example.com"),
        ("j.doe+clinic¡mail.co.uk", "j.doe+clinic@mail.co.uk"),
        ("follow ¡careline", "follow @careline"),
        ("see you ¡ 5pm", "see you @ 5pm"),
        ("¡Hola! Necesito una cita", "¡Hola! Necesito una cita"),
        ("¡Gracias! mi correo es ana¡mail.com", "¡Gracias! mi correo es ana@mail.com"),
        ("no quirks here", "no quirks here"),
    ],
)
def test_undo_carrier_quirks(body, expected):
    assert undo_carrier_quirks(body) == expected


@pytest.mark.parametrize(
    "body, expected",
    [
        ("  stop ", "STOP"),
        ("Stop.", "STOP"),
        ("S T O P", "STOP"),
        ("stop all", "STOPALL"),
        ("Opt-out!", "OPTOUT"),
        ("ＳＴＯＰ", "STOP"),
    ],
)
def test_normalise_keyword(body, expected):
    assert normalise_keyword(body) == expected


@pytest.mark.parametrize(
    "body, expected",
    [
        ("STOP", "opt_out"),
        ("stop", "opt_out"),
        ("Stop.", "opt_out"),
        ("stop all", "opt_out"),
        ("Unsubscribe", "opt_out"),
        ("cancel", "opt_out"),
        ("END", "opt_out"),
        ("quit!", "opt_out"),
        ("revoke", "opt_out"),
        ("opt out", "opt_out"),
        ("start", "opt_in"),
        ("UNSTOP", "opt_in"),
        ("Yes", "opt_in"),
        ("help", "help"),
        ("Info?", "help"),
        ("I want to stop my medication", None),
        ("cancel my appointment", None),
        ("help me please", None),
        ("", None),
    ],
)
def test_keyword_kind_matches_the_whole_message_only(body, expected):
    assert keyword_kind(body) == expected


@pytest.mark.parametrize(
    "body, expected",
    [
        ("stop texting me", True),
        ("pls stop messaging me", True),
        ("dont text me anymore", True),
        ("Don’t text me again", True),
        ("do not contact me", True),
        ("unsubscribe me", True),
        ("please stop sending me these texts", True),
        ("no more messages please", True),
        ("I don't want any more reminders", True),
        ("remove me from your list", True),
        ("STOP TEXTING ME!!", True),
        ("stop my medication", False),
        ("when does the clinic stop taking walk-ins", False),
        ("can you text me the address", False),
        ("I stopped taking the pills", False),
        ("should I stop ibuprofen before surgery?", False),
        ("text me when the results are in", False),
    ],
)
def test_asks_to_stop_texting(body, expected):
    assert asks_to_stop_texting(body) is expected


# --- split_for_sms and the page break between an SMS answer's pages (channels/paging.py) ------------

GOUT_CITE = 'Source: MedlinePlus, "Gout" https://medlineplus.gov/gout.html'
PAGE_CHARS = MAX_SEND - len("\n" + MORE_PROMPT)  # what channels/paging.py lets a page hold


def test_a_page_break_ends_the_parts_with_the_prompt():
    assert split_for_sms("Page one.\fPage two.\fPage three.") == (
        [f"Page one.\n{MORE_PROMPT}"],
        "Page two.\fPage three.",
    )
    assert split_for_sms("Page three.") == (["Page three."], None)
    assert split_for_sms("\f\fPage one.\f\fPage two.") == ([f"Page one.\n{MORE_PROMPT}"], "Page two.")
    assert split_for_sms("Last page.\f  ") == (["Last page."], None)


def test_a_full_page_goes_out_whole_with_the_prompt_as_a_text_of_its_own_if_need_be():
    # the last part is too long to take the prompt too: the page is not cut, the prompt follows it
    page = "Gout " * 27 + "ends here.\n" + "and more words " * 5 + "then the end\n" + GOUT_CITE
    assert len(page) <= PAGE_CHARS
    parts, rest = split_for_sms(f"{page}\fnext")
    assert rest == "next" and parts[-1] == MORE_PROMPT
    assert " ".join(parts[:-1]).split() == page.split()


def test_a_page_longer_than_a_turn_goes_on_in_the_rest_before_the_next_page():
    long_page = "Fevers are common. " * 30
    parts, rest = split_for_sms(f"{long_page}\fPage two.")
    assert sum(len(p) for p in parts) <= MAX_SEND and parts[-1].endswith(MORE_PROMPT)
    left, _, after = rest.partition(PAGE_BREAK)
    assert after == "Page two." and left.startswith("Fevers are common.")
    sent = " ".join(p.removesuffix("\n" + MORE_PROMPT) for p in parts)
    assert (sent + " " + left).split() == long_page.split()


# --- emergency texts go out whole (knowledge/triage/redflags.py refuses longer ones at load) -----


def test_a_text_under_max_send_can_still_be_cut_so_emergency_texts_keep_the_prompts_room():
    from knowledge.triage.redflags import sms_whole_limit

    first = ("Call 911 now and stay with them. " * 5)[:150].rstrip() + "."
    second = ("Keep them still and warm please. " * 5)[:150].rstrip() + "."
    text = f"{first} {second} Staff alerted."
    assert len(text) <= MAX_SEND and split_for_sms(text)[1] is not None  # 318 characters, cut
    rng = random.Random(10)
    words = "call 911 now stay with them the a breathing seizure warm still our staff have been alerted".split()
    for _ in range(3000):  # texts up to the limit, broken into sentences every way: never cut
        text, limit = "", rng.randint(sms_whole_limit() - 40, sms_whole_limit())
        while True:
            sentence = " ".join(rng.choice(words) for _ in range(rng.randint(1, 30))).capitalize() + "."
            if len(f"{text} {sentence}".strip()) > limit:
                break
            text = f"{text} {sentence}".strip()
        assert split_for_sms(text)[1] is None, text


@pytest.mark.parametrize("language", sorted(p.stem for p in messages.DIRECTORY.glob("*.yml")))
def test_every_catalogues_emergency_sms_goes_out_whole(language, monkeypatch):
    from knowledge.triage.redflags import with_crisis_line

    catalogue = messages.Catalogue.load(language)
    monkeypatch.setattr(messages, "default_catalogue", lambda: catalogue)  # its MORE prompt too
    crisis = catalogue.text("safety.crisis_too.sms")
    ids = [i for i in catalogue.texts if i.startswith("safety.") and i.endswith(".sms")]
    assert len(ids) > 20
    for message_id in ids:
        text = for_sms(with_crisis_line(catalogue.text(message_id), crisis))
        parts, rest = split_for_sms(text)
        assert rest is None and MORE_PROMPT not in parts[-1], message_id
