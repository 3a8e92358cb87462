"""Reminders on SQLite and PostgreSQL, sent through the real `twilio` library to the stand-in,
whose list of accepted messages is the judge: planned once per offset, sent exactly once by two
racing workers, after a crash and across a restart; held until the sending hours open; never to
an opted-out number; skipped when the appointment was cancelled or moved."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy import insert, update

from careline.scheduling.identity import phone_key
from careline.scheduling.model import Appointment, AppointmentStatus, SlotQuery
from careline.scheduling.reminders import SendingHours, describe_when, due_times, plan_reminders, reminder_key
from careline.scheduling.schema import patients
from careline.scheduling.worker import CLAIM_SECONDS
from channels.db import sms_consent

from .conftest import MONDAY, SECRET
from .messaging import TZ, book, local, make_worker, new_patient, rows, settings, texts_to

SUNDAY_EVENING = local(MONDAY - timedelta(days=1), 19)  # inside the sending hours; Monday's 24-h reminders due


@pytest.fixture
async def redis(redis_url):
    client = Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield client, prefix
    keys = [k async for k in client.scan_iter(f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def booked(scheduler, count: int, hour: int = 8) -> list[Appointment]:
    return [book(scheduler, new_patient(scheduler), hour=hour) for _ in range(count)]


# --- planning ------------------------------------------------------------------------------------
def test_one_row_per_offset_planned_once(scheduler, schedule_engine):
    appointment = booked(scheduler, 1, hour=10)[0]
    start = appointment.start
    assert plan_reminders(schedule_engine, scheduler, start - timedelta(hours=80), [72, 24]) == 0  # too far off
    assert plan_reminders(schedule_engine, scheduler, start - timedelta(hours=72.5), [72, 24]) == 2
    assert plan_reminders(schedule_engine, scheduler, start - timedelta(hours=72.4), [72, 24]) == 0
    planned = {r.kind: r for r in rows(schedule_engine, appointment_id=appointment.id)}
    assert set(planned) == {"reminder_72h", "reminder_24h"}
    assert planned["reminder_24h"].dedupe_key == reminder_key(24, appointment.id, start)
    assert planned["reminder_24h"].due_at.replace(tzinfo=UTC) == start - timedelta(hours=24)


def late(start: datetime, booked_at: datetime) -> Appointment:
    return Appointment("1", "1", "1", start, start, "p", "P", "l", "L", "follow_up", "booked", created_at=booked_at)


def test_an_offset_already_past_at_booking_is_not_sent_but_the_last_one_is():
    start = datetime(2026, 12, 14, 15, tzinfo=UTC)
    booked_at = start - timedelta(hours=30)
    assert [h for h, _ in due_times(late(start, booked_at), [72, 24], booked_at)] == [24]
    booked_at = start - timedelta(hours=10)  # 24 h passed too: the 24-h one goes at once
    assert due_times(late(start, booked_at), [72, 24], booked_at) == [(24, booked_at)]
    booked_at = start - timedelta(hours=1)  # too close: none
    assert due_times(late(start, booked_at), [72, 24], booked_at) == []


def test_sending_hours_wait_for_the_opening_and_wrap_past_midnight():
    hours = SendingHours("08:00-20:00", "America/New_York")
    three = local(MONDAY, 3)
    assert not hours.open_at(three) and hours.next_opening(three) == local(MONDAY, 8)
    assert hours.next_opening(local(MONDAY, 21)) == local(MONDAY + timedelta(days=1), 8)
    night = SendingHours("20:00-08:00", "America/New_York")
    assert night.open_at(three) and not night.open_at(local(MONDAY, 12))


# --- sending -------------------------------------------------------------------------------------
async def test_two_workers_racing_send_each_reminder_exactly_once(scheduler, schedule_engine, twilio, redis):
    client, prefix = redis
    appointments = booked(scheduler, 12)
    workers = [make_worker(schedule_engine, scheduler, twilio, client, prefix) for _ in range(2)]
    counts = await asyncio.gather(*(w.run_once(SUNDAY_EVENING) for w in workers))
    assert sum(c.get("sent", 0) for c in counts) == 12
    for appointment in appointments:
        number = scheduler.patient(appointment.patient_id).phone
        (text,) = texts_to(twilio, number)
        assert "Reply C to confirm, R to reschedule, X to cancel. STOP to opt out." in text
        assert "Mon Dec 14 at" in text and appointment.provider_name in text and appointment.location_name in text
        last = json.loads(await client.get(f"{prefix}:sched:last:{phone_key(SECRET, number)}"))
        assert last == {"kind": "reminder", "appointment_id": appointment.id}
    assert {r.status for r in rows(schedule_engine)} == {"sent"}
    again = await workers[0].run_once(SUNDAY_EVENING + timedelta(minutes=5))
    assert again.get("sent", 0) == 0


async def test_what_the_worker_texts_is_in_the_patients_transcript_a_code_without_its_digits(
    scheduler, schedule_engine, twilio, redis, redis_url
):
    """Staff see the reminder a "C" answers: the same conversation key as the patient's texts."""
    import redis as sync_redis

    from careline.scheduling.otp import OneTimeCodes
    from careline.scheduling.worker import transcript_writer
    from channels.store import ConversationStore

    client, prefix = redis
    store = ConversationStore(client, prefix=prefix)
    (appointment,) = booked(scheduler, 1)
    patient = scheduler.patient(appointment.patient_id)
    sync = sync_redis.Redis.from_url(redis_url)
    try:
        OneTimeCodes(sync, schedule_engine, settings(), prefix=prefix, clinic_name="Maplewood", secret=SECRET).send(
            patient, purpose="cancel", now=SUNDAY_EVENING
        )
    finally:
        sync.close()
    worker = make_worker(schedule_engine, scheduler, twilio, client, prefix, on_sent=transcript_writer(store))
    assert (await worker.run_once(SUNDAY_EVENING)).get("sent", 0) == 2
    items = await store.transcript(phone_key(SECRET, patient.phone))
    sent = texts_to(twilio, patient.phone)
    reminder = next(t for t in sent if "Reply C to confirm" in t)
    code_text = next(t for t in sent if "your code is" in t)
    code = "".join(ch for ch in code_text.split("code is ")[1].split(".")[0] if ch.isdigit())
    by_kind = {i["scheduled"]: i for i in items}
    assert set(by_kind) == {"otp", "reminder_24h"} and all(i["role"] == "bot" for i in items)
    assert by_kind["reminder_24h"]["text"] == reminder
    assert code not in json.dumps(items) and "code" in by_kind["otp"]["text"]
    key = phone_key(SECRET, patient.phone)  # a conversation the retention sweep keeps, not a leftover
    info = await store.info(key)
    assert info["channel"] == "sms" and info["owner"] == "bot" and float(info["created_at"]) > 0
    assert await client.zscore(f"{prefix}:retention", key) is not None


