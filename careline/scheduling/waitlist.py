"""The waitlist: patients who want an earlier appointment, and offers of freed slots.

A slot that became free (its appointment was cancelled or moved within FREED_WITHIN, nothing
active holds it, it starts at least MIN_LEAD from now) and that no live offer stands for is
offered to up to OFFERS_PER_SLOT waiting patients whose wish it fits (the visit type, before
their current appointment or `not_after`, the provider and location if they named one), the
longest-waiting first, by SMS ("Reply YES to take it"). The first YES books it: the slot's
compare-and-set in the scheduler decides, so of three concurrent YES exactly one wins; the
others' offers become "gone" and those patients are told. Offers expire after
WAITLIST_OFFER_MINUTES; a slot whose offers all expired or were declined goes to the next ones.

Freed slots are read from the SQL schedule's tables (a FHIR server's cancellations are not seen).
Logs carry ids only.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from careline.scheduling.model import (
    ACTIVE_STATUSES,
    Appointment,
    NotAllowed,
    NotFound,
    Scheduler,
    SlotStatus,
    SlotTaken,
)
from careline.scheduling.reminders import describe_when, utc
from careline.scheduling.schema import (
    appointments,
    sched_locations,
    sched_messages,
    sched_offers,
    sched_providers,
    sched_slots,
    sched_waitlist,
)
from knowledge.messages import msg

log = logging.getLogger(__name__)

OFFERS_PER_SLOT = 3
FREED_WITHIN = timedelta(hours=24)  # a slot freed longer ago than this is no longer "just freed"
MIN_LEAD = timedelta(hours=2)  # no offer for a slot that starts sooner than this
ACTIVE = tuple(str(s) for s in ACTIVE_STATUSES)
DEFAULT_CLINIC_NAME = "Maplewood Family Clinic"


@dataclass(frozen=True)
class AcceptResult:
    outcome: str  # won | lost | expired | not_found
    appointment: Appointment | None = None
    replaced_id: str | None = None  # the later appointment it replaced


def _clinic(clinic_name: str | None) -> str:
    return clinic_name or os.environ.get("CLINIC_NAME") or DEFAULT_CLINIC_NAME


def join(
    engine: Engine,
    patient_id: str,
    visit_type: str,
    appointment_id: str | None = None,
    provider_id: str | None = None,
    location_id: str | None = None,
    not_after: datetime | None = None,
) -> int:
    """Put a patient on the waitlist (for an earlier slot than `appointment_id`, if given). Its id."""
    with engine.begin() as conn:
        new_id = conn.execute(
            insert(sched_waitlist).values(
                patient_id=str(patient_id),
                appointment_id=str(appointment_id) if appointment_id else None,
                visit_type=visit_type,
                provider_id=provider_id,
                location_id=location_id,
                not_after=utc(not_after),
                status="waiting",
                created_at=datetime.now(UTC),
            )
        ).inserted_primary_key[0]
    log.info("waitlist joined entry=%s patient=%s", new_id, patient_id)
    return new_id


# --- offering freed slots ----------------------------------------------------------------------
def offer_freed_slots(
    engine: Engine,
    scheduler: Scheduler,
    now: datetime | None = None,
    offer_minutes: int = 60,
    tz: ZoneInfo | None = None,
    clinic_name: str | None = None,
) -> int:
    """Expire old offers, then offer each freed slot to the waiting patients it fits. Returns how
    many offers were made."""
    now = utc(now) or datetime.now(UTC)
    tz = tz or ZoneInfo(os.environ.get("CLINIC_TIMEZONE") or "America/New_York")
    with engine.begin() as conn:
        conn.execute(
            update(sched_offers)
            .where(sched_offers.c.status == "offered", sched_offers.c.expires_at <= now)
            .values(status="expired")
        )
        slots = conn.execute(_freed_slots(now)).all()
    made = 0
    for slot in slots:
        entries = _fitting_entries(engine, scheduler, slot)
        if entries:
            made += _offer(engine, slot, entries[:OFFERS_PER_SLOT], now, offer_minutes, tz, _clinic(clinic_name))
    return made


def _freed_slots(now: datetime):
    """Free, unheld future slots whose appointment was cancelled lately, with no live offer."""
    slot_id = sched_slots.c.id
    live_offer = exists().where(
        sched_offers.c.slot_id == _as_text(slot_id),
        or_(
            sched_offers.c.status == "accepted",
            and_(sched_offers.c.status == "offered", sched_offers.c.expires_at > now),
        ),
    )
    return (
        select(
            sched_slots,
            sched_providers.c.name.label("provider_name"),
            sched_locations.c.name.label("location_name"),
        )
        .select_from(
            sched_slots.join(sched_providers, sched_providers.c.id == sched_slots.c.provider_id).join(
                sched_locations, sched_locations.c.id == sched_slots.c.location_id
            )
        )
        .where(
            sched_slots.c.status == SlotStatus.FREE,
            or_(sched_slots.c.hold_token.is_(None), sched_slots.c.hold_until < now),
            sched_slots.c.start > now + MIN_LEAD,
            exists().where(
                appointments.c.slot_id == slot_id,
                appointments.c.status == "cancelled",
                appointments.c.updated_at >= now - FREED_WITHIN,
            ),
            ~exists().where(appointments.c.slot_id == slot_id, appointments.c.status.in_(ACTIVE)),
            ~live_offer,
        )
        .order_by(sched_slots.c.start, sched_slots.c.id)
        .limit(100)
    )


def _as_text(column):
    from sqlalchemy import String, cast

    return cast(column, String)


def _fitting_entries(engine: Engine, scheduler: Scheduler, slot) -> list:
    """The waiting entries this slot fits, longest-waiting first, not offered this slot before."""
    start = utc(slot.start)
    offered_before = exists().where(
        sched_offers.c.slot_id == str(slot.id), sched_offers.c.waitlist_id == sched_waitlist.c.id
    )
    with engine.connect() as conn:
        rows = conn.execute(
            select(sched_waitlist)
            .where(sched_waitlist.c.status == "waiting", ~offered_before)
            .order_by(sched_waitlist.c.created_at, sched_waitlist.c.id)
        ).all()
    kinds = set(slot.visit_types.split(","))
    fitting = []
    for row in rows:
        if row.visit_type not in kinds or (row.not_after is not None and start >= utc(row.not_after)):
            continue
        if (row.provider_id and row.provider_id != slot.provider_id) or (
            row.location_id and row.location_id != slot.location_id
        ):
            continue
        if row.appointment_id:
            current = scheduler.appointment(row.appointment_id)
            if current is None or current.status not in ACTIVE_STATUSES or utc(current.start) <= start:
                continue
        fitting.append(row)
        if len(fitting) >= OFFERS_PER_SLOT:
            break
    return fitting


def _offer(engine: Engine, slot, entries: list, now: datetime, minutes: int, tz: ZoneInfo, clinic: str) -> int:
    """The offers and their SMS, in one transaction (another worker offering the same slot to the
    same patients at once is refused by the unique (slot, entry) and this one gives way)."""
    body = msg(
        "scheduling.waitlist.offer_sms",
        clinic_name=clinic,
        when=describe_when(slot.start, tz),
        provider=slot.provider_name,
        location=slot.location_name,
        minutes=minutes,
    )
    try:
        with engine.begin() as conn:
            for entry in entries:
                offer_id = conn.execute(
                    insert(sched_offers).values(
                        slot_id=str(slot.id),
                        waitlist_id=entry.id,
                        status="offered",
                        offered_at=now,
                        expires_at=now + timedelta(minutes=minutes),
                    )
                ).inserted_primary_key[0]
                _queue(conn, "waitlist_offer", offer_id, entry.patient_id, str(slot.id), now, body)
    except IntegrityError:
        log.info("waitlist slot %s offered by another worker", slot.id)
        return 0
    log.info("waitlist slot %s offered to entries=%s", slot.id, ",".join(str(e.id) for e in entries))
    return len(entries)


def _queue(conn: Connection, kind: str, offer_id: int, patient_id: str, slot_id: str, now: datetime, body: str):
    conn.execute(
        insert(sched_messages).values(
            dedupe_key=f"{kind}:{offer_id}",
            kind=kind,
            patient_id=str(patient_id),
            slot_id=slot_id,
            due_at=now,
            status="pending",
            body=body,
            attempts=0,
        )
    )


# --- answers: YES, NO ----------------------------------------------------------------------------
def _load(conn: Connection, offer_id) -> object | None:
    try:
        key = int(str(offer_id))
    except ValueError:
        return None
    return conn.execute(
        select(
            sched_offers,
            sched_waitlist.c.patient_id,
            sched_waitlist.c.appointment_id,
            sched_waitlist.c.visit_type,
            sched_waitlist.c.status.label("entry_status"),
        )
        .select_from(sched_offers.join(sched_waitlist, sched_waitlist.c.id == sched_offers.c.waitlist_id))
        .where(sched_offers.c.id == key)
    ).first()


def _set_offer(conn: Connection, offer_id: int, status: str) -> bool:
    """Compare-and-set: an offer still "offered" moves to `status`."""
    changed = conn.execute(
        update(sched_offers)
        .where(sched_offers.c.id == offer_id, sched_offers.c.status == "offered")
        .values(status=status)
    ).rowcount
    return bool(changed)


def _drop_gone_notice(conn: Connection, offer_id: int) -> None:
    """The patient is answered directly: the queued "it's gone" text is not sent as well."""
    conn.execute(
        update(sched_messages)
        .where(sched_messages.c.dedupe_key == f"waitlist_gone:{offer_id}", sched_messages.c.status == "pending")
        .values(status="skipped", detail="answered", body=None)
    )


def accept_offer(
    engine: Engine, scheduler: Scheduler, offer_id, now: datetime | None = None, clinic_name: str | None = None
) -> AcceptResult:
    """The patient said YES. won: booked (their later appointment moved to it, if they had one);
    lost: someone took the slot first; expired: too late, or not on the waitlist any more."""
    now = utc(now) or datetime.now(UTC)
    with engine.begin() as conn:
        offer = _load(conn, offer_id)
        if offer is None:
            return AcceptResult("not_found")
        if offer.status == "accepted":
            return AcceptResult("won")
        if offer.status == "gone":
            _drop_gone_notice(conn, offer.id)
            return AcceptResult("lost")
        if offer.status != "offered" or utc(offer.expires_at) <= now or offer.entry_status != "waiting":
            _set_offer(conn, offer.id, "expired")
            return AcceptResult("expired")
    try:
        appointment, replaced = _book(scheduler, offer)
    except (SlotTaken, NotFound, NotAllowed) as exc:
        with engine.begin() as conn:
            _set_offer(conn, offer.id, "gone")
            _drop_gone_notice(conn, offer.id)
        log.info("waitlist offer %s lost reason=%s", offer.id, exc.reason)
        return AcceptResult("lost")
    with engine.begin() as conn:
        _settle(conn, offer, now, _clinic(clinic_name))
    log.info("waitlist offer %s won appointment=%s", offer.id, appointment.id)
    return AcceptResult("won", appointment, replaced)


def _book(scheduler: Scheduler, offer) -> tuple[Appointment, str | None]:
    """Move the patient's later appointment to the slot, or book it (the slot's compare-and-set)."""
    if offer.appointment_id:
        current = scheduler.appointment(offer.appointment_id)
        if current is not None and current.status in ACTIVE_STATUSES:
            return scheduler.reschedule(current.id, offer.slot_id, by="waitlist"), current.id
    return scheduler.book(offer.slot_id, offer.patient_id, offer.visit_type, booked_by="waitlist"), None


def _settle(conn: Connection, offer, now: datetime, clinic: str) -> None:
    """After a win: the offer accepted, the entry done, its other offers withdrawn, and the other
    patients offered this slot told it is gone."""
    conn.execute(update(sched_offers).where(sched_offers.c.id == offer.id).values(status="accepted"))
    conn.execute(update(sched_waitlist).where(sched_waitlist.c.id == offer.waitlist_id).values(status="booked"))
    conn.execute(
        update(sched_offers)
        .where(sched_offers.c.waitlist_id == offer.waitlist_id, sched_offers.c.status == "offered")
        .values(status="gone")
    )
    others = conn.execute(
        select(sched_offers.c.id, sched_waitlist.c.patient_id)
        .select_from(sched_offers.join(sched_waitlist, sched_waitlist.c.id == sched_offers.c.waitlist_id))
        .where(sched_offers.c.slot_id == offer.slot_id, sched_offers.c.status == "offered")
    ).all()
    body = msg("scheduling.waitlist.gone_sms", clinic_name=clinic)
    for other_id, patient_id in others:
        if _set_offer(conn, other_id, "gone"):
            _queue(conn, "waitlist_gone", other_id, patient_id, offer.slot_id, now, body)


def decline_offer(engine: Engine, offer_id, now: datetime | None = None) -> str:
    """The patient said NO: "declined" (they stay on the waitlist), else the offer's status."""
    with engine.begin() as conn:
        offer = _load(conn, offer_id)
        if offer is None:
            return "not_found"
        if _set_offer(conn, offer.id, "declined"):
            log.info("waitlist offer %s declined", offer.id)
            return "declined"
        return offer.status


def offer(engine: Engine, offer_id):
    """An offer's row (status, expires_at, the entry's patient), or None: the worker's check
    before it sends the offer's text."""
    with engine.connect() as conn:
        return _load(conn, offer_id)
