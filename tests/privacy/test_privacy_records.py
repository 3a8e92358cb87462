"""Retention sweep, export and erasure against the real things: the machine's Redis (the test
database, CARELINE_TEST_REDIS_URL) and SQL on both SQLite and PostgreSQL (a schema of its own)."""

from __future__ import annotations

import json
import os
import random
import string
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.exc import OperationalError

from channels.audit import SafetyAudit
from channels.consent import SmsRecords
from channels.crypto import Cipher
from channels.db import make_engine, metadata, privacy_audit, sms_consent, sms_delivery
from channels.messages import OutboundMessage
from channels.privacy import Privacy
from channels.pseudonym import conversation_key
from channels.store import ConversationStore, Owner, digest, token_hash
from tests.privacy.traces import redis_traces, sql_traces

SECRET = "p" * 48
KEY = Fernet.generate_key().decode()
DAY = 24 * 3600
RETENTION = 30 * DAY
PG_URL = os.environ.get("CARELINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'careline.db'}")
        yield engine
        engine.dispose()
        return
    url = PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    schema = f"privacy_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError:
        admin.dispose()
        pytest.skip(f"no PostgreSQL at {PG_URL}")
    engine = create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
async def redis(redis_url):
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@dataclass
class World:
    """A gateway's worth of state under test prefixes, written through the real stores."""

    redis: Redis
    engine: object
    prefix: str = field(default_factory=lambda: f"tp{uuid.uuid4().hex[:8]}")
    rasa: str = field(default_factory=lambda: f"tr{uuid.uuid4().hex[:8]}")

    def __post_init__(self):
        self.created: list[str] = []
        self.store = ConversationStore(self.redis, prefix=self.prefix, retention=RETENTION)
        self.records = SmsRecords(self.engine, self.redis, self.prefix)
        self.audit = SafetyAudit(self.engine)
        self.cipher = Cipher(KEY)

    def privacy(self, **kw) -> Privacy:
        return Privacy(
            self.redis,
            self.engine,
            secret=SECRET,
            retention_seconds=RETENTION,
            prefix=self.prefix,
            rasa_prefix=self.rasa,
            cipher=self.cipher,
            **kw,
        )

    def k(self, *parts):
        return ":".join((self.prefix, *parts))

    async def patient(self, channel: str = "sms", age_days: float = 0, address: str | None = None) -> Patient:
        """A conversation with everything a real one leaves: state, transcript, idempotency, hand-off,
        Rasa tracker and lock, SMS state and queue, rate-limit window, SQL delivery, consent, audit."""
        address = (
            address
            or {
                "sms": "+1555" + "".join(random.choices(string.digits, k=7)),
                "web": uuid.uuid4().hex + "Ab",
                "api": f"t-{uuid.uuid4().hex}",
            }[channel]
        )
        key = conversation_key(SECRET, channel, address)
        self.created.append(key)
        marker = "Zq" + "".join(random.choices(string.ascii_lowercase, k=12))
        first = time.time() - age_days * DAY
        r = self.redis
        await self.store.ensure(key, channel, self.cipher.encrypt(address) if channel == "sms" else None)
        await self.store.append(key, "user", text=f"my name is {marker}")
        await self.store.append(key, "bot", [OutboundMessage(f"Hello {marker}")])
        await self.store.claim(key, "m-1", digest("hi"))
        await self.store.complete(key, "m-1", digest("hi"), [OutboundMessage(f"Hi {marker}")])
        await self.store.set_owner(
            key, Owner.WAITING_FOR_STAFF, reason="request_human", summary={"complaint": marker}, priority="urgent"
        )
        await r.set(
            f"{self.rasa}:tracker:{key}",
            json.dumps(
                {
                    "name": key,
                    "events": [
                        {"event": "action", "timestamp": first, "name": "action_session_start"},
                        {"event": "user", "timestamp": first + 1, "text": f"my name is {marker}"},
                    ],
                }
            ),
            ex=RETENTION,
        )
        await r.set(f"{self.rasa}:lock:{key}", json.dumps({"conversation_id": key}))
        await r.set(self.k("ratelimit", f"LIMITER/conversation/{key}/20/1/minute"), "1", ex=60)
        sid = "SM" + uuid.uuid4().hex
        if channel == "sms":
            # as channels/sms.py keeps them: what is carried between messages and the queue, encrypted
            await r.set(self.k("sms", "options", key), self.cipher.encrypt(json.dumps({"1": "/affirm"})), ex=DAY)
            await r.set(self.k("sms", "more", key), self.cipher.encrypt(f"the rest for {marker}"), ex=DAY)
            await r.xadd(
                self.k("sms", "in", "0"),
                {
                    "sid": sid,
                    "from_enc": self.cipher.encrypt(address),
                    "body_enc": self.cipher.encrypt(f"queued {marker}"),
                    "kind": "text",
                    "received": str(first),
                },
            )
            await r.set(self.k("sms", "seen", sid), "1", ex=DAY)
            await r.set(self.k("sms", "intent", sid), "opt_in", ex=DAY)
            await r.set(self.k("sms", "sent", sid, "r", "0"), "SMout" + sid[2:], ex=DAY)
            await self.records.sent(key, sid, "SMout" + sid[2:], "queued")
            await self.records.opt_out(key, "keyword")  # also writes the sms:optout cache
        elif channel == "web":
            await r.set(self.k("webtoken", token_hash(address)), "1", ex=RETENTION)
        await self.audit.record(
            conversation=key,
            channel=channel,
            outcome="emergency",
            category="stroke",
            rules=["stroke.speech"],
            owner_before="bot",
            owner_after="waiting_for_staff",
            action="escalated",
        )
        if age_days:
            await r.zadd(self.k("retention"), {key: first})
            with self.engine.begin() as conn:
                conn.execute(
                    update(sms_delivery)
                    .where(sms_delivery.c.conversation == key)
                    .values(updated_at=datetime.fromtimestamp(first, UTC))
                )
        return Patient(channel, address, key, marker, sid)

    def traces(self, patient: Patient) -> list[str]:
        url = self.redis.connection_pool.connection_kwargs
        redis_url = f"redis://{url.get('host', '127.0.0.1')}:{url.get('port', 6379)}/{url.get('db', 0)}"
        needles = [patient.address, patient.key, patient.marker]
        found = []
        found += redis_traces(redis_url, needles, match=f"{self.prefix}:*")
        found += redis_traces(
            redis_url, needles, match=f"{self.rasa}:*" if self.rasa != "careline" else f"{self.rasa}:*:{patient.key}"
        )
        found += sql_traces(self.engine, [patient.address, patient.marker])
        found += sql_traces(self.engine, [patient.key], skip_tables={"sms_consent", "safety_audit", "privacy_audit"})
        return found

    async def cleanup(self):
        """This test's keys only: Rasa's prefix may be the shared "careline" of a running stack."""
        keys = [k async for k in self.redis.scan_iter(match=f"{self.prefix}:*", count=1000)]
        keys += [f"{self.rasa}:{kind}:{key}" for key in self.created for kind in ("tracker", "lock")]
        if keys:
            await self.redis.delete(*keys)