class Crash(BaseException):
    """The process dies right after Twilio accepted the message."""


async def test_a_crashed_workers_claim_is_taken_over_without_a_second_text(scheduler, schedule_engine, twilio, redis):
    client, prefix = redis
    appointment = booked(scheduler, 1)[0]
    number = scheduler.patient(appointment.patient_id).phone
    survivor = make_worker(schedule_engine, scheduler, twilio, client, prefix)

    async def send_then_die(to: str, body: str) -> str:
        await survivor.send(to, body)
        raise Crash()

    crashing = make_worker(schedule_engine, scheduler, twilio, client, prefix, send=send_then_die, concurrency=1)
    with pytest.raises(Crash):
        await crashing.run_once(SUNDAY_EVENING)
    (row,) = rows(schedule_engine, appointment_id=appointment.id)
    assert row.status == "sending" and row.attempts == 1 and len(texts_to(twilio, number)) == 1
    assert (await survivor.run_once(SUNDAY_EVENING + timedelta(seconds=30))).get("sent", 0) == 0  # still claimed
    counts = await survivor.run_once(SUNDAY_EVENING + timedelta(seconds=CLAIM_SECONDS + 1))
    assert counts.get("sent") == 1
    (row,) = rows(schedule_engine, appointment_id=appointment.id)
    (message,) = twilio.messages(to=number)  # found in Twilio's list, not sent again
    assert row.status == "sent" and row.message_sid == message.sid


async def test_reminders_across_a_gateway_restart_are_sent_once(scheduler, schedule_engine, twilio, redis):
    client, prefix = redis
    appointments = booked(scheduler, 30)
    numbers = [scheduler.patient(a.patient_id).phone for a in appointments]
    clock = lambda: SUNDAY_EVENING  # noqa: E731
    first = make_worker(schedule_engine, scheduler, twilio, client, prefix, clock=clock, concurrency=2)

    async def slow_send(to: str, body: str) -> str:
        await asyncio.sleep(0.03)
        return await first_send(to, body)

    first_send, first.send = first.send, slow_send
    task = asyncio.create_task(first.run_forever(asyncio.Event(), interval=0.05))
    for _ in range(500):
        if sum(len(twilio.messages(to=n)) for n in numbers) >= 6:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    sent_before = sum(len(twilio.messages(to=n)) for n in numbers)
    assert 6 <= sent_before < 30  # stopped mid-way
    second = make_worker(schedule_engine, scheduler, twilio, client, prefix, clock=clock)
    await second.run_once()
    assert Counter(len(twilio.messages(to=n)) for n in numbers) == {1: 30}
    assert {r.status for r in rows(schedule_engine)} == {"sent"}


