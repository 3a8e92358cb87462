"""SMS paging in the gateway: pages from the knowledge action go out one a turn, each whole with
its citation and the MORE prompt while pages remain; MORE sends the next; any other reply replaces
what was kept. Redis is a dict here (the real one: tests/integration/channels/test_sms_channel.py)."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from careline.contracts import PAGE_BREAK, PAGE_CHARS_KEY
from channels.crypto import Cipher
from channels.messages import Button, InboundMessage, OutboundMessage
from channels.paging import (
    Pager,
    arrange,
    asks_for_more,
    first_page,
    handle_sms_rendered,
    page_chars,
    sms_metadata,
)
from channels.pipeline import HandleResult
from channels.sms_text import MAX_SEND, for_sms, more_prompt, segments
from channels.store import Owner
from knowledge.answers.answer import render
from knowledge.answers.retrieval import Hit

PROMPT = more_prompt()
CITE = 'Source: MedlinePlus, "Gout" https://medlineplus.gov/gout.html'
LONG = " ".join(f"Sentence number {i} explains one more thing about gout and its care." for i in range(40))


class DictRedis:
    def __init__(self, fail: bool = False):
        self.data: dict[str, bytes] = {}
        self.fail = fail

    def _check(self):
        if self.fail:
            raise RedisConnectionError("down")

    async def get(self, key):
        self._check()
        return self.data.get(key)

    async def set(self, key, value, ex=None):
        self._check()
        self.data[key] = value.encode() if isinstance(value, str) else value

    async def delete(self, key):
        self._check()
        self.data.pop(key, None)


def pages() -> str:
    hit = Hit(
        "4_MPlus_Health_Topics_QA/0000411.xml#1~0",
        "4_MPlus_Health_Topics_QA/0000411.xml#1",
        0.9,
        {
            "organisation": "MedlinePlus, National Library of Medicine (NIH)",
            "title": "Gout",
            "url": "https://medlineplus.gov/gout.html",
        },
        LONG,
    )
    r = render(hit, "sms", page_chars())
    return PAGE_BREAK.join([r.first, *r.rest])


@pytest.fixture
def pager():
    return Pager(DictRedis(), Cipher(None), "t")


def test_the_page_size_leaves_room_for_the_prompt():
    assert page_chars() + len("\n" + PROMPT) == MAX_SEND == 320
    assert sms_metadata() == {"format": "sms", PAGE_CHARS_KEY: page_chars()}


@pytest.mark.parametrize(
    "text, more",
    [
        ("MORE", True),
        (" more. ", True),
        ("More!", True),
        ("more please", False),  # the assistant's NLU reads it; its action asks for the next page
        ("tell me more", False),
        ("more pain in my chest", False),
        ("", False),
    ],
)
def test_the_more_keyword(text, more):
    assert asks_for_more(text) is more


async def test_sms_pages_go_out_one_a_turn_each_whole_with_its_citation(pager):
    text = PAGE_BREAK.join(for_sms(page) for page in pages().split(PAGE_BREAK))  # as the SMS channel does
    turns = [await pager.sms_parts("c", text)]
    while (parts := await pager.sms_more("c")) is not None:
        turns.append(parts)
    assert len(turns) == text.count(PAGE_BREAK) + 1 > 2
    for n, parts in enumerate(turns):
        assert sum(len(p) for p in parts) <= MAX_SEND and all(segments(p)[1] == 1 for p in parts)
        sent = "\n".join(parts)
        assert CITE in sent and PAGE_BREAK not in sent
        assert sent.endswith(PROMPT) == (n < len(turns) - 1)
    shown = " ".join(" ".join(parts) for parts in turns)
    assert "Sentence number 0 " in shown and "Sentence number 39 " in shown
    assert await pager.sms_more("c") is None  # nothing kept after the last page


async def test_the_rest_is_kept_encrypted_and_any_other_reply_replaces_it(pager):
    await pager.sms_parts("c", pages())
    kept = pager.redis.data[pager.key("c")]
    assert b"Sentence" not in kept and "Sentence" in pager.cipher.decrypt(kept)
    assert await pager.sms_parts("c", "Hello! How can I help?") == ["Hello! How can I help?"]
    assert pager.key("c") not in pager.redis.data and await pager.sms_more("c") is None


async def test_a_store_that_fails_costs_more_not_the_reply():
    pager = Pager(DictRedis(fail=True), Cipher(None), "t")
    parts = await pager.sms_parts("c", pages())
    assert parts and parts[-1].endswith(PROMPT)
    assert await pager.sms_more("c") is None


def test_arrange_puts_every_first_page_first():
    assert arrange(["a\fb\fc", "caution", ""]) == "a\n\ncaution\fb\fc"
    assert arrange(["Hi.", "How can I help?"]) == "Hi.\n\nHow can I help?"  # as the SMS channel joined them
    assert arrange([]) == ""


def test_first_page():
    assert first_page("one\ftwo\fthree") == (f"one\n{PROMPT}", "two\fthree")
    assert first_page("three") == ("three", None)


async def test_api_pages_a_message_each_and_keeps_buttons(pager):
    replies = [OutboundMessage(pages()), OutboundMessage("Ask your pharmacist.", (Button("Person", "/request_human"),))]
    shown = await pager.pages("api", replies)
    assert shown[1] == replies[1]
    assert len(shown[0].text) <= MAX_SEND and shown[0].text.endswith(f"{CITE}\n{PROMPT}")
    seen = [shown[0].text]
    while (more := await pager.more("api")) is not None:
        assert len(more) == 1 and len(more[0].text) <= MAX_SEND and CITE in more[0].text
        seen.append(more[0].text)
    assert seen[-1].endswith(CITE) and all(s.endswith(PROMPT) for s in seen[:-1])
    assert await pager.pages("api", [OutboundMessage("Hi")]) == [OutboundMessage("Hi")]


class FakeStore:
    async def owner(self, key):
        return Owner.STAFF


class FakeGateway:
    """Answers every message with a paged answer; records what reached it."""

    store = FakeStore()

    def __init__(self):
        self.handled: list[InboundMessage] = []

    def key_for(self, channel, address):
        return f"{channel}:{address}"

    async def handle(self, message):
        self.handled.append(message)
        return HandleResult("api:a", Owner.BOT, [OutboundMessage(pages())])


async def test_an_api_client_rendering_sms_gets_a_page_a_turn(pager):
    gateway = FakeGateway()
    first = await handle_sms_rendered(
        gateway, pager, InboundMessage("api", "a", "what is gout", "m1", {"format": "sms"})
    )
    assert gateway.handled[0].metadata == sms_metadata() and gateway.handled[0].message_id == "m1"
    assert first.owner is Owner.BOT and first.replies[0].text.endswith(f"{CITE}\n{PROMPT}")
    more = await handle_sms_rendered(gateway, pager, InboundMessage("api", "a", "more", "m2", {"format": "sms"}))
    assert len(gateway.handled) == 1  # MORE never reached the assistant
    assert more.owner is Owner.STAFF and more.replies[0].text != first.replies[0].text
    assert CITE in more.replies[0].text and len(more.replies[0].text) <= MAX_SEND
    while await pager.more("api:a") is not None:
        pass
    await handle_sms_rendered(gateway, pager, InboundMessage("api", "a", "MORE", "m3", {"format": "sms"}))
    assert len(gateway.handled) == 2  # nothing kept: MORE is an ordinary message