@dataclass
class Patient:
    channel: str
    address: str
    key: str
    marker: str
    sid: str


@pytest.fixture
async def world(redis, engine):
    w = World(redis, engine)
    yield w
    await w.cleanup()


def audit_rows(engine, action):
    with engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                select(privacy_audit).where(privacy_audit.c.action == action).order_by(privacy_audit.c.id)
            )
        ]


# --- export -------------------------------------------------------------------------------------
async def test_export_returns_everything_held_and_is_audited(world):
    p = await world.patient("sms")
    other = await world.patient("sms")
    data = await world.privacy().export("sms", p.address, actor="dpo")
    assert data["found"] and data["conversation"] == p.key
    state = data["conversation_state"]
    assert state["address"] == p.address and state["owner"] == "waiting_for_staff"
    assert state["summary"] == {"complaint": p.marker}
    assert [m["text"] for m in data["transcript"]] == [f"my name is {p.marker}", f"Hello {p.marker}"]
    assert data["rasa_tracker"]["events"][1]["text"] == f"my name is {p.marker}"
    assert data["idempotency"]["m-1"]["replies"][0]["text"] == f"Hi {p.marker}"
    assert [e["conversation"] for e in data["staff_queue"]] == [p.key] and data["staff"]["waiting"]
    assert data["sms_state"]["more"] == f"the rest for {p.marker}" and data["sms_state"]["optout"] == 1
    assert data["sms_state"]["options"] == {"1": "/affirm"}
    assert [m["body"] for m in data["sms_state"]["queued_messages"]] == [f"queued {p.marker}"]
    assert [r["inbound_sid"] for r in data["sql"]["sms_delivery"]] == [p.sid]
    assert data["sql"]["sms_consent"][0]["status"] == "opted_out"
    assert data["sql"]["safety_audit"][0]["rules"] == "stroke.speech"
    assert data["retention"]["first_message_at"] and data["retention"]["erased_after"]
    assert other.marker not in json.dumps(data) and other.key not in json.dumps(data)
    [row] = audit_rows(world.engine, "export")
    assert row["conversation"] == p.key and row["channel"] == "sms" and row["actor"] == "dpo"
    assert p.address not in json.dumps(row, default=str) and json.loads(row["counts"])["transcript"] == 2


