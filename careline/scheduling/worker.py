"""The scheduling worker: plans reminders, offers freed slots to the waitlist, and sends the due
sched_messages rows (reminders, one-time codes, waitlist offers and "it's gone" notices), each
exactly once across restarts and replicas.

A due row is claimed by compare-and-set (pending -> sending, claimed_by, claimed_until), so of two
workers racing for it one sends. Before sending, the row is checked again: the appointment is
still active at the same time (else skipped "changed"), the number has not opted out (STOP, the
patient's record, or Twilio's 21610), and the clinic's sending hours are open (else the row waits
for the opening, or is skipped "too_late" when the visit would start first). Each attempt is
counted before the send; a row claimed again after an attempt that died around the send (its
claim ran out) asks Twilio's list of recent messages (`find_sent`) before sending, so a reminder
accepted by Twilio before a crash is recorded, not sent twice. A worker that is stopped hands its
claims back at once. A code's text is blanked once sent or expired.

After a reminder or an offer, `<prefix>:sched:last:<conversation key>` says what a short reply
(C, R, X, YES, NO) answers (channels/schedule_replies.py).

Runs in the gateway (channels/app.py, SCHEDULING_WORKER) or alone (`careline worker`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import insert, or_, select, update
from sqlalchemy.engine import Engine

from careline.aio import still_running, through_cancellation
from careline.scheduling import reminders, waitlist
from careline.scheduling.identity import phone_key
from careline.scheduling.model import ACTIVE_STATUSES, BackendUnavailable, Scheduler
from careline.scheduling.otp import opted_out
from careline.scheduling.reminders import SendingHours, reminder_key, reminder_text, utc
from careline.scheduling.schema import sched_messages
from careline.settings import SchedulingSettings
from channels.db import sms_delivery
from channels.sms_text import to_gsm7
from channels.twilio_sender import SendError, Unsubscribed
from knowledge.messages import msg

log = logging.getLogger(__name__)

CLAIM_SECONDS = 120  # longer than a send with all its retries
RETRY_SECONDS = 30  # a row that failed for a passing reason is tried again after this
MAX_ATTEMPTS = 5
BATCH = 100
PLAN_EVERY = 15.0  # seconds between planning reminders and offering freed slots
LAST_TTL = 7 * 24 * 3600
STOP_GRACE = 10.0  # seconds a send in flight may finish when the worker is stopped
DEFAULT_CLINIC_NAME = "Maplewood Family Clinic"

Send = Callable[[str, str], Awaitable[str]]  # (to, body) -> message sid
FindSent = Callable[[str, str, set[str]], Awaitable[str | None]]  # (to, body, sids to ignore) -> sid


@dataclass
class Outgoing:
    """A row ready to send: the number, the text, the conversation key, and the reply context."""

    to: str
    body: str
    key: str
    last: dict | None = None
    last_ttl: int = LAST_TTL


@dataclass
class Skip:
    reason: str


@dataclass
class Defer:
    until: datetime


def worker_name() -> str:
    host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname())[:30] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def twilio_callables(sender) -> tuple[Send, FindSent]:
    """send / find_sent over a channels.twilio_sender.TwilioSender."""

    async def send(to: str, body: str) -> str:
        return (await sender.send(to, body)).sid

    async def find_sent(to: str, body: str, exclude: set[str]) -> str | None:
        found = await sender.find_sent(to, body, 0.0, exclude=exclude)
        return found.sid if found else None

    return send, find_sent


class SchedulingWorker:
    """`send(to, body) -> sid` sends one SMS (raising channels.twilio_sender's SendError or
    Unsubscribed); `find_sent(to, body, exclude) -> sid | None` finds one that an attempt that
    died sent. `redis` (asyncio) keeps the reply context and the opt-out cache; None: neither.
    `on_sent(conversation_key, text, kind)` puts what was sent in the conversation's transcript,
    so staff see the reminder that a "C" answers (a one-time code is noted without the code)."""

    def __init__(
        self,
        engine: Engine,
        scheduler: Scheduler,
        send: Send,
        settings: SchedulingSettings,
        clinic_tz: str,
        worker_id: str | None = None,
        secret: str | None = None,
        redis=None,
        *,
        find_sent: FindSent | None = None,
        prefix: str = "careline",
        clinic_name: str | None = None,
        concurrency: int = 8,
        claim_seconds: int = CLAIM_SECONDS,
        clock: Callable[[], datetime] | None = None,
        on_sent: Callable[[str, str, str], Awaitable[None]] | None = None,
    ):
        from channels.consent import SmsRecords

        self.engine, self.scheduler, self.send, self.find_sent = engine, scheduler, send, find_sent
        self.settings = settings
        self.tz = ZoneInfo(clinic_tz)
        self.hours = SendingHours(settings.sms_sending_hours, self.tz)
        self.worker_id = (worker_id or worker_name())[:48]  # + ".<round>" in claimed_by
        self.secret = secret if secret is not None else os.environ.get("CONVERSATION_SECRET", "")
        self.redis = redis
        self.records = SmsRecords(engine, redis, prefix)
        self.prefix = prefix
        self.clinic_name = clinic_name or os.environ.get("CLINIC_NAME") or DEFAULT_CLINIC_NAME
        self.concurrency = concurrency
        self.claim_seconds = claim_seconds
        self.clock = clock or (lambda: datetime.now(UTC))
        self.on_sent = on_sent
        self._round = 0
        self._executor: ThreadPoolExecutor | None = None
        self._tried: set[int] = set()  # rows of this round whose send was called
        self._planned_at: float | None = None
        self._addresses: dict[str, str] | None = None

    # --- the loop ----------------------------------------------------------------------------
    async def run_once(self, now: datetime | None = None, plan: bool = True) -> dict[str, int]:
        """Plan (unless `plan` is False), then send every due row once. Counts by outcome."""
        now = utc(now) or utc(self.clock())
        counts: Counter[str] = Counter()
        if plan:
            await self._plan(now, counts)
        claimed = await self._claim_due(now)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(row) -> str:
            try:
                async with gate:
                    return await self._one(row, now)
            except asyncio.CancelledError:
                if row.id not in self._tried:  # stopping before its send: the claim is handed back at once
                    self._release(row, now - timedelta(seconds=1), tried=False)
                raise  # a send begun is recorded, or its claim runs out and the next worker asks Twilio
            finally:
                self._tried.discard(row.id)

        counts.update(await asyncio.gather(*(one(row) for row in claimed)))
        counts["due"] = len(claimed)
        return {k: v for k, v in counts.items() if v}

    async def _plan(self, now: datetime, counts: Counter) -> None:
        """Plan reminders and offer freed slots; a failure (the schedule unreachable) is logged
        and the due texts (a patient's code) still go out."""
        self._addresses = None
        try:
            counts["planned"] = await self._db(
                reminders.plan_reminders, self.engine, self.scheduler, now, self.settings.reminder_offsets_hours
            )
            if self.hours.open_at(now):
                counts["offered"] = await self._db(
                    waitlist.offer_freed_slots,
                    self.engine,
                    self.scheduler,
                    now,
                    self.settings.waitlist_offer_minutes,
                    self.tz,
                    self.clinic_name,
                )
        except Exception as exc:
            counts["plan_failed"] = 1
            log.error("scheduling worker planning failed error=%s", type(exc).__name__)

    async def run_forever(self, stop_event: asyncio.Event | None = None, interval: float | None = None) -> None:
        """Run until `stop_event` is set or the task is cancelled; a failing round is logged (its
        error type) and retried after a pause."""
        stop_event = stop_event or asyncio.Event()
        interval = interval or self.settings.scheduling_worker_interval_seconds
        failures = 0
        log.info("scheduling worker %s started", self.worker_id)
        while not stop_event.is_set() and still_running():  # even if a client ate the cancellation
            pause = interval
            try:
                plan = self._planned_at is None or time.monotonic() - self._planned_at >= PLAN_EVERY
                counts = await self.run_once(plan=plan)
                if plan:
                    self._planned_at = time.monotonic()
                failures = 0
                if counts.get("due", 0) >= BATCH:
                    pause = 0  # more are due: go on at once
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                pause = min(60.0, interval * 2**failures)
                log.error("scheduling worker round failed error=%s retry_in=%.0fs", type(exc).__name__, pause)
            try:
                await asyncio.wait_for(stop_event.wait(), timeout=pause) if pause else await asyncio.sleep(0)
            except TimeoutError:
                pass
        log.info("scheduling worker %s stopped", self.worker_id)

    def _db(self, fn, *args):
        """Run a database call off the event loop. SQLite: on one thread of the worker's own, so
        its calls never contend for the file's lock (SQLite's busy wait sleeps for milliseconds)."""
        if self._executor is None and self.engine.dialect.name == "sqlite":
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="scheduling-db")
        if self._executor is None:
            return asyncio.to_thread(fn, *args)
        return asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    # --- claiming ------------------------------------------------------------------------------
    def _claimable(self, now: datetime):
        c = sched_messages.c
        return (c.due_at <= now) & or_(c.status == "pending", (c.status == "sending") & (c.claimed_until < now))

    def _claim(self, now: datetime) -> list:
        """Compare-and-set on each due row (still pending, or its claim ran out), with this
        round's token, in one transaction: the rows this round got, each with its attempt counted."""
        c = sched_messages.c
        self._round += 1
        token = f"{self.worker_id}.{self._round}"
        with self.engine.begin() as conn:
            ids = list(
                conn.execute(select(c.id).where(self._claimable(now)).order_by(c.due_at, c.id).limit(BATCH)).scalars()
            )
            if not ids:
                return []
            conn.execute(
                update(sched_messages)
                .where(c.id.in_(ids), self._claimable(now))
                .values(
                    status="sending",
                    claimed_by=token,
                    claimed_until=now + timedelta(seconds=self.claim_seconds),
                    attempts=c.attempts + 1,
                )
            )
            return conn.execute(select(sched_messages).where(c.claimed_by == token).order_by(c.due_at, c.id)).all()

    async def _claim_due(self, now: datetime) -> list:
        claiming = asyncio.ensure_future(self._db(self._claim, now))
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:  # stopped while claiming: the claims made are handed back
            for row in await through_cancellation(claiming):
                self._release(row, now - timedelta(seconds=1))
            raise

    @staticmethod
    def _mine(row):
        c = sched_messages.c
        return (c.id == row.id) & (c.claimed_by == row.claimed_by) & (c.status == "sending")

    def _finish(self, row, status: str, detail: str = "", sid: str | None = None, now=None, key=None) -> bool:
        values = {"status": status, "detail": detail[:120]}
        if row.kind == "otp" or status == "sent":
            values["body"] = None  # a code is never kept; other texts are rebuilt or done with
        if sid:
            values.update(message_sid=sid, sent_at=now)
        with self.engine.begin() as conn:
            changed = conn.execute(update(sched_messages).where(self._mine(row)).values(**values)).rowcount
            if changed and sid and key:
                conn.execute(
                    insert(sms_delivery).values(conversation=key, message_sid=sid, status="queued", detail=row.kind)
                )
        return bool(changed)

    def _release(self, row, until: datetime, status: str = "sending", tried: bool = True) -> None:
        """Hand the claim back: claimable from `until`, or pending until then (the sending hours). A
        claim that never reached the send (`tried` False) is not counted as an attempt."""
        values = {"claimed_until": until}
        if not tried:
            values["attempts"] = row.attempts - 1
        if status == "pending":
            values.update(status="pending", claimed_by=None, claimed_until=None, due_at=until)
        with self.engine.begin() as conn:
            conn.execute(update(sched_messages).where(self._mine(row)).values(**values))

    # --- one row -------------------------------------------------------------------------------
    async def _one(self, row, now: datetime) -> str:
        try:
            return await self._process(row, now)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("scheduling message %s failed kind=%s error=%s", row.id, row.kind, type(exc).__name__)
            tried = row.id in self._tried  # the schedule was down, say: not an attempt at sending
            await self._db(self._release, row, now + timedelta(seconds=RETRY_SECONDS), "sending", tried)
            return "retry"

    async def _process(self, row, now: datetime) -> str:
        prepared = await self._db(self._prepare, row, now)
        if isinstance(prepared, Skip):
            await self._db(self._finish, row, "skipped", prepared.reason)
            log.info("scheduling message %s kind=%s skipped reason=%s", row.id, row.kind, prepared.reason)
            return f"skipped_{prepared.reason}"
        if isinstance(prepared, Defer):
            await self._db(self._release, row, prepared.until, "pending", False)
            return "deferred"
        return await self._deliver(row, prepared, now)

    async def _deliver(self, row, out: Outgoing, now: datetime) -> str:
        out.body = to_gsm7(out.body)  # as the SMS channel sends: one segment holds 160 characters, not 70
        sid = None
        if row.attempts > 1 and self.find_sent is not None:  # an earlier attempt may have sent it
            sid = await self.find_sent(out.to, out.body, await self._db(self._known_sids, row.patient_id))
            if sid:
                log.warning("scheduling message %s found sent by an attempt that died", row.id)
        if sid is None and row.attempts > MAX_ATTEMPTS:
            await self._db(self._finish, row, "failed", "too_many_attempts")
            return "failed"
        try:
            sid = sid or await self._send(row, out, now)
        except Unsubscribed:
            await self.records.opt_out(out.key, "twilio_21610")
            await self._db(self._finish, row, "skipped", "opted_out")
            return "skipped_opted_out"
        except SendError as exc:
            return await self._send_failed(row, exc, now)
        await _to_the_end(self._db(self._finish, row, "sent", "", sid, now, out.key))  # even when stopped
        await self._remember(out)
        await self._in_transcript(out, row.kind)
        log.info("scheduling message %s kind=%s sent", row.id, row.kind)
        return "sent"

    async def _send(self, row, out: Outgoing, now: datetime) -> str:
        """Send; stopped meanwhile, the send in flight is let finish (for a while) and recorded, so
        the next worker does not have to guess whether it went out."""
        self._tried.add(row.id)
        sending = asyncio.ensure_future(self.send(out.to, out.body))
        try:
            return await asyncio.shield(sending)
        except asyncio.CancelledError:
            try:
                sid = await through_cancellation(asyncio.ensure_future(asyncio.wait_for(sending, STOP_GRACE)))
                self._finish(row, "sent", "", sid, now, out.key)
            except Exception as exc:  # unknown: the claim runs out and the next worker asks Twilio
                log.warning("scheduling message %s left in flight at stop error=%s", row.id, type(exc).__name__)
            raise

    async def _send_failed(self, row, exc: SendError, now: datetime) -> str:
        permanent = exc.status is not None and 400 <= exc.status < 500 and exc.status != 429
        log.error("scheduling message %s send failed reason=%s", row.id, exc.reason)
        if permanent:
            await self._db(self._finish, row, "failed", f"twilio_{exc.code or exc.status}")
            return "failed"
        await self._db(self._release, row, now + timedelta(seconds=RETRY_SECONDS))
        return "retry"

    def _known_sids(self, patient_id: str) -> set[str]:
        c = sched_messages.c
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    select(c.message_sid).where(c.patient_id == str(patient_id), c.message_sid.is_not(None))
                ).scalars()
            )

    async def _in_transcript(self, out: Outgoing, kind: str) -> None:
        if self.on_sent is None:
            return
        text = msg("scheduling.transcript.code_sent") if kind == "otp" else out.body
        try:
            await self.on_sent(out.key, text, kind)
        except Exception as exc:  # the text went out; only the staff view misses it
            log.warning("scheduling message not in the transcript kind=%s error=%s", kind, type(exc).__name__)

    async def _remember(self, out: Outgoing) -> None:
        """What a short reply from this number answers (channels/schedule_replies.py)."""
        if self.redis is None or out.last is None:
            return
        try:
            await self.redis.set(f"{self.prefix}:sched:last:{out.key}", json.dumps(out.last), ex=out.last_ttl)
        except Exception as exc:  # the text went out; a C or YES then goes to the assistant
            log.warning("scheduling reply context not kept error=%s", type(exc).__name__)

    # --- what to send, checked again ------------------------------------------------------------
    def _prepare(self, row, now: datetime) -> Outgoing | Skip | Defer:
        patient = self.scheduler.patient(row.patient_id)
        if patient is None or not patient.phone:
            return Skip("no_phone")
        if opted_out(self.engine, self.secret, patient):
            return Skip("opted_out")
        key = phone_key(self.secret, patient.phone)
        if row.kind == "otp":
            if row.body is None or now - utc(row.due_at) > timedelta(seconds=self.settings.otp_ttl_seconds):
                return Skip("expired")
            return Outgoing(patient.phone, row.body, key)
        if row.kind.startswith("reminder_"):
            return self._prepare_reminder(row, now, patient.phone, key)
        if row.kind == "waitlist_offer":
            return self._prepare_offer(row, now, patient.phone, key)
        if row.kind == "waitlist_gone" and row.body:
            return self._in_hours(now, None) or Outgoing(patient.phone, row.body, key)
        return Skip("unknown_kind")

    def _in_hours(self, now: datetime, deadline: datetime | None) -> Skip | Defer | None:
        """None inside the sending hours; else wait for the opening, or too late for `deadline`."""
        if self.hours.open_at(now):
            return None
        opening = self.hours.next_opening(now)
        if deadline is not None and utc(deadline) <= opening:
            return Skip("too_late")
        return Defer(opening)

    def _prepare_reminder(self, row, now: datetime, phone: str, key: str) -> Outgoing | Skip | Defer:
        appointment = self.scheduler.appointment(row.appointment_id) if row.appointment_id else None
        hours = int(row.kind.removeprefix("reminder_").removesuffix("h") or 0)
        if (
            appointment is None
            or appointment.status not in ACTIVE_STATUSES
            or reminder_key(hours, appointment.id, appointment.start) != row.dedupe_key
        ):
            return Skip("changed")
        start = utc(appointment.start)
        if start <= now:
            return Skip("too_late")
        shortest = min(self.settings.reminder_offsets_hours or [hours])
        if hours > shortest and now >= start - timedelta(hours=shortest):
            return Skip("superseded")  # the shorter reminder is due too: one text, not two
        waiting = self._in_hours(now, start)
        if waiting is not None:
            return waiting
        body = reminder_text(appointment, self.tz, self.clinic_name, self._address(appointment.location_id))
        return Outgoing(phone, body, key, {"kind": "reminder", "appointment_id": appointment.id})

    def _prepare_offer(self, row, now: datetime, phone: str, key: str) -> Outgoing | Skip | Defer:
        offer_id = row.dedupe_key.rsplit(":", 1)[-1]
        offer = waitlist.offer(self.engine, offer_id)
        if offer is None or offer.status != "offered" or not row.body:
            return Skip("changed")
        expires = utc(offer.expires_at)
        if expires <= now:
            return Skip("expired")
        waiting = self._in_hours(now, expires)
        if waiting is not None:
            return waiting
        ttl = max(60, int((expires - now).total_seconds()) + 3600)  # a late YES is told it expired
        return Outgoing(phone, row.body, key, {"kind": "offer", "offer_id": str(offer.id)}, min(ttl, LAST_TTL))

    def _address(self, location_id: str) -> str:
        if self._addresses is None:
            try:
                self._addresses = {loc.id: loc.address for loc in self.scheduler.locations()}
            except BackendUnavailable:
                return ""
        return self._addresses.get(location_id, "")


