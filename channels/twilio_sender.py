"""Outbound SMS through Twilio's REST API with the `twilio` library: one client class for the one
external system. Blocking calls run in a thread; 429 and 5xx are retried with backoff, a bounded
number of times; error 21610 (the recipient replied STOP to the carrier) is its own error.

Twilio's create call takes no idempotency key, so a process that dies after Twilio accepted a
message but before it noted so cannot tell whether it was sent. `find_sent` reads Twilio's
own list of recent messages to that number, so the next attempt finds it instead of sending
it again."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

log = logging.getLogger(__name__)

UNSUBSCRIBED = 21610


class SendError(Exception):
    """The message could not be sent (after retries, or a permanent error)."""

    def __init__(self, reason: str, status: int | None = None, code: int | None = None):
        super().__init__(reason)
        self.reason, self.status, self.code = reason, status, code


class Unsubscribed(SendError):
    pass


@dataclass
class Sent:
    sid: str
    status: str


class TwilioSender:
    @classmethod
    def from_settings(cls, settings, status_callback: str | None = None) -> TwilioSender:
        """The sender of a gateway's settings (careline.settings.Settings): the SMS channel's and
        the scheduling worker's."""
        return cls(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            settings.twilio_phone_number,
            settings.twilio_messaging_service_sid,
            settings.twilio_api_base_url,
            status_callback,
            retries=settings.sms_send_retries,
        )

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        api_base_url: str | None = None,
        status_callback: str | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        timeout: float = 10.0,
    ):
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        # The library logs each request (number and body) at INFO: never let that reach a log.
        logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
        self.client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout))
        if api_base_url:
            self.client.api.base_url = api_base_url.rstrip("/")
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.status_callback = status_callback
        self.retries = retries
        self.backoff = backoff

    def _create(self, to: str, body: str):
        kwargs = {"to": to, "body": body}
        if self.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        else:
            kwargs["from_"] = self.from_number
        if self.status_callback:
            kwargs["status_callback"] = self.status_callback
        return self.client.messages.create(**kwargs)

    def _recent(self, to: str, limit: int):
        return self.client.messages.list(to=to, limit=limit)

    async def find_sent(
        self, to: str, body: str, since: float, exclude: set[str] = frozenset(), limit: int = 20
    ) -> Sent | None:
        """A message to `to` with exactly this body, created at or after `since` (epoch seconds; a
        minute of clock skew allowed) and not in `exclude`, among Twilio's latest `limit` to that
        number. None when there is none, or Twilio cannot be asked (then the caller sends)."""
        from twilio.base.exceptions import TwilioException

        try:
            recent = await asyncio.to_thread(self._recent, to, limit)
        except (TwilioException, OSError) as exc:
            log.warning("sms sent-check failed reason=%s", type(exc).__name__)
            return None
        for message in recent:
            created = message.date_created.timestamp() if message.date_created else 0.0
            if message.body == body and created >= since - 60 and message.sid not in exclude:
                return Sent(message.sid, message.status or "queued")
        return None

    async def send(self, to: str, body: str) -> Sent:
        from twilio.base.exceptions import TwilioException, TwilioRestException

        attempt = 0
        while True:
            try:
                message = await asyncio.to_thread(self._create, to, body)
                return Sent(message.sid, message.status or "queued")
            except TwilioRestException as exc:
                if exc.code == UNSUBSCRIBED:
                    raise Unsubscribed("recipient unsubscribed", exc.status, exc.code) from exc
                retryable = exc.status == 429 or exc.status >= 500
                if not retryable or attempt >= self.retries:
                    raise SendError(f"twilio error {exc.status}/{exc.code}", exc.status, exc.code) from exc
                log.warning("sms send retry status=%s code=%s attempt=%d", exc.status, exc.code, attempt + 1)
            except (TwilioException, OSError) as exc:  # connection errors, timeouts
                if attempt >= self.retries:
                    raise SendError(f"twilio unreachable: {type(exc).__name__}") from exc
                log.warning("sms send retry reason=%s attempt=%d", type(exc).__name__, attempt + 1)
            attempt += 1
            await asyncio.sleep(self.backoff * (2 ** (attempt - 1)) * (0.8 + 0.4 * random.random()))