async def test_export_decrypts_the_number_and_says_when_it_cannot(world):
    p = await world.patient("sms")
    data = await world.privacy().export("sms", p.address)
    assert data["conversation_state"]["address"] == p.address
    assert "address_enc" not in data["conversation_state"]
    other_key = Privacy(
        world.redis,
        world.engine,
        secret=SECRET,
        retention_seconds=RETENTION,
        prefix=world.prefix,
        rasa_prefix=world.rasa,
        cipher=Cipher(Fernet.generate_key().decode()),
    )
    data = await other_key.export("sms", p.address)
    assert (
        data["conversation_state"]["address"] is None
        and "did not decrypt" in data["conversation_state"]["address_note"]
    )


async def test_export_of_an_unknown_address_finds_nothing(world):
    data = await world.privacy().export("api", "never-seen")
    assert not data["found"] and data["transcript"] == [] and data["rasa_tracker"] is None


# --- erasure ------------------------------------------------------------------------------------
@pytest.mark.parametrize("channel", ["sms", "web", "api"])
async def test_erase_leaves_no_trace_but_consent_and_audit(world, channel):
    p = await world.patient(channel)
    other = await world.patient(channel)
    assert world.traces(p), "the patient's data is there before"
    result = await world.privacy().erase(channel, p.address, actor="dpo")
    assert world.traces(p) == []
    removed = result["removed"]
    assert removed["redis_keys"] >= 6 and removed["staff_queue_entries"] == 1 and removed["staff_waiting"] == 1
    assert result["kept"]["safety_audit"]["rows"] == 1 and "why" in result["kept"]["sms_consent"]
    if channel == "sms":
        assert removed["sms_queue_entries"] == 1 and removed["sql_rows"] == {"sms_delivery": 1}
        assert not await world.redis.exists(
            world.k("sms", "seen", p.sid), world.k("sms", "intent", p.sid), world.k("sms", "sent", p.sid, "r", "0")
        )
        queued = [world.cipher.decrypt(f[b"from_enc"]) for _i, f in await world.redis.xrange(world.k("sms", "in", "0"))]
        assert queued == [other.address]
    if channel == "web":
        assert not await world.redis.exists(world.k("webtoken", token_hash(p.address)))
    # the other patient is untouched
    assert len(await world.store.transcript(other.key)) == 2
    assert [e["conversation"] for e in await world.store.staff_queue()] == [other.key]
    assert await world.redis.exists(f"{world.rasa}:tracker:{other.key}")
    [row] = audit_rows(world.engine, "erase")
    assert row["conversation"] == p.key and p.address not in row["counts"] and p.marker not in row["counts"]
    again = await world.privacy().erase(channel, p.address)
    assert again["removed"]["redis_keys"] == 0 and again["removed"]["sql_rows"].get("sms_delivery", 0) == 0
    if channel == "sms":
        # the STOP is still honoured: consent kept in SQL, read again now that its cache is gone
        assert await world.records.opted_out(p.key)


