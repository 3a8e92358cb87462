"""SMS that cannot be lost, and gateway replicas that are safe, against real components.

In-process tests run SmsChannel (the real webhook code, worker loops, leases, Lua scripts) on a
Redis server of their own that they kill, pause (SIGSTOP) and flush, with SQLite records and the
Twilio stand-in; the assistant behind is a Rasa address that refuses connections, so every text
turn fails closed, and HELP (answered by the channel itself) makes each message's reply visible.
The stack tests drive real gateway processes: one with Redis paused, and two replicas on one
Redis with one of them killed (SIGKILL) under load.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
import uuid
import xml.etree.ElementTree as ET

import httpx
import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis
from sqlalchemy import text as sql

from careline.standins.twilio_api import TwilioStandIn
from channels.consent import SmsRecords
from channels.crypto import Cipher
from channels.db import make_engine
from channels.errors import StoreUnavailable
from channels.pipeline import Gateway
from channels.rasa_client import RasaClient
from channels.safety import RedFlagScreen
from channels.sms import SmsChannel, SmsTexts, twiml
from channels.store import ConversationStore
from channels.twilio_sender import TwilioSender
from tests.faults import PrivateRedis

EMERGENCY = "crushing chest pain and I cant breathe"
SECRET = "s" * 32


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory):
    server = PrivateRedis(tmp_path_factory.mktemp("sms-failover-redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def screen():
    return RedFlagScreen()


@pytest.fixture
def standin():
    with TwilioStandIn(callback_delay=0.01) as s:
        yield s


class Replicas:
    """Builds SmsChannels as separate gateway processes would be: each its own Redis client and
    consumer name, sharing Redis, the SQL records' database, the key and the prefix."""

    def __init__(self, redis: PrivateRedis, standin: TwilioStandIn, tmp_path, screen):
        self.server = redis
        self.standin = standin
        self.engine = make_engine(f"sqlite:///{tmp_path / 'records.db'}")
        self.key = Fernet.generate_key().decode()
        self.prefix = f"f{uuid.uuid4().hex[:8]}"
        self.screen = screen
        self.channels: list[SmsChannel] = []

    def channel(
        self, shards: int = 4, lease: float = 2.0, claim_idle: float = 5.0, name: str | None = None
    ) -> SmsChannel:
        redis = Redis.from_url(self.server.url, socket_timeout=1.0, socket_connect_timeout=1.0)
        sender = TwilioSender(
            self.standin.account_sid,
            self.standin.auth_token,
            self.standin.phone_number,
            api_base_url=self.standin.base_url,
            backoff=0.01,
        )
        store = ConversationStore(redis, prefix=self.prefix)
        gateway = Gateway(store, RasaClient("http://127.0.0.1:9", None, 1, 0), SECRET, self.screen)
        ch = SmsChannel(
            redis,
            gateway,
            sender,
            SmsRecords(self.engine, redis, self.prefix),
            SmsTexts("Maplewood Family Clinic", "(555) 555-0100"),
            shards=shards,
            prefix=self.prefix,
            cipher=Cipher(self.key),
            claim_idle=claim_idle,
            lease_seconds=lease,
            state_timeout=1.5,
            name=name,
        )
        self.channels.append(ch)
        return ch

    def rows(self, conversation: str | None = None) -> list[dict]:
        return SmsRecords(self.engine).rows(conversation)

    def answered(self, sid: str) -> int:
        return sum(1 for r in self.rows() if r["inbound_sid"] == sid and r["message_sid"])

    async def close(self) -> None:
        for ch in self.channels:
            await ch.stop()
            await ch.redis.aclose()


@pytest.fixture
async def replicas(own_redis, standin, tmp_path, screen):
    if own_redis.proc.poll() is not None:
        own_redis.start()
    r = Replicas(own_redis, standin, tmp_path, screen)
    try:
        yield r
    finally:
        own_redis.resume()
        await r.close()


