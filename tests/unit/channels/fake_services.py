"""The gateway app with its services replaced through `app.dependency_overrides`: the routes'
edge checks run for real, and every call that would reach the gateway, Redis or Twilio is recorded."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import FastAPI

from careline.settings import Settings
from channels import deps
from channels.app import create_app
from channels.errors import CareLineError, RateLimited
from channels.messages import InboundMessage, OutboundMessage
from channels.pipeline import HandleResult
from channels.safety import PassThroughScreen, ScreenResult
from channels.store import Owner

SECRET = "s" * 64
ISSUED_TOKEN = "issued-token-0123456789abcdef"


@dataclass
class FakeGateway:
    replies: list[OutboundMessage] = field(default_factory=lambda: [OutboundMessage("Hello from the bot")])
    flagged: bool = False
    error: CareLineError | None = None
    handled: list[InboundMessage] = field(default_factory=list)
    screened: list[InboundMessage] = field(default_factory=list)

    def key_for(self, channel: str, address: str) -> str:
        return f"{channel}:{address}"

    async def screen(self, message: InboundMessage) -> ScreenResult | None:
        self.screened.append(message)
        return ScreenResult(rule="test_rule") if self.flagged else None

    async def handle(self, message: InboundMessage) -> HandleResult:
        self.handled.append(message)
        if self.error is not None:
            raise self.error
        return HandleResult(self.key_for(message.channel, message.address), Owner.BOT, list(self.replies))


@dataclass
class FakeLimits:
    refuse: set[str] = field(default_factory=set)  # scopes over their limit
    checked: list[tuple[str, str]] = field(default_factory=list)

    async def check(self, scope: str, identity: str) -> None:
        self.checked.append((scope, identity))
        if scope in self.refuse:
            raise RateLimited(f"too many messages per {scope}", retry_after=7)


@dataclass
class FakeStore:
    issued: set[str] = field(default_factory=lambda: {ISSUED_TOKEN})
    transcripts: dict[str, list[dict]] = field(default_factory=dict)
    down: bool = False

    async def web_token_issued(self, token: str) -> bool:
        self._up()
        return token in self.issued

    async def issue_web_token(self) -> str:
        self._up()
        token = f"new-token-{len(self.issued):020d}"
        self.issued.add(token)
        return token

    async def transcript(self, key: str) -> list[dict]:
        return self.transcripts.get(key, [])

    async def owner(self, key: str) -> Owner:
        return Owner.BOT

    def _up(self) -> None:
        if self.down:
            raise ConnectionError("redis is down")


@dataclass
class FakeReadiness:
    ready: bool = True

    async def report(self) -> tuple[bool, dict]:
        return self.ready, {"checks": {"redis": self.ready}}


@dataclass
class FakeRecords:
    statuses: list[tuple] = field(default_factory=list)
    opt_outs: list[tuple] = field(default_factory=list)

    async def delivery_status(self, sid: str, state: str, error_code: str | None) -> None:
        self.statuses.append((sid, state, error_code))

    async def opt_out(self, key: str, source: str) -> None:
        self.opt_outs.append((key, source))


@dataclass
class FakeSms:
    gateway: FakeGateway
    accepted: list[dict] = field(default_factory=list)
    records: FakeRecords = field(default_factory=FakeRecords)

    async def accept(self, form: dict[str, str]) -> list[str]:
        self.accepted.append(form)
        return ["Thanks, we got your message."]


@dataclass
class Fakes:
    gateway: FakeGateway = field(default_factory=FakeGateway)
    store: FakeStore = field(default_factory=FakeStore)
    limits: FakeLimits = field(default_factory=FakeLimits)
    readiness: FakeReadiness = field(default_factory=FakeReadiness)
    sms: FakeSms | None = None

    def services(self) -> deps.Services:
        return deps.Services(self.gateway, self.store, self.limits, self.readiness, self.sms)


def settings(**overrides) -> Settings:
    return Settings(**{"conversation_secret": SECRET, "_env_file": None, **overrides})


def app_with(fakes: Fakes, **overrides) -> FastAPI:
    """The real app (routers, middleware, error handler) on fake services; the lifespan never runs
    as long as the TestClient is not used as a context manager."""
    app = create_app(settings(**overrides), screen=PassThroughScreen())
    app.dependency_overrides[deps.get_services] = fakes.services
    return app
