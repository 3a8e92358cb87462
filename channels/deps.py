"""The gateway's services as typed FastAPI dependencies.

The app keeps its configuration and, once the lifespan has started them, its services on
`app.state`; this is the only module that reads it. Handlers ask for what they use
(`gateway: GatewayDep`), and tests replace any of it with `app.dependency_overrides`. The
providers take an `HTTPConnection`, so the same dependency serves HTTP routes and WebSockets.
They are async only because FastAPI runs a sync dependency in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI
from starlette.requests import HTTPConnection

from careline.settings import Settings
from channels.paging import Pager
from channels.pipeline import Gateway
from channels.ratelimit import RateLimits
from channels.readiness import Readiness
from channels.sms import SmsChannel
from channels.staff.fanout import Fanout
from channels.store import ConversationStore
from channels.web_security import Origins

if TYPE_CHECKING:  # the staff modules import this one for their dependencies
    from careline.scheduling.model import Scheduler
    from channels.staff.auth import StaffAuth
    from channels.staff.console import StaffConsole


@dataclass
class Services:
    """What the lifespan started; a handler never sees the clients it does not use."""

    gateway: Gateway
    store: ConversationStore
    limits: RateLimits
    readiness: Readiness
    sms: SmsChannel | None = None
    pager: Pager | None = None  # SMS paging for API clients that ask for render "sms"
    fanout: Fanout | None = None  # live events across gateway processes (staff console, widget)
    staff: StaffConsole | None = None  # the staff console's services (channels/routes/staff.py)
    staff_auth: StaffAuth | None = None  # staff accounts, sessions and audit (channels/staff/auth.py)
    scheduler: Scheduler | None = None  # appointments (careline/scheduling/): SQL or the clinic's FHIR server


def configure(app: FastAPI, settings: Settings, origins: Origins) -> None:
    """What is known when the app is built, before any service starts."""
    app.state.settings = settings
    app.state.origins = origins


def attach(app: FastAPI, services: Services) -> None:
    app.state.services = services


async def get_settings(conn: HTTPConnection) -> Settings:
    return conn.app.state.settings


async def get_origins(conn: HTTPConnection) -> Origins:
    return conn.app.state.origins


async def get_services(conn: HTTPConnection) -> Services:
    return conn.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_gateway(services: ServicesDep) -> Gateway:
    return services.gateway


async def get_store(services: ServicesDep) -> ConversationStore:
    return services.store


async def get_limits(services: ServicesDep) -> RateLimits:
    return services.limits


async def get_readiness(services: ServicesDep) -> Readiness:
    return services.readiness


async def get_pager(services: ServicesDep) -> Pager | None:
    return services.pager


async def get_fanout(services: ServicesDep) -> Fanout | None:
    return services.fanout


async def get_staff_console(services: ServicesDep) -> StaffConsole:
    if services.staff is None:
        raise RuntimeError("the staff console is not running")
    return services.staff


async def get_staff_auth(services: ServicesDep) -> StaffAuth:
    if services.staff_auth is None:
        raise RuntimeError("the staff console is not configured (services.staff_auth)")
    return services.staff_auth


async def get_scheduler(services: ServicesDep) -> Scheduler:
    if services.scheduler is None:
        raise RuntimeError("scheduling is not running")
    return services.scheduler


async def get_sms_channel(services: ServicesDep) -> SmsChannel:
    if services.sms is None:  # the SMS routes are only included when the channel is configured
        raise RuntimeError("the SMS channel is not running")
    return services.sms


SettingsDep = Annotated[Settings, Depends(get_settings)]
OriginsDep = Annotated[Origins, Depends(get_origins)]
GatewayDep = Annotated[Gateway, Depends(get_gateway)]
StoreDep = Annotated[ConversationStore, Depends(get_store)]
LimitsDep = Annotated[RateLimits, Depends(get_limits)]
ReadinessDep = Annotated[Readiness, Depends(get_readiness)]
SmsChannelDep = Annotated[SmsChannel, Depends(get_sms_channel)]
PagerDep = Annotated[Pager | None, Depends(get_pager)]
FanoutDep = Annotated[Fanout | None, Depends(get_fanout)]
SchedulerDep = Annotated["Scheduler", Depends(get_scheduler)]


def client_ip(conn: HTTPConnection, trust_forwarded: bool) -> str:
    if trust_forwarded:
        forwarded = conn.headers.get("x-forwarded-for")
        if forwarded:
            # the last hop is the one our proxy added; the ones before it are the client's to invent
            return forwarded.split(",")[-1].strip()
    return conn.client.host if conn.client else "unknown"


async def get_client_key(conn: HTTPConnection, settings: SettingsDep, gateway: GatewayDep) -> str:
    """The client's address as the rate limiter counts it: a pseudonym, never the address."""
    return gateway.key_for("ip", client_ip(conn, settings.trust_forwarded_headers))


ClientKeyDep = Annotated[str, Depends(get_client_key)]
