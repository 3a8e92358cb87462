"""Client of the Rasa server's REST channel and HTTP API (loopback only)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from careline.contracts import Control, parse_control
from channels.errors import UpstreamUnavailable
from channels.messages import Button, OutboundMessage

log = logging.getLogger(__name__)


@dataclass
class RasaReply:
    messages: list[OutboundMessage] = field(default_factory=list)
    # The action server's control payloads (hand-off, close), read and in order.
    controls: list[Control] = field(default_factory=list)


def parse_rest_output(items: list[dict[str, Any]]) -> RasaReply:
    """Turn the REST channel's list of bot messages into our messages and control payloads."""
    reply = RasaReply()
    for item in items:
        control = parse_control(item.get("custom"))
        if control is not None:
            reply.controls.append(control)
        text = item.get("text")
        if text:
            buttons = tuple(
                Button(str(b.get("title", "")), str(b.get("payload", "")))
                for b in item.get("buttons") or ()
                if isinstance(b, dict)
            )
            reply.messages.append(OutboundMessage(text=str(text), buttons=buttons))
    return reply


class RasaClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        connect_retries: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.connect_retries = connect_retries
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=3.0), transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, sender_id: str, text: str, metadata: dict[str, Any] | None = None) -> RasaReply:
        body = {"sender": sender_id, "message": text, "metadata": metadata or {}}
        # Only connection failures are retried: a request Rasa received may have changed the
        # tracker, and sending it twice would answer twice.
        for attempt in range(self.connect_retries + 1):
            try:
                resp = await self._client.post(f"{self.base_url}/webhooks/rest/webhook", json=body)
                break
            except httpx.ConnectError as exc:
                if attempt == self.connect_retries:
                    raise UpstreamUnavailable("assistant unavailable") from exc
                await asyncio.sleep(0.5 * (attempt + 1))
            except httpx.HTTPError as exc:
                raise UpstreamUnavailable("assistant did not answer in time") from exc
        if resp.status_code != 200:
            log.warning("rasa webhook status=%s", resp.status_code)
            raise UpstreamUnavailable("assistant returned an error")
        try:
            items = resp.json()
        except ValueError as exc:
            raise UpstreamUnavailable("assistant returned malformed output") from exc
        return parse_rest_output(items if isinstance(items, list) else [])

    async def ready(self) -> bool:
        try:
            resp = await self._client.get(
                f"{self.base_url}/status", params={"token": self.token} if self.token else None, timeout=3.0
            )
            return resp.status_code == 200 and bool(resp.json().get("model_id"))
        except (httpx.HTTPError, ValueError):
            return False