def form(standin: TwilioStandIn, number: str, body: str, sid: str | None = None) -> dict[str, str]:
    return {
        "MessageSid": sid or "SM" + uuid.uuid4().hex,
        "From": number,
        "To": standin.phone_number,
        "Body": body,
        "NumMedia": "0",
        "AccountSid": standin.account_sid,
    }


def number() -> str:
    return "+1555" + str(uuid.uuid4().int)[:7]


async def eventually(check, timeout: float = 20.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s")
        await asyncio.sleep(every)


async def queued(ch: SmsChannel, sid: str) -> int:
    """How many entries of the queue carry this MessageSid."""
    count = 0
    for shard in range(ch.shards):
        for _id, fields in await ch.redis.xrange(ch._stream(shard)):
            count += fields.get(b"sid") == sid.encode()
    return count


# --- the webhook: mark, opt-out and queue entry under failures ---------------------------------


async def test_a_retry_after_redis_died_before_anything_is_queued_once(replicas, own_redis):
    ch = replicas.channel()
    f = form(replicas.standin, number(), "help")
    own_redis.kill()
    try:
        t0 = time.monotonic()
        first = await ch.accept(f)
        assert time.monotonic() - t0 < 4
        assert first == [ch.texts.help], "HELP needs no state: answered in the webhook's TwiML"
    finally:
        own_redis.start()
    assert await ch.accept(f) == [], "Twilio's retry is queued"
    assert await ch.accept(f) == [], "and a second retry is a duplicate"
    assert await queued(ch, f["MessageSid"]) == 1
    await ch.start()
    await eventually(lambda: replicas.answered(f["MessageSid"]) == 1)


async def test_a_stop_is_recorded_even_when_redis_dies_after_it_and_the_retry_is_queued_once(replicas, own_redis):
    ch = replicas.channel()
    f = form(replicas.standin, number(), "STOP")
    key = ch.gateway.key_for("sms", f["From"])
    await ch.redis.set(f"{replicas.prefix}:sms:optout:{key}", "0")  # cached: not opted out
    record = ch.records.record

    async def record_then_die(*args, **kw):
        await record(*args, **kw)
        own_redis.kill()  # between the SQL opt-out and everything in Redis

    ch.records.record = record_then_die
    try:
        reply = await ch.accept(f)
    finally:
        ch.records.record = record
        own_redis.start()
    assert reply == [ch.texts.opted_out], "the STOP is confirmed in the webhook's TwiML"
    with replicas.engine.connect() as conn:
        assert (
            conn.execute(sql("select status from sms_consent where conversation = :c"), {"c": key}).scalar()
            == "opted_out"
        )
    # the stale cached "not opted out" survived in Redis (append-only file): repaired from SQL
    assert await ch.records.repair_cache() == 1
    assert await ch.redis.get(f"{replicas.prefix}:sms:optout:{key}") == b"1"
    assert await ch.records.opted_out(key)
    assert await ch.accept(f) == [] and await ch.accept(f) == []
    assert await queued(ch, f["MessageSid"]) == 1


async def test_a_queue_write_that_redis_ran_after_the_webhook_gave_up_is_not_queued_twice(replicas, own_redis):
    ch = replicas.channel()
    f = form(replicas.standin, number(), "what are your hours on saturday")
    enqueue = ch._enqueue

    async def pause_then_enqueue(*args, **kw):
        own_redis.pause()  # the script is sent, Redis runs it only when it resumes
        return await enqueue(*args, **kw)

    ch._enqueue = pause_then_enqueue
    try:
        t0 = time.monotonic()
        reply = await ch.accept(f)
        elapsed = time.monotonic() - t0
    finally:
        ch._enqueue = enqueue
        own_redis.resume()
    assert reply == [StoreUnavailable.patient_message] and elapsed < 4
    await eventually(lambda: queued(ch, f["MessageSid"]), timeout=5)  # ran late, once
    assert await ch.accept(f) == [], "the retry finds the mark written with the entry"
    assert await queued(ch, f["MessageSid"]) == 1


async def test_with_redis_paused_the_webhook_screens_and_answers_in_twiml(replicas, own_redis):
    ch = replicas.channel()
    own_redis.pause()
    try:
        t0 = time.monotonic()
        emergency = await ch.accept(form(replicas.standin, number(), EMERGENCY))
        other = await ch.accept(form(replicas.standin, number(), "do you take medicaid"))
        elapsed = time.monotonic() - t0
    finally:
        own_redis.resume()
    assert elapsed < 6
    assert "911" in " ".join(emergency) and StoreUnavailable.patient_message not in emergency
    assert other == [StoreUnavailable.patient_message]
    root = ET.fromstring(twiml(*emergency))  # what the route answers: parseable, escaped
    assert [m.text for m in root.iter("Message")] == emergency
    assert ET.fromstring(twiml("a < b & c")).find("Message").text == "a < b & c"


async def test_queued_entries_and_kept_replies_are_encrypted(replicas):
    ch = replicas.channel()
    patient = number()
    f = form(replicas.standin, patient, "my knee hurts when I climb stairs")
    await ch.accept(f)
    entries = await ch.redis.xrange(ch._stream(ch.shard_of(ch.gateway.key_for("sms", patient))))
    raw = repr(entries)
    assert patient not in raw and patient[2:] not in raw and "knee" not in raw
    fields = {k.decode(): v.decode() for k, v in entries[0][1].items()}
    assert ch.cipher.decrypt(fields["from_enc"]) == patient and "knee" in ch.cipher.decrypt(fields["body_enc"])
    key = ch.gateway.key_for("sms", patient)
    await ch._send_text(key, {"sid": "SM" + "b" * 32, "from": patient}, "Shingles is a painful rash. " * 30)
    more = await ch.redis.get(f"{replicas.prefix}:sms:more:{key}")
    assert more and b"Shingles" not in more and "Shingles" in ch.cipher.decrypt(more)


async def test_a_part_twilio_accepted_before_the_process_died_is_not_sent_again(replicas):
    ch = replicas.channel()
    patient = number()
    key = ch.gateway.key_for("sms", patient)
    data = {"sid": "SM" + uuid.uuid4().hex, "from": patient}
    send = ch.sender.send

    async def accepted_then_died(to, body):
        await send(to, body)  # Twilio has it; the process dies before it can note so
        raise asyncio.CancelledError()

    ch.sender.send = accepted_then_died
    with pytest.raises(asyncio.CancelledError):
        await ch._deliver(key, data, ["Your appointment is at 3 pm."])
    ch.sender.send = send
    await ch._deliver(key, data, ["Your appointment is at 3 pm."])  # the next owner's attempt
    sent = replicas.standin.messages(to=patient)
    assert [m.body for m in sent] == ["Your appointment is at 3 pm."], "sent once"
    assert [r["message_sid"] for r in replicas.rows(key)] == [sent[0].sid], "and recorded"
    # died after noting it, before recording it: recorded by the next attempt, not sent again
    data = {"sid": "SM" + uuid.uuid4().hex, "from": patient}
    record = ch.records.sent

    async def died(*args, **kw):
        raise asyncio.CancelledError()

    ch.records.sent = died
    with pytest.raises(asyncio.CancelledError):
        await ch._deliver(key, data, ["See you then."])
    ch.records.sent = record
    await ch._deliver(key, data, ["See you then."])
    sent = replicas.standin.messages(to=patient)
    assert [m.body for m in sent] == ["Your appointment is at 3 pm.", "See you then."]
    assert [r["message_sid"] for r in replicas.rows(key)] == [m.sid for m in sent]
    # the same text later, for another message, is sent: only an unrecorded earlier part counts
    await ch._deliver(key, {"sid": "SM" + uuid.uuid4().hex, "from": patient}, ["Your appointment is at 3 pm."])
    assert len(replicas.standin.messages(to=patient)) == 3


# --- the worker: loops that do not die, and takeover -------------------------------------------


async def test_nogroup_after_a_flush_is_recovered(replicas):
    ch = replicas.channel(shards=2)
    await ch.start()
    patient = number()  # one conversation: one shard, whose group surely existed before the flush
    first = form(replicas.standin, patient, "help")
    await ch.accept(first)
    await eventually(lambda: replicas.answered(first["MessageSid"]) == 1)
    await ch.redis.flushall()
    second = form(replicas.standin, patient, "help")
    await ch.accept(second)
    await eventually(lambda: replicas.answered(second["MessageSid"]) == 1, timeout=20)
    assert ch.regroups >= 1
    await eventually(lambda: ch.health()["ok"] and ch.health()["shards"] == 2)


async def test_a_worker_exception_or_redis_dying_does_not_kill_the_loop(replicas, own_redis):
    ch = replicas.channel(shards=2)
    handle = ch._handle_entry
    crashed = []

    async def crash_once(data):
        if not crashed:
            crashed.append(1)
            raise RuntimeError("a bug")
        await handle(data)

    ch._handle_entry = crash_once
    await ch.start()
    f = form(replicas.standin, number(), "help")
    await ch.accept(f)
    await eventually(lambda: replicas.answered(f["MessageSid"]) == 1)  # after the restart, from the backlog
    assert ch.health()["restarts"] >= 1 and ch.health()["workers"] == 2

    own_redis.kill()
    await asyncio.sleep(2.5)  # every loop's Redis call fails meanwhile
    own_redis.start()
    f = form(replicas.standin, number(), "help")
    for _ in range(20):  # Twilio retries until the webhook queues it (the first may meet a dead connection)
        if await ch.accept(f) == []:
            break
        await asyncio.sleep(0.5)
    await eventually(lambda: replicas.answered(f["MessageSid"]) == 1, timeout=40)
    await eventually(lambda: ch.health()["ok"] and ch.health()["workers"] == ch.health()["shards"] == 2, timeout=20)
    assert replicas.answered(f["MessageSid"]) == 1


async def test_entries_of_a_dead_replica_are_taken_over_once_its_lease_expires(replicas):
    ch = replicas.channel(shards=1, claim_idle=60)
    dead = "deadhost-1-abcdef"
    stream = ch._stream(0)
    f = form(replicas.standin, number(), "help")
    await ch.accept(f)
    await ch._ensure_group(stream)
    # a replica read it, held the shard's lease, and died: no heartbeat, the lease runs out
    await ch.redis.xreadgroup(ch.group, dead, {stream: ">"}, count=10)
    await ch.redis.set(f"{replicas.prefix}:sms:lease:0", dead, px=2500)
    t0 = time.monotonic()
    await ch.start()
    await eventually(lambda: replicas.answered(f["MessageSid"]) == 1, timeout=20)
    took = time.monotonic() - t0
    assert 1.5 < took < 15, "not before the lease expired; and not after claim_idle (its owner is gone)"
    await asyncio.sleep(1)
    assert replicas.answered(f["MessageSid"]) == 1
    assert (await ch.redis.xpending(stream, ch.group))["pending"] == 0


async def test_a_live_but_stuck_consumers_entries_are_autoclaimed_after_claim_idle(replicas):
    ch = replicas.channel(shards=1, claim_idle=5)
    stuck = "stuckhost-2-abcdef"
    stream = ch._stream(0)
    f = form(replicas.standin, number(), "help")
    await ch.accept(f)
    await ch._ensure_group(stream)
    await ch.redis.xreadgroup(ch.group, stuck, {stream: ">"}, count=10)
    read_at = time.monotonic()
    # still alive (its heartbeat runs), but it lost the shard's lease
    await ch.redis.set(f"{replicas.prefix}:sms:worker:{stuck}", "1", px=60_000)
    await ch.start()
    await eventually(lambda: replicas.answered(f["MessageSid"]) == 1, timeout=30)
    assert time.monotonic() - read_at >= 4.5, "XAUTOCLAIM waits until the entry is idle for claim_idle"
    await asyncio.sleep(1)
    assert replicas.answered(f["MessageSid"]) == 1


async def test_two_replicas_share_the_shards_and_keep_each_conversation_in_order(replicas):
    a, b = replicas.channel(shards=4), replicas.channel(shards=4)
    await a.start()
    await b.start()
    await eventually(lambda: a.health()["shards"] == 2 and b.health()["shards"] == 2, timeout=20)
    patients = [number() for _ in range(6)]
    sent: dict[str, list[str]] = {p: [] for p in patients}
    for round_ in range(4):
        for p in patients:
            f = form(replicas.standin, p, "help")
            sent[p].append(f["MessageSid"])
            await (a if round_ == 1 else b).accept(f)  # the load balancer picks either
        if round_ == 1:
            await a.stop()  # a rolling restart: a finishes its turns, b takes a's shards at once
    await eventually(lambda: all(replicas.answered(s) for p in patients for s in sent[p]), timeout=40)
    await eventually(lambda: b.health()["shards"] == 4)
    for p in patients:
        key = a.gateway.key_for("sms", p)
        order = [r["inbound_sid"] for r in replicas.rows(key) if r["message_sid"]]
        assert order == sent[p], "each message answered once, in the order sent"


# --- real gateway processes ---------------------------------------------------------------------


@pytest.mark.stack
def test_gateway_with_redis_paused_answers_in_twiml_within_seconds(fault_stack, private_redis, twilio):
    url = f"{fault_stack.gateway_url}/sms/twilio"
    private_redis.pause()
    try:
        t0 = time.monotonic()
        emergency = twilio.send_inbound(url, number(), EMERGENCY)
        t1 = time.monotonic()
        other = twilio.send_inbound(url, number(), "what are your hours on saturday")
        t2 = time.monotonic()
    finally:
        private_redis.resume()
        fault_stack.wait_ready(60)
    assert emergency.status_code == 200 and other.status_code == 200
    assert t1 - t0 < 6 and t2 - t1 < 6
    said = [m.text for m in ET.fromstring(emergency.text).iter("Message")]
    assert said and "911" in " ".join(said) and "can't reach our system" not in " ".join(said)
    said = [m.text for m in ET.fromstring(other.text).iter("Message")]
    assert said == [StoreUnavailable.patient_message]


@pytest.mark.stack
def test_two_gateways_one_killed_every_message_answered_once_and_in_order(fault_stack, twilio):
    from careline.bench_sms import run_failover, wait_for_shards_shared

    shards = int(fault_stack.services["gateway"].env.get("SMS_SHARDS", "16"))
    second = fault_stack.add_gateway("gateway2")
    try:
        fault_stack.start_service("gateway2")
        wait_for_shards_shared(fault_stack.redis_url, shards)
        report = run_failover(
            twilio,
            {"gateway": fault_stack.gateway_url, "gateway2": second},
            fault_stack.gateway_url,
            kill=lambda: fault_stack.kill("gateway2"),
            kill_name="gateway2",
            kill_pid=fault_stack.services["gateway2"].proc.pid,
            redis_url=fault_stack.redis_url,
            database_url=fault_stack.services["gateway"].env["DATABASE_URL"],
            secret=fault_stack.secret,
            # 60 × 5 messages with a replica killed mid-flight proves the property; `make bench`
            # (careline.bench_sms) runs 200 × 5 for the figures
            conversations=int(os.environ.get("CARELINE_SMS_FAILOVER_CONVERSATIONS", "60")),
            shards=shards,
            timeout=600,
        )
    finally:
        fault_stack.stop(["gateway2"])
        del fault_stack.services["gateway2"]
    print(report)
    assert report["killed"] == "gateway2" and report["shards_taken_over"] > 0
    assert report["answered"] == report["messages"], report
    assert report["duplicates"] == 0 and report["unattributed_parts"] == 0, report
    assert report["out_of_order"] == 0, report
    with httpx.Client(timeout=10) as http:
        ready = http.get(f"{fault_stack.gateway_url}/readyz").json()
    assert ready.get("sms", {}).get("shards") == shards, ready
