"""The gateway's ASGI app, wiring only: settings, clients, stores, routers.

The routes live in channels/routes/ (health, web chat, API, SMS), and take the services started
here through the dependencies of channels/deps.py. The lifespan starts the services in order and
stops whatever it started, in reverse, even when start-up fails half-way.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.engine import Engine

from careline.aio import cancel_and_wait
from careline.scheduling import make_scheduler
from careline.scheduling.model import Scheduler
from careline.settings import SchedulingSettings, Settings, get_settings
from channels import deps
from channels.audit import SafetyAudit
from channels.consent import SmsRecords
from channels.crypto import Cipher
from channels.db import make_engine
from channels.errors import CareLineError
from channels.paging import Pager
from channels.pipeline import Gateway
from channels.privacy import run_periodically
from channels.rasa_client import RasaClient
from channels.ratelimit import RateLimits
from channels.readiness import Readiness
from channels.routes import api, calendar, health, schedule, sms, staff, web
from channels.routes.edge import careline_error
from channels.safety import IsolatedScreen, SafetyScreen
from channels.sms import SmsChannel, SmsTexts
from channels.staff import auth as staff_auth
from channels.staff.auth import StaffAuth
from channels.staff.canned import CannedReplies
from channels.staff.console import StaffConsole
from channels.staff.desk import ServiceLevels, StaffDesk
from channels.staff.fanout import Fanout
from channels.staff.shifts import Presence, Shift, StaffedHours
from channels.store import ConversationStore
from channels.twilio_sender import TwilioSender
from channels.web_security import Origins, SecurityHeaders

log = logging.getLogger(__name__)

RETENTION_SWEEP_SECONDS = 3600


def create_app(settings: Settings | None = None, screen: SafetyScreen | None = None) -> FastAPI:
    """The app; `screen` replaces the isolated worker screen (tests)."""
    settings = settings or get_settings()
    # The interactive API docs are for development: a production gateway does not describe itself.
    docs = {} if not settings.production else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="CareLine gateway", version="0.1.0", lifespan=_lifespan(settings, screen), **docs)
    deps.configure(app, settings, make_origins(settings))
    app.add_middleware(
        SecurityHeaders,
        frame_ancestors=settings.origins,
        hsts=any((u or "").startswith("https://") for u in (settings.public_url, settings.public_base_url)),
        trust_forwarded=settings.trust_forwarded_headers,
    )
    app.add_exception_handler(CareLineError, careline_error)
    if settings.sms_enabled:
        app.include_router(sms.router)
    app.include_router(health.router)
    app.include_router(api.router)
    app.include_router(web.router)
    app.include_router(calendar.router)
    app.include_router(staff_auth.router)
    app.include_router(schedule.router)  # before staff.router: its /staff/{name} would take /staff/schedule
    app.include_router(staff.router)
    return app


def _lifespan(settings: Settings, screen: SafetyScreen | None):
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with AsyncExitStack() as cleanup:  # whatever was started is stopped, even if start-up fails
            deps.attach(app, await start_services(settings, screen, cleanup))
            yield

    return lifespan


async def start_services(settings: Settings, screen: SafetyScreen | None, cleanup: AsyncExitStack) -> deps.Services:
    """Start every service the routes use; each one's stop is pushed on `cleanup` as soon as it exists."""
    redis = connect_redis(settings)
    cleanup.push_async_callback(redis.aclose)
    rasa = RasaClient(
        settings.rasa_url, settings.rasa_token, settings.rasa_timeout_seconds, settings.rasa_connect_retries
    )
    cleanup.push_async_callback(rasa.aclose)
    http = httpx.AsyncClient(timeout=3.0)
    cleanup.push_async_callback(http.aclose)
    store = make_store(settings, redis)
    limits = make_limits(settings, redis)
    engine = make_engine(settings.database_url)
    cleanup.callback(engine.dispose)
    if screen is None:
        screen = await start_isolated_screen(settings, cleanup)
    cipher = Cipher(settings.data_encryption_key)
    pager = Pager(redis, cipher, settings.redis_key_prefix)
    shift = make_shift(settings, redis)
    gateway = Gateway(
        store,
        rasa,
        settings.conversation_secret,
        screen,
        settings.max_message_chars,
        audit=SafetyAudit(engine),
        cipher=cipher,
        pager=pager,
        shift=shift,
    )
    start_retention_sweep(settings, redis, engine, cipher, cleanup)
    sms_channel = await start_sms(settings, redis, gateway, engine, cleanup) if settings.sms_enabled else None
    readiness = Readiness(redis, rasa, http, settings.action_server_url, screen, sms_channel)
    fanout = Fanout(redis, settings.redis_key_prefix)
    cleanup.push_async_callback(fanout.stop)
    await fanout.start()
    console = StaffConsole(
        StaffDesk(redis, store, ServiceLevels.parse(settings.staff_sla_seconds)),
        shift.presence,
        shift,
        CannedReplies(engine, settings.clinic_name, settings.clinic_phone),
        fanout,
        cipher,
        rasa,
        sms_channel,
    )
    auth = StaffAuth.from_settings(settings, engine, redis, limits)
    scheduler = await start_scheduling(settings, redis, engine, gateway, sms_channel, cleanup)
    return deps.Services(gateway, store, limits, readiness, sms_channel, pager, fanout, console, auth, scheduler)


