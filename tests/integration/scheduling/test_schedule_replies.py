"""Short SMS replies to the schedule's texts, through the SMS channel's turn and the gateway
pipeline (real Redis, the safety screen, the schedule's database, the Twilio stand-in; Rasa is a
recorder of what the gateway hands it): C confirms, YES takes an offered slot, NO passes, R and X
go to the assistant naming the appointment, and nothing skips the screen or a person's ownership."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from careline.scheduling import waitlist
from channels.consent import SmsRecords
from channels.messages import OutboundMessage
from channels.pipeline import Gateway
from channels.rasa_client import RasaClient, RasaReply
from channels.schedule_replies import ScheduleReplies
from channels.sms import SmsChannel, SmsTexts
from channels.store import ConversationStore, Owner
from channels.twilio_sender import TwilioSender

from .conftest import MONDAY, SECRET, TIMEZONE
from .messaging import book, local, make_worker, new_patient, settings, texts_to

SUNDAY_EVENING = local(MONDAY - timedelta(days=1), 19)


class RecordingRasa(RasaClient):
    """Stands in for Rasa (tested on its own elsewhere): records what the gateway sends it."""

    def __init__(self):
        super().__init__("http://127.0.0.1:9", None, 1, 0)
        self.received: list[str] = []

    async def send(self, sender_id, text, metadata=None):
        self.received.append(text)
        return RasaReply([OutboundMessage("assistant reply")])


@pytest.fixture
async def sms(redis_url, scheduler, schedule_engine, twilio):
    redis = Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    rasa = RecordingRasa()
    gateway = Gateway(ConversationStore(redis, prefix=prefix), rasa, SECRET)
    gateway.schedule_replies = ScheduleReplies(redis, schedule_engine, scheduler, prefix, TIMEZONE, "(555) 555-0100")
    sender = TwilioSender(
        twilio.account_sid, twilio.auth_token, twilio.phone_number, api_base_url=twilio.base_url, backoff=0.01
    )
    channel = SmsChannel(
        redis,
        gateway,
        sender,
        SmsRecords(schedule_engine, redis, prefix),
        SmsTexts("Maplewood Family Clinic", "(555) 555-0100"),
        shards=2,
        prefix=prefix,
    )
    worker = make_worker(
        schedule_engine, scheduler, twilio, redis, prefix, settings=settings(sms_sending_hours="00:00-00:00")
    )
    yield channel, worker, rasa
    keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def text_from(channel: SmsChannel, number: str, body: str) -> None:
    key = channel.gateway.key_for("sms", number)
    await channel._turn(key, {"sid": f"SM{uuid.uuid4().hex}", "from": number, "body": body, "kind": "text"})


async def reminded(scheduler, worker, twilio):
    appointment = book(scheduler, new_patient(scheduler), hour=10)
    await worker.run_once(SUNDAY_EVENING)
    number = scheduler.patient(appointment.patient_id).phone
    assert "Reply C to confirm" in texts_to(twilio, number)[0]
    return appointment, number


async def test_c_confirms_the_reminded_appointment(sms, scheduler, twilio):
    channel, worker, rasa = sms
    appointment, number = await reminded(scheduler, worker, twilio)
    await text_from(channel, number, " c ")
    assert "is confirmed" in texts_to(twilio, number)[-1]
    assert scheduler.appointment(appointment.id).confirmed and rasa.received == []


@pytest.mark.parametrize(("word", "intent"), [("R", "reschedule_appointment"), ("x", "cancel_appointment")])
async def test_r_and_x_go_to_the_assistant_naming_the_appointment(sms, scheduler, twilio, word, intent):
    channel, worker, rasa = sms
    appointment, number = await reminded(scheduler, worker, twilio)
    await text_from(channel, number, word)
    assert rasa.received == [f'/{intent}{{"appointment_id": "{appointment.id}"}}']
    assert texts_to(twilio, number)[-1] == "assistant reply"


async def test_other_messages_and_numbers_without_a_reminder_go_on_as_before(sms, scheduler, twilio):
    channel, worker, rasa = sms
    appointment, number = await reminded(scheduler, worker, twilio)
    await text_from(channel, number, "can I confirm by phone?")
    stranger = "+15550009876"
    await text_from(channel, stranger, "C")
    assert rasa.received == ["can I confirm by phone?", "C"]
    assert not scheduler.appointment(appointment.id).confirmed


async def test_a_conversation_with_a_person_is_left_to_them(sms, scheduler, twilio):
    channel, worker, rasa = sms
    appointment, number = await reminded(scheduler, worker, twilio)
    key, store = channel.gateway.key_for("sms", number), channel.gateway.store
    await store.ensure(key, "sms")
    await store.set_owner(key, Owner.STAFF, reason="test")
    await text_from(channel, number, "C")
    assert not scheduler.appointment(appointment.id).confirmed and rasa.received == []


async def test_the_safety_screen_sees_the_message_first(sms, scheduler, twilio):
    channel, worker, rasa = sms
    appointment, number = await reminded(scheduler, worker, twilio)
    await text_from(channel, number, "I want to kill myself")
    assert "988" in " ".join(texts_to(twilio, number)[1:])
    await text_from(channel, number, "C")  # the conversation waits for a person now
    assert not scheduler.appointment(appointment.id).confirmed and rasa.received == []


async def test_yes_takes_the_offered_slot_and_no_passes(sms, scheduler, schedule_engine, twilio):
    channel, worker, rasa = sms
    later = [book(scheduler, new_patient(scheduler), day=MONDAY + timedelta(days=7)) for _ in range(2)]
    for appointment in later:
        waitlist.join(schedule_engine, appointment.patient_id, "follow_up", appointment_id=appointment.id)
    freed = book(scheduler, new_patient(scheduler), hour=9)
    scheduler.cancel(freed.id)
    await worker.run_once(datetime.now(UTC))
    taker, passer = (scheduler.patient(a.patient_id).phone for a in later)
    await text_from(channel, passer, "no")
    assert "keep your place" in texts_to(twilio, passer)[-1]
    await text_from(channel, taker, "Yes")
    assert "your appointment is now" in texts_to(twilio, taker)[-1]
    (moved,) = scheduler.appointments_for(later[0].patient_id, now=datetime.now(UTC))
    assert moved.slot_id == freed.slot_id and rasa.received == []
    await text_from(channel, taker, "yes")  # answered already: the assistant has it
    assert rasa.received == ["yes"]
