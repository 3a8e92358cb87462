"""SMS paging, owned by the gateway: a long reply goes out a page a turn, and "MORE" sends the next.

The gateway tells the assistant how many characters an SMS page may hold (`sms_metadata`, sent
with every SMS-rendered turn); the knowledge action cuts a long answer into pages of that size,
each ending with its citation, joined by careline.contracts.PAGE_BREAK. Here the first page goes
out with the MORE prompt and the rest is kept, encrypted, for a day; "MORE" sends the next page,
and any other reply replaces what was kept. The SMS channel sends a page as segment-sized texts
(channels/sms_text.split_for_sms, which also cuts any other reply longer than MAX_SEND); the API,
for a client that asks for `render: "sms"`, returns a page as one message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from careline.contracts import PAGE_BREAK, PAGE_CHARS_KEY
from channels.crypto import Cipher, EncryptedValues
from channels.errors import STATE_ERRORS, StoreUnavailable
from channels.messages import InboundMessage, OutboundMessage
from channels.pipeline import Gateway, HandleResult
from channels.sms_text import MAX_SEND, more_prompt, split_for_sms
from channels.store import Owner

log = logging.getLogger(__name__)

# The prompt's own word, answered here without a turn of the assistant. Other ways of asking for
# the rest ("what else?", "tell me more") are the assistant's to read: its NLU has the ask_more intent,
# and its action answers with a NextPage control (careline.contracts) that the gateway serves.
MORE_KEYWORDS = frozenset({"MORE", "MORE.", "MORE!"})
REST_TTL = 24 * 3600


def page_chars() -> int:
    """What a page may hold so that it goes out whole, on its own line before the prompt."""
    return MAX_SEND - len("\n" + more_prompt())


def sms_metadata() -> dict[str, Any]:
    """Metadata for a turn rendered for SMS: the assistant sizes its pages by it."""
    return {"format": "sms", PAGE_CHARS_KEY: page_chars()}


def asks_for_more(text: str) -> bool:
    return text.strip().upper() in MORE_KEYWORDS


def arrange(texts: Iterable[str]) -> str:
    """One turn's replies as one text: every reply's first page, then their later pages. A caution
    or a notice sent with a paged answer thus goes out with its first page (or, when that page left
    no room, with the first MORE), not after the last."""
    firsts: list[str] = []
    later: list[str] = []
    for text in texts:
        first, *pages = (page.strip() for page in text.split(PAGE_BREAK))
        firsts.append(first)
        later += pages
    return PAGE_BREAK.join(p for p in ["\n\n".join(f for f in firsts if f), *later] if p)


def first_page(text: str) -> tuple[str, str | None]:
    """The first page, ending with the MORE prompt when pages remain, and the rest (page breaks kept)."""
    page, _, rest = text.partition(PAGE_BREAK)
    rest = rest.strip()
    return (f"{page.strip()}\n{more_prompt()}" if rest else page.strip()), rest or None


class Pager:
    """Keeps the rest of a conversation's paged reply under `{prefix}:sms:more:{conversation}`
    (encrypted, like everything kept about an SMS conversation; the retention sweep and
    `careline patient erase` know the key). A store that fails costs MORE, never the reply."""

    def __init__(self, redis, cipher: Cipher, prefix: str = "careline", ttl: int = REST_TTL):
        self.redis = redis
        self.cipher = cipher
        self.prefix = prefix
        self.ttl = ttl

    def key(self, conversation: str) -> str:
        return f"{self.prefix}:sms:more:{conversation}"

    async def keep(self, conversation: str, rest: str | None) -> None:
        await EncryptedValues(self.redis, self.cipher, "paging").put(self.key(conversation), rest, self.ttl)

    async def rest(self, conversation: str) -> str | None:
        return await EncryptedValues(self.redis, self.cipher, "paging").get(self.key(conversation))

    # --- SMS: segment-sized texts -------------------------------------------------------------
    async def sms_parts(self, conversation: str, text: str) -> list[str]:
        """The texts to send now for `text` (run for_sms first); the rest is kept for MORE."""
        parts, rest = split_for_sms(text, MAX_SEND)
        await self.keep(conversation, rest)
        return parts

    async def sms_more(self, conversation: str) -> list[str] | None:
        """The next texts after "MORE", or None when nothing is kept (MORE is then an ordinary message)."""
        rest = await self.rest(conversation)
        return await self.sms_parts(conversation, rest) if rest else None

    # --- API with render "sms": a page a message ----------------------------------------------
    async def pages(self, conversation: str, replies: list[OutboundMessage]) -> list[OutboundMessage]:
        """Each reply with its first page only; the later pages are kept for MORE."""
        shown, kept = [], []
        for reply in replies:
            if PAGE_BREAK not in reply.text:
                shown.append(reply)
                continue
            page, rest = first_page(reply.text)
            shown.append(replace(reply, text=page))
            kept += [rest] if rest else []
        await self.keep(conversation, PAGE_BREAK.join(kept) or None)
        return shown

    async def more(self, conversation: str) -> list[OutboundMessage] | None:
        """The next page after "MORE", or None when nothing is kept."""
        rest = await self.rest(conversation)
        if not rest:
            return None
        return await self.pages(conversation, [OutboundMessage(rest)])


async def handle_sms_rendered(gateway: Gateway, pager: Pager, message: InboundMessage) -> HandleResult:
    """A turn for an API client that asked for `render: "sms"`: MORE continues the kept pages
    without a turn of the assistant; anything else goes to the gateway, and a paged reply comes
    back as its first page."""
    key = gateway.key_for(message.channel, message.address)
    if isinstance(message.text, str) and asks_for_more(message.text):
        more = await pager.more(key)
        if more is not None:
            try:
                owner = await gateway.store.owner(key) or Owner.BOT
            except STATE_ERRORS as exc:
                raise StoreUnavailable() from exc
            return HandleResult(key, owner, more)
    result = await gateway.handle(replace(message, metadata={**message.metadata, **sms_metadata()}))
    return replace(result, replies=await pager.pages(key, result.replies))