# --- retention sweep ----------------------------------------------------------------------------
async def test_sweep_erases_expired_conversations_and_keeps_young_ones(world):
    old = await world.patient("sms", age_days=31)
    old_web = await world.patient("web", age_days=40)
    young = await world.patient("sms", age_days=29)
    new = await world.patient("api")
    with world.engine.begin() as conn:  # a delivery row older than the retention, of no known conversation
        conn.execute(
            sms_delivery.insert().values(
                conversation="sms-" + "0" * 32,
                status="sent",
                updated_at=datetime.fromtimestamp(time.time() - 45 * DAY, UTC),
            )
        )
    counts = await world.privacy(batch=2).sweep()
    assert counts["conversations"] == 2 and counts["sql_sms_delivery"] == 2
    for gone in (old, old_web):
        assert world.traces(gone) == []
    for kept in (young, new):
        assert len(await world.store.transcript(kept.key)) == 2
        assert await world.redis.exists(f"{world.rasa}:tracker:{kept.key}", world.k("dedupe", kept.key, "m-1")) == 2
    with world.engine.connect() as conn:
        left = {r.conversation for r in conn.execute(select(sms_delivery.c.conversation))}
        consent = {r.conversation for r in conn.execute(select(sms_consent.c.conversation))}
    assert left == {young.key} and old.key in consent
    assert set(await world.store.waiting_for_staff()) == {young.key, new.key}
    [row] = audit_rows(world.engine, "sweep")
    assert row["conversation"] is None and json.loads(row["counts"])["conversations"] == 2
    again = await world.privacy().sweep()  # re-runnable: nothing left to do, nothing recorded
    assert again["conversations"] == 0 and again["redis_keys"] == 0 and len(audit_rows(world.engine, "sweep")) == 1


async def test_sweep_works_in_batches_and_reports_more(world):
    patients = [await world.patient("api", age_days=35) for _ in range(7)]
    privacy = world.privacy(batch=2, max_conversations=4)
    first = await privacy.sweep()
    assert first["conversations"] == 4 and first["more"]
    second = await privacy.sweep()
    assert second["conversations"] == 3 and not second["more"]
    for p in patients:
        assert world.traces(p) == []


async def test_old_queue_entries_go_whatever_their_conversation(world):
    old_ms = int((time.time() - 31 * DAY) * 1000)
    await world.redis.xadd(world.k("sms", "in", "3"), {"from": "+15550000000", "body": "old"}, id=f"{old_ms}-0")
    await world.redis.xadd(world.k("sms", "in", "3"), {"from": "+15550000001", "body": "new"})
    await world.redis.xadd(world.k("staff", "queue"), {"conversation": "x", "ts": "0"}, id=f"{old_ms}-0")
    counts = await world.privacy().sweep()
    assert counts["sms_queue_entries"] == 1 and counts["staff_queue_entries"] == 1
    assert [f[b"body"] for _i, f in await world.redis.xrange(world.k("sms", "in", "3"))] == [b"new"]