async def start_scheduling(
    settings: Settings,
    redis: Redis,
    engine: Engine,
    gateway: Gateway,
    sms_channel: SmsChannel | None,
    cleanup: AsyncExitStack,
) -> Scheduler:
    """The schedule (SQL, or the clinic's FHIR server): the sample schedule loaded and its slots
    made ahead (careline/scheduling/calendar.py) for the SQL backend."""
    scheduling = SchedulingSettings()
    scheduler = make_scheduler(
        scheduling, engine, timezone=settings.clinic_timezone, secret=settings.conversation_secret
    )
    if scheduling.scheduling_backend == "sql":
        from careline.scheduling.calendar import ensure_schedule

        try:  # a broken schedule file must not take triage and the safety screen down with it
            await asyncio.to_thread(
                ensure_schedule, engine, scheduling, settings.clinic_timezone, None, settings.conversation_secret
            )
        except Exception:
            log.exception("the clinic's schedule could not be loaded (SCHEDULE_FILE); booking hands off to staff")
    if sms_channel is not None:
        # reminders, codes and offers go out through the SMS channel's sender; C/R/X/YES/NO come back
        from careline.scheduling.worker import STOP_GRACE, from_settings
        from channels.schedule_replies import ScheduleReplies

        gateway.schedule_replies = ScheduleReplies(
            redis, engine, scheduler, settings.redis_key_prefix, settings.clinic_timezone, settings.clinic_phone
        )
        if scheduling.scheduling_worker:
            worker = from_settings(settings, scheduling, engine, scheduler, redis, sms_channel.sender, gateway.store)
            task = asyncio.create_task(worker.run_forever(), name="scheduling-worker")
            # a send in flight gets STOP_GRACE to finish and be recorded (careline/scheduling/worker.py)
            cleanup.push_async_callback(_cancel, task, STOP_GRACE + 5)
    return scheduler


def make_shift(settings: Settings, redis: Redis) -> Shift:
    hours = StaffedHours.parse(settings.staff_hours, settings.clinic_timezone)
    return Shift(hours, Presence(redis, settings.redis_key_prefix), settings.clinic_phone)


def make_origins(settings: Settings) -> Origins:
    return Origins(
        settings.origins,
        settings.public_url,
        settings.public_base_url,
        trust_forwarded=settings.trust_forwarded_headers,
    )


def connect_redis(settings: Settings) -> Redis:
    # Every Redis call gives up after redis_timeout_seconds: a hanging Redis must not hold a patient.
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        retry_on_timeout=False,
    )


def make_store(settings: Settings, redis: Redis) -> ConversationStore:
    return ConversationStore(
        redis,
        settings.redis_key_prefix,
        settings.retention_seconds,
        settings.transcript_max_items,
        settings.dedupe_ttl_seconds,
    )


def make_limits(settings: Settings, redis: Redis) -> RateLimits:
    return RateLimits(
        settings.redis_url,
        settings.redis_key_prefix,
        settings.rate_limit_conversation,
        settings.rate_limit_client,
        redis=redis,
    )


async def start_isolated_screen(settings: Settings, cleanup: AsyncExitStack) -> IsolatedScreen:
    isolated = IsolatedScreen(settings.screen_workers, settings.screen_timeout_seconds)
    cleanup.callback(isolated.close)
    await isolated.warm_up()
    return isolated


async def _cancel(task: asyncio.Task, timeout: float = 10.0) -> None:
    if await cancel_and_wait([task], timeout=timeout):
        log.error("background task did not stop task=%s", task.get_name())


def start_retention_sweep(
    settings: Settings, redis: Redis, engine: Engine, cipher: Cipher, cleanup: AsyncExitStack
) -> None:
    """Retention: everything about a conversation goes RETENTION_DAYS after its first message."""
    sweep = asyncio.create_task(
        run_periodically(redis, engine, settings, interval=RETENTION_SWEEP_SECONDS, cipher=cipher),
        name="retention-sweep",
    )
    cleanup.push_async_callback(_cancel, sweep)


async def start_sms(
    settings: Settings, redis: Redis, gateway: Gateway, engine: Engine, cleanup: AsyncExitStack
) -> SmsChannel:
    # Twilio sends and SQL writes run in threads: room for every shard and the webhooks.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=4 * settings.sms_shards + 8))
    channel = build_sms_channel(settings, redis, gateway, engine)
    cleanup.push_async_callback(channel.stop)
    await channel.start()
    log.info("sms channel on shards=%d", settings.sms_shards)
    return channel


def build_sms_channel(settings: Settings, redis: Redis, gateway: Gateway, engine: Engine) -> SmsChannel:
    callback = f"{settings.public_base_url.rstrip('/')}/sms/twilio/status" if settings.public_base_url else None
    sender = TwilioSender.from_settings(settings, callback)
    return SmsChannel(
        redis,
        gateway,
        sender,
        SmsRecords(engine, redis, settings.redis_key_prefix),
        SmsTexts(settings.clinic_name, settings.clinic_phone),
        shards=settings.sms_shards,
        prefix=settings.redis_key_prefix,
        max_chars=settings.max_message_chars,
        dedupe_ttl=settings.dedupe_ttl_seconds,
        cipher=gateway.cipher,
        claim_idle=settings.sms_claim_idle_seconds,
        state_timeout=settings.redis_timeout_seconds,
    )