async def _to_the_end(awaitable):
    """Await something that must complete: cancelled meanwhile, it still completes, then the
    cancellation goes on."""
    future = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await through_cancellation(future)
        raise


# --- wiring: the gateway, `careline worker` ----------------------------------------------------
def from_settings(
    settings, scheduling: SchedulingSettings, engine: Engine, scheduler: Scheduler, redis, sender, store=None
):
    """The worker as the gateway (or `careline worker`) runs it: settings is careline.settings.Settings;
    `store` (channels.store.ConversationStore) gets what is sent, in the patient's transcript."""
    send, find_sent = twilio_callables(sender)
    return SchedulingWorker(
        engine,
        scheduler,
        send,
        scheduling,
        settings.clinic_timezone,
        secret=settings.conversation_secret,
        redis=redis,
        find_sent=find_sent,
        prefix=settings.redis_key_prefix,
        clinic_name=settings.clinic_name,
        on_sent=transcript_writer(store) if store is not None else None,
    )


def transcript_writer(store) -> Callable[[str, str, str], Awaitable[None]]:
    """on_sent for SchedulingWorker: an assistant line in the conversation's transcript (the same
    key the patient's texts have), marked with what it was (reminder_72h, waitlist_offer, ...)."""

    async def write(key: str, text: str, kind: str) -> None:
        # a conversation in its own right (created, retained, erased as any): a bare transcript
        # would look like the leftover of an erased one, and the retention sweep would take it and
        # the reply context with it
        await store.ensure(key, "sms")
        await store.append(key, "bot", text=text, scheduled=kind)

    return write


async def run_standalone(settings, stop_event: asyncio.Event | None = None) -> None:
    """`careline worker`: the same worker outside the gateway, until SIGINT/SIGTERM."""
    import signal

    from redis.asyncio import Redis

    from careline.scheduling import make_scheduler
    from channels.db import make_engine
    from channels.twilio_sender import TwilioSender

    if not settings.sms_enabled:
        raise ValueError("the scheduling worker sends SMS: set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and a sender")
    scheduling = SchedulingSettings()
    engine = make_engine(settings.database_url)
    redis = Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout_seconds)
    sender = TwilioSender.from_settings(settings)
    stop_event = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_event.set)
    try:
        scheduler = make_scheduler(
            scheduling, engine, timezone=settings.clinic_timezone, secret=settings.conversation_secret
        )
        from channels.app import make_store

        worker = from_settings(settings, scheduling, engine, scheduler, redis, sender, make_store(settings, redis))
        await worker.run_forever(stop_event)
    finally:
        await redis.aclose()
        engine.dispose()