async def test_a_reminder_due_at_night_waits_for_the_opening(scheduler, schedule_engine, twilio):
    appointment = booked(scheduler, 1, hour=9)[0]
    number = scheduler.patient(appointment.patient_id).phone
    offset = settings(reminder_hours="30")  # due at 03:00 the day before (an appointment at 09:00)
    worker = make_worker(schedule_engine, scheduler, twilio, settings=offset)
    due = appointment.start - timedelta(hours=30)
    assert due == local(MONDAY - timedelta(days=1), 3)
    assert (await worker.run_once(due)).get("deferred") == 1
    (row,) = rows(schedule_engine, appointment_id=appointment.id)
    opening = local(MONDAY - timedelta(days=1), 8)
    assert row.status == "pending" and row.due_at.replace(tzinfo=UTC) == opening
    assert (await worker.run_once(opening - timedelta(minutes=1))).get("sent", 0) == 0
    assert (await worker.run_once(opening)).get("sent") == 1
    assert len(texts_to(twilio, number)) == 1


async def test_a_reminder_that_cannot_go_before_the_visit_is_skipped(scheduler, schedule_engine, twilio):
    appointment = booked(scheduler, 1, hour=8)[0]  # 08:00: a 3-hour reminder is due at 05:00
    worker = make_worker(schedule_engine, scheduler, twilio, settings=settings(reminder_hours="3"))
    counts = await worker.run_once(appointment.start - timedelta(hours=3))
    assert counts.get("skipped_too_late") == 1
    assert texts_to(twilio, scheduler.patient(appointment.patient_id).phone) == []


async def test_an_opted_out_number_is_never_texted(scheduler, schedule_engine, twilio):
    stopped, flagged, unsubscribed = booked(scheduler, 3)
    with schedule_engine.begin() as conn:
        phone = scheduler.patient(stopped.patient_id).phone
        conn.execute(insert(sms_consent).values(conversation=phone_key(SECRET, phone), status="opted_out", source="k"))
        conn.execute(update(patients).where(patients.c.id == int(flagged.patient_id)).values(sms_opt_out=True))
    carrier_stop = scheduler.patient(unsubscribed.patient_id).phone
    twilio.unsubscribe(carrier_stop)  # the carrier answers 21610
    try:
        counts = await make_worker(schedule_engine, scheduler, twilio).run_once(SUNDAY_EVENING)
    finally:
        twilio.resubscribe(carrier_stop)
    assert counts.get("skipped_opted_out") == 3 and counts.get("sent", 0) == 0
    for a in (stopped, flagged, unsubscribed):
        assert texts_to(twilio, scheduler.patient(a.patient_id).phone) == []
    from careline.scheduling.otp import opted_out

    assert opted_out(schedule_engine, SECRET, scheduler.patient(unsubscribed.patient_id))  # 21610 recorded


async def test_a_cancelled_or_moved_appointments_reminder_is_skipped(scheduler, schedule_engine, twilio):
    cancelled, moved = booked(scheduler, 2)
    plan_reminders(schedule_engine, scheduler, SUNDAY_EVENING, [24])
    scheduler.cancel(cancelled.id)
    query = SlotQuery(local(MONDAY, 14), local(MONDAY, 23), visit_type="follow_up", limit=1)
    new_slot = scheduler.find_slots(query, now=SUNDAY_EVENING)[0]
    now_at = scheduler.reschedule(moved.id, new_slot.id)
    assert now_at.status == AppointmentStatus.BOOKED
    worker = make_worker(schedule_engine, scheduler, twilio)
    counts = await worker.run_once(SUNDAY_EVENING)
    assert counts.get("skipped_changed") == 2 and counts.get("sent") == 1  # the new appointment's reminder
    assert texts_to(twilio, scheduler.patient(cancelled.patient_id).phone) == []
    (text,) = texts_to(twilio, scheduler.patient(moved.patient_id).phone)
    assert describe_when(new_slot.start, TZ) in text