async def test_sweep_adopts_data_the_retention_index_does_not_know(world):
    """Conversations from before the index, or a tracker Rasa saved again after an erasure: their
    age is read from the data; old ones are erased now, young ones later; plain numbers are removed."""
    r, now = world.redis, time.time()
    old_key, young_key, legacy_key = (f"sms-{uuid.uuid4().hex}" for _ in range(3))
    world.created += [old_key, young_key, legacy_key]
    number = "+15557654321"
    await r.hset(
        world.k("conv", old_key),
        mapping={"channel": "sms", "address": number, "owner": "bot", "created_at": str(now - 60 * DAY)},
    )
    await r.set(
        f"{world.rasa}:tracker:{old_key}", json.dumps({"events": [{"event": "user", "timestamp": now - 60 * DAY}]})
    )
    await r.set(
        f"{world.rasa}:tracker:{young_key}",
        json.dumps(
            {"events": [{"event": "user", "timestamp": now - 3 * DAY}, {"event": "bot", "timestamp": now - DAY}]}
        ),
    )
    await r.hset(
        world.k("conv", legacy_key),
        mapping={"channel": "sms", "address": number, "owner": "bot", "created_at": str(now - 2 * DAY)},
    )
    counts = await world.privacy().sweep()
    assert counts["adopted"] == 3 and counts["conversations"] == 1
    assert not await r.exists(world.k("conv", old_key), f"{world.rasa}:tracker:{old_key}")
    assert await r.zscore(world.k("retention"), young_key) == pytest.approx(now - 3 * DAY)
    legacy = await r.hgetall(world.k("conv", legacy_key))
    assert b"address" not in legacy and world.cipher.decrypt(legacy[b"address_enc"]) == number
    assert await r.zscore(world.k("retention"), legacy_key) == pytest.approx(now - 2 * DAY)


async def test_a_conversation_started_again_is_not_swept(world, monkeypatch):
    """The conversation expired, then the patient wrote again before the sweep: a new first message."""
    p = await world.patient("api")
    privacy = world.privacy()

    async def stale(_cutoff):  # what the sweep read just before the patient came back
        return [p.key]

    monkeypatch.setattr(privacy, "_expired", stale)
    counts = await privacy.sweep()
    assert counts["conversations"] == 0 and len(await world.store.transcript(p.key)) == 2
    assert await world.redis.zscore(world.k("retention"), p.key) is not None


async def test_one_sweep_at_a_time(world):
    await world.redis.set(world.k("privacy", "sweep_lock"), "other", ex=60)
    assert await world.privacy().sweep() == {"skipped": "another sweep is running"}


# --- the gateway's entry points -------------------------------------------------------------------
def settings_for(world):
    from careline.settings import Settings

    return Settings(
        conversation_secret=SECRET,
        data_encryption_key=KEY,
        redis_key_prefix=world.prefix,
        retention_days=30,
        _env_file=None,
    )


async def test_sweep_entry_point_uses_the_settings(world):
    from channels.privacy import sweep

    world.rasa = "careline"  # the gateway's sweep reads Rasa's prefix from bot/endpoints.yml
    p = await world.patient("sms", age_days=31)
    counts = await sweep(world.redis, world.engine, settings_for(world))
    assert counts["conversations"] == 1 and world.traces(p) == []


async def test_run_periodically_sweeps_until_cancelled_and_survives_errors(world, monkeypatch):
    import asyncio

    from channels.privacy import Privacy, run_periodically

    world.rasa = "careline"
    p = await world.patient("api", age_days=31)
    calls, finished = [], []
    real = Privacy.sweep

    async def flaky(self, now=None, actor="gateway"):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("redis went away")
        counts = await real(self, now, actor)
        finished.append(counts)
        return counts

    monkeypatch.setattr(Privacy, "sweep", flaky)
    task = asyncio.create_task(run_periodically(world.redis, world.engine, settings_for(world), interval=0.05))
    deadline = asyncio.get_running_loop().time() + 30  # a loaded CI machine sweeps slowly
    while not finished and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)  # a whole sweep, not the first keys it deleted (cancelling mid-sweep left some)
    task.cancel()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)  # a cancel always stops it
    assert task.cancelled() and len(calls) >= 2
    assert world.traces(p) == []


async def test_erase_by_pseudonym_alone(world):
    p = await world.patient("sms")
    result = await world.privacy().erase_conversation(p.key)
    assert result["channel"] == "sms" and result["removed"]["sms_queue_entries"] == 1
    assert world.traces(p) == []
