"""The holding message against a real Redis: the store keeps its kind, and the gateway does not
repeat it after the clinic rewords it (or the language changes) while the conversation waits."""

import json
import time
import uuid

import pytest
from redis.asyncio import Redis

from channels.messages import HOLDING, InboundMessage, OutboundMessage
from channels.pipeline import Gateway
from channels.rasa_client import RasaClient
from channels.safety import PassThroughScreen
from channels.store import ConversationStore, Owner
from knowledge import messages
from knowledge.messages import msg


class UnreachableRasa(RasaClient):  # never asked: the conversation waits for staff
    def __init__(self):
        super().__init__("http://127.0.0.1:9", None, 1, 0)


@pytest.fixture
async def store(redis_url):
    redis = Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield ConversationStore(redis, prefix=prefix)
    keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def waiting(store: ConversationStore) -> tuple[Gateway, str]:
    gateway = Gateway(store, UnreachableRasa(), "k" * 32, screen=PassThroughScreen())
    key = gateway.key_for("web", "addr")
    await store.ensure(key, "web")
    await store.set_owner(key, Owner.WAITING_FOR_STAFF, reason="request_human")
    return gateway, key


async def test_the_store_keeps_a_messages_kind_and_adds_none_to_others(store):
    await store.append("c1", "system", [OutboundMessage("Staff will reply.", role="system", kind=HOLDING)])
    await store.append("c1", "bot", [OutboundMessage("Hi")])
    first, second = await store.transcript("c1")
    assert first["kind"] == HOLDING and first["text"] == "Staff will reply."
    assert "kind" not in second


async def test_a_reworded_holding_message_is_not_said_again(store, monkeypatch):
    gateway, key = await waiting(store)
    first = await gateway.handle(InboundMessage("web", "addr", "hello?"))
    assert [m.text for m in first.replies] == [msg("gateway.holding")]
    assert (await store.transcript(key))[-1]["kind"] == HOLDING

    english = messages.default_catalogue()
    reworded = messages.Catalogue("en", {**english.texts, "gateway.holding": "Our team will reply here soon."})
    monkeypatch.setattr(messages, "default_catalogue", lambda: reworded)
    second = await gateway.handle(InboundMessage("web", "addr", "anyone there?"))
    assert second.replies == [] and second.owner is Owner.WAITING_FOR_STAFF


async def test_a_holding_message_kept_before_kinds_existed_still_counts(store):
    gateway, key = await waiting(store)
    old = {"text": msg("gateway.holding"), "buttons": [], "role": "system", "ts": time.time()}
    await store.redis.rpush(store._k("transcript", key), json.dumps(old))
    result = await gateway.handle(InboundMessage("web", "addr", "hello?"))
    assert result.replies == []


async def test_a_reminder_texted_meanwhile_does_not_repeat_the_holding_message(store):
    """The scheduling worker writes what it texted as an assistant line marked `scheduled`."""
    gateway, key = await waiting(store)
    assert (await gateway.handle(InboundMessage("web", "addr", "hello?"))).replies
    await store.append(key, "bot", text="Reminder: your appointment is tomorrow.", scheduled="reminder_24h")
    assert (await gateway.handle(InboundMessage("web", "addr", "still there?"))).replies == []


async def off_shift_gateway(store: ConversationStore, hours: str, online: bool) -> Gateway:
    from channels.staff.shifts import Presence, Shift, StaffedHours

    presence = Presence(store.redis, store.prefix)
    if online:
        await presence.set(1, "Sam", "online")
    shift = Shift(StaffedHours.parse(hours, "America/New_York"), presence, "(555) 555-0100")
    return Gateway(store, UnreachableRasa(), "k" * 32, screen=PassThroughScreen(), shift=shift)


@pytest.mark.parametrize(
    ("hours", "online", "says"),
    [
        ("", True, None),  # always staffed, someone online: the usual hand-off
        ("", False, "staff.nobody_online"),
        ("sun 00:00-00:01", True, "staff.after_hours"),  # closed nearly all week, whoever is online
    ],
)
async def test_a_hand_off_with_nobody_on_shift_says_when_a_reply_will_come(store, hours, online, says):
    """Rasa is unreachable: the gateway fails closed to staff, and tells the truth about when."""
    gateway = await off_shift_gateway(store, hours, online)
    result = await gateway.handle(InboundMessage("web", "addr", "hello"))
    assert result.owner is Owner.WAITING_FOR_STAFF and result.replies[0].text == msg("gateway.fail_closed")
    info = await store.info(gateway.key_for("web", "addr"))
    if says is None:
        assert len(result.replies) == 1 and "callback" not in info
        return
    notice = result.replies[-1]
    assert notice.kind == "away" and "911" in notice.text and info["callback"] == "1"
    if says == "staff.after_hours":
        assert "(555) 555-0100" in notice.text and " at " in notice.text
    else:
        assert notice.text == msg(says)
