"""One-time codes on a real Redis and the schedule's database: only a hash is kept, a code works
once, expires, locks after wrong tries, sends are rate-limited, two verifies of one code cannot
both pass, and the worker texts the code and then forgets it."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis as sync_redis
from sqlalchemy import insert

from careline.scheduling.identity import phone_key
from careline.scheduling.otp import OneTimeCodes
from channels.db import sms_consent

from .conftest import SECRET
from .messaging import new_patient, rows, settings


@pytest.fixture
def redis_client(redis_url):
    client = sync_redis.Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield client, prefix
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def codes(redis_client, engine, **kw) -> OneTimeCodes:
    client, prefix = redis_client
    return OneTimeCodes(client, engine, settings(), prefix=prefix, clinic_name="Maplewood", secret=SECRET, **kw)


def sent_code(engine, result) -> str:
    (row,) = [r for r in rows(engine, kind="otp") if r.id == result.message_id]
    return "".join(ch for ch in row.body.split("code is ")[1].split(".")[0] if ch.isdigit())


def test_a_code_is_queued_kept_only_as_a_hash_and_works_once(redis_client, scheduler, schedule_engine, caplog):
    caplog.set_level("DEBUG")
    otp = codes(redis_client, schedule_engine)
    patient = new_patient(scheduler)
    result = otp.send(patient, purpose="cancel")
    assert result.status == "sent"
    code = sent_code(schedule_engine, result)
    assert len(code) == 6
    (row,) = rows(schedule_engine, id=result.message_id)
    assert row.kind == "otp" and row.status == "pending" and row.dedupe_key.startswith("otp:")
    client, prefix = redis_client
    stored = b"".join(v for k in client.scan_iter(f"{prefix}:sched:otp:*") for v in client.hgetall(k).values())
    assert stored and code.encode() not in stored  # only the keyed hash
    assert otp.verify(patient.id, "000000" if code != "000000" else "111111").outcome == "wrong"
    assert otp.verify(patient.id, code).outcome == "ok"
    assert otp.verify(patient.id, code).outcome == "expired"  # used up
    assert code not in caplog.text and patient.phone not in caplog.text


def test_a_new_code_replaces_the_old_one(redis_client, scheduler, schedule_engine):
    otp = codes(redis_client, schedule_engine)
    patient = new_patient(scheduler)
    first = sent_code(schedule_engine, otp.send(patient, purpose="cancel"))
    second = sent_code(schedule_engine, otp.send(patient, purpose="cancel"))
    if first != second:
        assert otp.verify(patient.id, first).outcome == "wrong"
    assert otp.verify(patient.id, second).outcome == "ok"


def test_a_code_expires(redis_client, scheduler, schedule_engine):
    otp = codes(redis_client, schedule_engine, ttl_seconds=1)
    patient = new_patient(scheduler)
    code = sent_code(schedule_engine, otp.send(patient, purpose="check"))
    time.sleep(1.2)
    assert otp.verify(patient.id, code).outcome == "expired"


def test_wrong_tries_void_the_code(redis_client, scheduler, schedule_engine):
    otp = codes(redis_client, schedule_engine, max_attempts=3)
    patient = new_patient(scheduler)
    code = sent_code(schedule_engine, otp.send(patient, purpose="cancel"))
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    assert [(r.outcome, r.remaining) for r in (otp.verify(patient.id, wrong) for _ in range(2))] == [
        ("wrong", 2),
        ("wrong", 1),
    ]
    assert otp.verify(patient.id, wrong).outcome == "locked"
    assert otp.verify(patient.id, code).outcome == "locked"  # the right code no longer works


def test_sends_are_rate_limited_per_patient(redis_client, scheduler, schedule_engine):
    otp = codes(redis_client, schedule_engine, rate_limit="2/minute")
    patient, other = new_patient(scheduler), new_patient(scheduler)
    assert [otp.send(patient, purpose="cancel").status for _ in range(3)] == ["sent", "sent", "rate_limited"]
    assert otp.send(other, purpose="cancel").status == "sent"
    assert len([r for r in rows(schedule_engine, kind="otp") if r.patient_id == patient.id]) == 2


def test_no_code_without_a_number_or_to_an_opted_out_number(redis_client, scheduler, schedule_engine):
    otp = codes(redis_client, schedule_engine)
    assert otp.send(new_patient(scheduler, phone=None), purpose="cancel").status == "no_phone"
    stopped = new_patient(scheduler)
    with schedule_engine.begin() as conn:
        conn.execute(
            insert(sms_consent).values(
                conversation=phone_key(SECRET, stopped.phone), status="opted_out", source="keyword"
            )
        )
    assert otp.send(stopped, purpose="cancel").status == "opted_out"
    assert rows(schedule_engine, kind="otp") == []


def test_two_concurrent_verifies_of_one_code_cannot_both_pass(redis_client, scheduler, schedule_engine):
    otp = codes(redis_client, schedule_engine, rate_limit="100/minute")
    patient = new_patient(scheduler)

    def verify(barrier: threading.Barrier, code: str, outcomes: list[str]) -> None:
        barrier.wait()
        outcomes.append(otp.verify(patient.id, code).outcome)

    for _ in range(10):
        code = sent_code(schedule_engine, otp.send(patient, purpose="cancel"))
        barrier, outcomes = threading.Barrier(2), []
        threads = [threading.Thread(target=verify, args=(barrier, code, outcomes)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["expired", "ok"]


async def test_the_worker_texts_the_code_and_forgets_it(redis_client, scheduler, schedule_engine, twilio):
    from .messaging import make_worker

    otp = codes(redis_client, schedule_engine)
    patient = new_patient(scheduler)
    result = otp.send(patient, purpose="cancel")
    code = sent_code(schedule_engine, result)
    worker = make_worker(schedule_engine, scheduler, twilio)
    counts = await worker.run_once(plan=False)
    assert counts.get("sent") == 1
    (text,) = [m.body for m in twilio.messages(to=patient.phone)]
    assert code in text
    (row,) = rows(schedule_engine, id=result.message_id)
    assert row.status == "sent" and row.body is None and row.message_sid


async def test_the_code_goes_out_when_planning_reminders_fails(redis_client, scheduler, schedule_engine, twilio):
    from careline.scheduling.model import BackendUnavailable
    from careline.scheduling.sql import SqlScheduler

    from .conftest import TIMEZONE
    from .messaging import make_worker

    class CalendarDown(SqlScheduler):
        def appointments_between(self, *args, **kwargs):
            raise BackendUnavailable("OperationalError")

    otp = codes(redis_client, schedule_engine)
    patient = new_patient(scheduler)
    code = sent_code(schedule_engine, otp.send(patient, purpose="cancel"))
    down = CalendarDown(schedule_engine, timezone=TIMEZONE, secret=SECRET)
    counts = await make_worker(schedule_engine, down, twilio).run_once()
    assert counts.get("plan_failed") == 1 and counts.get("sent") == 1
    assert code in twilio.messages(to=patient.phone)[0].body
