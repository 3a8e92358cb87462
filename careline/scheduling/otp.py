"""One-time codes: proof that the person in a chat holds the phone number on file.

`send` makes a code with `secrets`, keeps only its keyed hash (HMAC with CONVERSATION_SECRET) in
Redis with a lifetime and a count of wrong tries, and queues the SMS as a sched_messages row
(kind "otp") that the scheduling worker (careline/scheduling/worker.py) sends within a second and
blanks once sent. Sends are rate-limited per patient with the `limits` library (Redis storage,
shared by every process). `verify` is one Lua script: a right code is used up in the same step
that checks it, so two concurrent verifies of one code cannot both pass; too many wrong tries
void the code.

Sync Redis: the action server calls this from its threads. The code is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from limits import parse_many
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from careline.scheduling.identity import phone_key
from careline.scheduling.model import Patient
from careline.scheduling.schema import sched_messages
from careline.settings import SchedulingSettings
from knowledge.messages import msg

log = logging.getLogger(__name__)

DEFAULT_CLINIC_NAME = "Maplewood Family Clinic"

# KEYS[1] the code's hash; ARGV: the hash of the code tried, the wrong tries allowed.
# {outcome, tries left}. A voided code keeps its key (h = "") until it expires, so it stays locked.
_VERIFY = """
local h = redis.call('HGET', KEYS[1], 'h')
if not h then return {'expired', 0} end
if h == '' then return {'locked', 0} end
if h == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {'ok', 0}
end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
local allowed = tonumber(ARGV[2])
if tries >= allowed then
  redis.call('HSET', KEYS[1], 'h', '')
  return {'locked', 0}
end
return {'wrong', allowed - tries}
"""


@dataclass(frozen=True)
class SendResult:
    status: str  # sent | rate_limited | no_phone | opted_out
    message_id: int | None = None  # the sched_messages row


@dataclass(frozen=True)
class VerifyResult:
    outcome: str  # ok | wrong | expired | locked
    remaining: int = 0  # wrong: tries left


class OneTimeCodes:
    """`redis` is a sync redis.Redis. `ttl_seconds`, `max_attempts` and `rate_limit` override the
    settings (tests); `secret` defaults to CONVERSATION_SECRET."""

    def __init__(
        self,
        redis,
        engine: Engine,
        settings: SchedulingSettings,
        prefix: str = "careline",
        clinic_name: str | None = None,
        secret: str | None = None,
        ttl_seconds: int | None = None,
        max_attempts: int | None = None,
        rate_limit: str | None = None,
    ):
        self.redis = redis
        self.engine = engine
        self.settings = settings
        self.prefix = prefix
        self.clinic_name = clinic_name or os.environ.get("CLINIC_NAME") or DEFAULT_CLINIC_NAME
        self.secret = secret if secret is not None else os.environ.get("CONVERSATION_SECRET", "")
        self.ttl = ttl_seconds or settings.otp_ttl_seconds
        self.max_attempts = max_attempts or settings.otp_max_attempts
        storage = RedisStorage("redis://", connection_pool=redis.connection_pool, key_prefix=f"{prefix}:ratelimit:otp")
        self.limiter = MovingWindowRateLimiter(storage)
        self.limits = parse_many(rate_limit or settings.otp_send_rate_limit)
        self._verify = redis.register_script(_VERIFY)

    def _key(self, patient_id: str) -> str:
        return f"{self.prefix}:sched:otp:{patient_id}"

    def _hash(self, patient_id: str, code: str) -> str:
        return hmac.new(self.secret.encode(), f"otp\x1f{patient_id}\x1f{code}".encode(), hashlib.sha256).hexdigest()

    def send(self, patient: Patient, purpose: str, now: datetime | None = None) -> SendResult:
        """Make a new code for the patient (it replaces any earlier one) and queue its SMS."""
        now = now or datetime.now(UTC)
        if not patient.phone:
            return SendResult("no_phone")
        if opted_out(self.engine, self.secret, patient):
            log.info("otp not sent patient=%s reason=opted_out", patient.id)
            return SendResult("opted_out")
        if not all(self.limiter.hit(item, "otp", str(patient.id)) for item in self.limits):
            log.info("otp not sent patient=%s reason=rate_limited", patient.id)
            return SendResult("rate_limited")
        code = "".join(secrets.choice("0123456789") for _ in range(self.settings.otp_digits))
        key = self._key(patient.id)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={"h": self._hash(patient.id, code), "tries": 0})
            pipe.expire(key, self.ttl)
            pipe.execute()
        body = msg("scheduling.otp.sms", clinic_name=self.clinic_name, code=code, minutes=max(1, self.ttl // 60))
        with self.engine.begin() as conn:
            row_id = conn.execute(
                insert(sched_messages).values(
                    dedupe_key=f"otp:{uuid.uuid4().hex}",
                    kind="otp",
                    patient_id=str(patient.id),
                    due_at=now,
                    status="pending",
                    body=body,
                    attempts=0,
                    detail=purpose[:40],
                )
            ).inserted_primary_key[0]
        log.info("otp queued patient=%s message=%s purpose=%s", patient.id, row_id, purpose[:40])
        return SendResult("sent", row_id)

    def verify(self, patient_id: str, code: str, now: datetime | None = None) -> VerifyResult:
        """Check a code: ok (and it is used up), wrong (tries left), expired (none live), locked."""
        code = "".join(ch for ch in str(code or "") if ch.isdigit())
        outcome, remaining = self._verify(
            keys=[self._key(str(patient_id))], args=[self._hash(str(patient_id), code), self.max_attempts]
        )
        outcome = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        log.info("otp verify patient=%s outcome=%s", patient_id, outcome)
        return VerifyResult(outcome, int(remaining))


def opted_out(engine: Engine, secret: str, patient: Patient) -> bool:
    """STOP from the patient's number (sms_consent, by its conversation key), or the patient's
    record says no texts (patients.sms_opt_out, the SQL schedule only)."""
    from sqlalchemy import select

    from careline.scheduling.schema import patients
    from channels.db import sms_consent

    if not patient.phone:
        return False
    conversation = phone_key(secret, patient.phone)
    with engine.connect() as conn:
        status = conn.execute(select(sms_consent.c.status).where(sms_consent.c.conversation == conversation)).scalar()
        if status == "opted_out":
            return True
        if not str(patient.id).isdigit():
            return False
        return bool(conn.execute(select(patients.c.sms_opt_out).where(patients.c.id == int(patient.id))).scalar())
