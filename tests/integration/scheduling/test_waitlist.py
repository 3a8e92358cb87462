"""The waitlist on SQLite and PostgreSQL: a freed slot is offered to the patients it fits (three
at most, longest-waiting first); of three concurrent YES exactly one books it and the other two
are told it is gone; offers expire; a NO passes the slot on."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from careline.scheduling import waitlist
from careline.scheduling.model import ACTIVE_STATUSES, AppointmentStatus
from careline.scheduling.sql import count_double_booked

from .conftest import MONDAY
from .messaging import book, make_worker, new_patient, rows, settings, texts_to

LATER = MONDAY + timedelta(days=7)


def freed_slot(scheduler):
    """A Monday-morning appointment, cancelled: its slot is free again."""
    appointment = book(scheduler, new_patient(scheduler), hour=9)
    scheduler.cancel(appointment.id)
    return appointment


def waiting(engine, scheduler, count: int, **wish) -> list:
    """Patients with a follow-up a week later, on the waitlist for an earlier one."""
    entries = []
    for _ in range(count):
        patient = new_patient(scheduler)
        later = book(scheduler, patient, day=LATER, hour=9)
        entries.append((waitlist.join(engine, patient.id, "follow_up", appointment_id=later.id, **wish), later))
    return entries


def offers(engine, slot_id: str) -> list:
    from sqlalchemy import select

    from careline.scheduling.schema import sched_offers

    with engine.connect() as conn:
        return conn.execute(select(sched_offers).where(sched_offers.c.slot_id == slot_id)).all()


def test_a_freed_slot_is_offered_to_the_three_longest_waiting(scheduler, schedule_engine):
    entries = waiting(schedule_engine, scheduler, 4)
    cancelled = freed_slot(scheduler)
    assert waitlist.offer_freed_slots(schedule_engine, scheduler) == 3
    made = offers(schedule_engine, cancelled.slot_id)
    assert sorted(o.waitlist_id for o in made) == sorted(e for e, _ in entries[:3])
    texts = rows(schedule_engine, kind="waitlist_offer")
    assert len(texts) == 3 and all("Reply YES to take it" in r.body for r in texts)
    assert waitlist.offer_freed_slots(schedule_engine, scheduler) == 0  # the offers stand


def test_an_offer_fits_the_wish(scheduler, schedule_engine):
    slot = freed_slot(scheduler)
    patient = new_patient(scheduler)
    waitlist.join(schedule_engine, patient.id, "new_patient")  # a visit type the slot does not offer
    waitlist.join(schedule_engine, patient.id, "follow_up", provider_id="nobody")
    waitlist.join(schedule_engine, patient.id, "follow_up", not_after=slot.start)  # only before the slot
    earlier = book(scheduler, new_patient(scheduler), day=MONDAY, hour=8)
    waitlist.join(schedule_engine, earlier.patient_id, "follow_up", appointment_id=earlier.id)  # has an earlier one
    assert waitlist.offer_freed_slots(schedule_engine, scheduler) == 0
    fits = waitlist.join(schedule_engine, patient.id, "follow_up", not_after=slot.start + timedelta(hours=1))
    assert waitlist.offer_freed_slots(schedule_engine, scheduler) == 1
    assert [o.waitlist_id for o in offers(schedule_engine, slot.slot_id)] == [fits]


def test_three_concurrent_yes_book_the_slot_once(scheduler, schedule_engine):
    entries = waiting(schedule_engine, scheduler, 3)
    cancelled = freed_slot(scheduler)
    waitlist.offer_freed_slots(schedule_engine, scheduler)
    made = offers(schedule_engine, cancelled.slot_id)
    barrier = threading.Barrier(3)
    results: dict[int, waitlist.AcceptResult] = {}

    def yes(offer_id: int) -> None:
        barrier.wait()
        results[offer_id] = waitlist.accept_offer(schedule_engine, scheduler, offer_id)

    threads = [threading.Thread(target=yes, args=(o.id,)) for o in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes = sorted(r.outcome for r in results.values())
    assert outcomes == ["lost", "lost", "won"]
    (won,) = [r for r in results.values() if r.outcome == "won"]
    assert won.appointment.slot_id == cancelled.slot_id and won.appointment.booked_by == "waitlist"
    assert count_double_booked(schedule_engine) == 0
    replaced = scheduler.appointment(won.replaced_id)  # the later appointment was moved, not doubled
    assert replaced.status == AppointmentStatus.CANCELLED and replaced.replaced_by_id == won.appointment.id
    assert sorted(o.status for o in offers(schedule_engine, cancelled.slot_id)) == ["accepted", "gone", "gone"]
    # the two who said YES too late were told in their reply; no second "it's gone" text is left
    assert [r for r in rows(schedule_engine, kind="waitlist_gone") if r.status == "pending"] == []
    losers = [later for entry, later in entries if scheduler.appointment(later.id).status in ACTIVE_STATUSES]
    assert len(losers) == 2  # they keep their later appointments


def test_the_others_are_told_when_one_takes_it(scheduler, schedule_engine):
    waiting(schedule_engine, scheduler, 3)
    cancelled = freed_slot(scheduler)
    waitlist.offer_freed_slots(schedule_engine, scheduler)
    first, *others = offers(schedule_engine, cancelled.slot_id)
    assert waitlist.accept_offer(schedule_engine, scheduler, first.id).outcome == "won"
    gone = rows(schedule_engine, kind="waitlist_gone")
    assert len(gone) == 2 and all(r.status == "pending" and "has been taken" in r.body for r in gone)
    assert waitlist.accept_offer(schedule_engine, scheduler, others[0].id).outcome == "lost"
    assert [r.status for r in rows(schedule_engine, kind="waitlist_gone")].count("skipped") == 1  # answered instead


def test_an_offer_expires_and_a_no_passes_the_slot_on(scheduler, schedule_engine):
    (first, _), (second, _) = waiting(schedule_engine, scheduler, 2)
    cancelled = freed_slot(scheduler)
    now = datetime.now(UTC)
    waitlist.offer_freed_slots(schedule_engine, scheduler, now, offer_minutes=60)
    (offer,) = [o for o in offers(schedule_engine, cancelled.slot_id) if o.waitlist_id == first]
    assert waitlist.accept_offer(schedule_engine, scheduler, offer.id, now + timedelta(minutes=61)).outcome == "expired"
    (other,) = [o for o in offers(schedule_engine, cancelled.slot_id) if o.waitlist_id == second]
    assert waitlist.decline_offer(schedule_engine, other.id) == "declined"
    assert scheduler.appointment(cancelled.id).status == AppointmentStatus.CANCELLED
    third, _ = waiting(schedule_engine, scheduler, 1)[0]
    assert waitlist.offer_freed_slots(schedule_engine, scheduler, now + timedelta(minutes=1)) == 1  # the next one
    assert {o.waitlist_id for o in offers(schedule_engine, cancelled.slot_id) if o.status == "offered"} == {third}


async def test_the_worker_texts_offers_and_gone_notices(scheduler, schedule_engine, twilio):
    entries = waiting(schedule_engine, scheduler, 2)
    freed_slot(scheduler)
    numbers = [scheduler.patient(scheduler.appointment(later.id).patient_id).phone for _, later in entries]
    worker = make_worker(schedule_engine, scheduler, twilio, settings=settings(sms_sending_hours="00:00-00:00"))
    counts = await worker.run_once(datetime.now(UTC))
    assert counts.get("offered") == 2 and counts.get("sent") == 2
    assert all("an earlier appointment is free" in texts_to(twilio, n)[0] for n in numbers)
    first = rows(schedule_engine, kind="waitlist_offer")[0]
    assert waitlist.accept_offer(schedule_engine, scheduler, first.dedupe_key.split(":")[1]).outcome == "won"
    assert (await worker.run_once(datetime.now(UTC), plan=False)).get("sent") == 1
    assert sorted(len(texts_to(twilio, n)) for n in numbers) == [1, 2]
