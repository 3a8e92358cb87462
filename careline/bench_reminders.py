"""`make bench` (reminders): how many reminders one scheduling worker sends a second.

500 appointments on the sample schedule in a fresh SQLite database, every one with a reminder due
now; one worker (careline/scheduling/worker.py, its default concurrency) plans them and sends
them through the real `twilio` library to the local Twilio stand-in, with every check it makes in
production (appointment unchanged, number not opted out, sending hours, claim by compare-and-set).
Three runs (the sent rows are removed between runs); prints JSON with the median. With REDIS_URL
set, the reply context (`sched:last`) is written to that Redis too, under a prefix of its own that
is removed afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REMINDERS = 500
RUNS = 3
TIMEZONE = "America/New_York"
ROOT = Path(__file__).resolve().parents[1]


def build(directory: Path, count: int = REMINDERS):
    """A database with `count` booked appointments over the next weeks, booked long ago."""
    from sqlalchemy import update

    from careline.scheduling.calendar import generate_slots, load_schedule
    from careline.scheduling.model import SlotQuery
    from careline.scheduling.schema import appointments
    from careline.scheduling.sql import SqlScheduler
    from channels.db import make_engine

    engine = make_engine(f"sqlite:///{directory / 'bench-reminders.db'}")
    start = date.today() + timedelta(days=2)
    load_schedule(engine, ROOT / "knowledge" / "clinic" / "schedule.yml", today=start)
    generate_slots(engine, TIMEZONE, start, 35)
    scheduler = SqlScheduler(engine, timezone=TIMEZONE, secret="bench-" + "s" * 40)
    now = datetime.now(UTC)
    slots = scheduler.find_slots(SlotQuery(now, now + timedelta(days=40), limit=count), now=now)
    if len(slots) < count:
        raise RuntimeError(f"only {len(slots)} free slots for {count} reminders")
    for n, slot in enumerate(slots):
        patient = scheduler.create_patient(f"Bench Patient {n}", date(1980, 1, 1), f"+1555{n:07d}")
        scheduler.book(slot.id, patient.id, slot.visit_types[0], booked_by="staff:bench", now=now)
    with engine.begin() as conn:
        conn.execute(update(appointments).values(created_at=datetime(2000, 1, 1, tzinfo=UTC)))
    return engine, scheduler


async def one_run(engine, scheduler, standin, redis, prefix: str) -> dict:
    from sqlalchemy import delete

    from careline.scheduling.schema import sched_messages
    from careline.scheduling.worker import SchedulingWorker, twilio_callables
    from careline.settings import SchedulingSettings
    from channels.twilio_sender import TwilioSender

    with engine.begin() as conn:
        conn.execute(delete(sched_messages))
    standin.clear()
    sender = TwilioSender(standin.account_sid, standin.auth_token, standin.phone_number, api_base_url=standin.base_url)
    send, find_sent = twilio_callables(sender)
    # every appointment in the next 40 days has a reminder due now, at any hour
    settings = SchedulingSettings(_env_file=None, reminder_hours="1000", sms_sending_hours="00:00-00:00")
    secret = scheduler.secret
    worker = SchedulingWorker(
        engine, scheduler, send, settings, TIMEZONE, "bench", secret, redis, find_sent=find_sent, prefix=prefix
    )
    started = time.perf_counter()
    sent = 0
    for _ in range(REMINDERS):  # rounds of up to BATCH rows
        counts = await worker.run_once()
        sent += counts.get("sent", 0)
        if sent >= REMINDERS or not counts.get("due"):
            break
    seconds = time.perf_counter() - started
    return {"sent": sent, "texts_accepted": len(standin.messages()), "seconds": round(seconds, 3)}


async def run() -> dict:
    from careline.standins.twilio_api import TwilioStandIn

    redis, prefix = None, f"bench-{uuid.uuid4().hex[:8]}"
    if os.environ.get("REDIS_URL"):
        from redis.asyncio import Redis

        redis = Redis.from_url(os.environ["REDIS_URL"])
    runs = []
    try:
        with tempfile.TemporaryDirectory() as directory, TwilioStandIn(callback_delay=0) as standin:
            engine, scheduler = build(Path(directory))
            for _ in range(RUNS):
                runs.append(await one_run(engine, scheduler, standin, redis, prefix))
            engine.dispose()
    finally:
        if redis is not None:
            keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()
    rates = [r["sent"] / r["seconds"] for r in runs]
    return {
        "reminders": REMINDERS,
        "database": "sqlite",
        "redis": redis is not None,
        "reminders_per_second": round(statistics.median(rates), 1),
        "runs": runs,
    }


def main() -> None:
    print(json.dumps({"reminders": asyncio.run(run())}, indent=2))


if __name__ == "__main__":
    main()
