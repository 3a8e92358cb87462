"""The safety audit trail on SQLite (the default) and on PostgreSQL (DATABASE_URL), and the
gateway's screen writing to it: ids and rule names only, never message text."""

import socket
import uuid

import pytest
from redis.asyncio import Redis

from channels.audit import SafetyAudit
from channels.db import make_engine
from channels.messages import InboundMessage
from channels.pipeline import Gateway
from channels.rasa_client import RasaClient
from channels.store import ConversationStore, Owner


def _postgres_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def audit(request, tmp_path):
    if request.param == "sqlite":
        yield SafetyAudit(make_engine(f"sqlite:///{tmp_path / 'careline.db'}"))
        return
    if not _postgres_up():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    engine = make_engine("postgresql://postgres@127.0.0.1:5432/test")
    yield SafetyAudit(engine)
    engine.dispose()


async def test_record_and_read_back(audit):
    conversation = f"web-{uuid.uuid4().hex}"
    await audit.record(
        conversation=conversation,
        channel="web",
        outcome="crisis",
        category="suicide_self_harm",
        rules=["suicide_self_harm.intent"],
        owner_before="bot",
        owner_after="waiting_for_staff",
        action="escalated",
    )
    rows = audit.rows(conversation)
    assert len(rows) == 1 and rows[0]["rules"] == "suicide_self_harm.intent" and rows[0]["at"] is not None


class UnreachableRasa(RasaClient):
    def __init__(self):
        super().__init__("http://127.0.0.1:9", None, 1, 0)


class BrokenScreen:
    async def screen(self, message):
        raise RuntimeError("rules failed to load")


@pytest.fixture
async def store(redis_url):
    redis = Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield ConversationStore(redis, prefix=prefix)
    keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_gateway_screens_every_state_and_audits_without_text(store, tmp_path):
    audit = SafetyAudit(make_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    gateway = Gateway(store, UnreachableRasa(), "k" * 32, audit=audit)
    text = "my husband is slurring his words"
    for state in (Owner.BOT, Owner.WAITING_FOR_STAFF, Owner.STAFF):
        address = f"addr-{state.value}"
        key = gateway.key_for("web", address)
        await store.ensure(key, "web", address)
        await store.set_owner(key, state)
        result = await gateway.handle(InboundMessage("web", address, text, None, {}))
        assert "911" in result.replies[0].text and "stroke" in result.replies[0].text.lower()
        assert result.owner is (Owner.STAFF if state is Owner.STAFF else Owner.WAITING_FOR_STAFF)
        row = audit.rows(key)[-1]
        assert row["outcome"] == "emergency" and "stroke.speech" in row["rules"]
        assert "slurring" not in repr(row)
    assert (await store.waiting_for_staff())[0] == gateway.key_for("web", "addr-bot")


async def test_sms_rendering_of_the_crisis_message_fits_one_send(store, tmp_path):
    gateway = Gateway(store, UnreachableRasa(), "k" * 32)
    result = await gateway.handle(InboundMessage("sms", "+15550100", "i want to end my life", None, {}))
    assert "988" in result.replies[0].text and len(result.replies[0].text) <= 320


async def test_a_broken_screen_fails_closed(store):
    gateway = Gateway(store, UnreachableRasa(), "k" * 32, screen=BrokenScreen())
    result = await gateway.handle(InboundMessage("web", "x", "hello", None, {}))
    assert result.owner is Owner.WAITING_FOR_STAFF and "911" in result.replies[0].text
