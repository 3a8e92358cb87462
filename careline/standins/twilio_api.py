"""A local stand-in for Twilio's Programmable Messaging that speaks Twilio's real protocol, so tests
drive the real `twilio` library and receive real signed webhooks on a free loopback port.

What it serves (the same paths, form fields, JSON and error shapes as api.twilio.com):

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json        send an SMS (basic auth: SID, token)
    GET  /2010-04-01/Accounts/{AccountSid}/Messages.json        list them, newest first (To, From,
                                                                PageSize, Page; Twilio's page JSON)
    GET  /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json  fetch one (its status moves on)

and, playing the carrier and the patient's phone:

    status callbacks   signed POSTs to a message's StatusCallback: "sent" then "delivered"
    send_inbound()     a signed inbound-SMS webhook, as Twilio posts it to the clinic's app
    GET  /phone        a small "patient's phone" page for the sandbox (careline/standins/static/phone.html)

Point the real client at it with `twilio_client(standin)` (it sets `client.api.base_url`, the
library's per-domain host; `TWILIO_API_BASE_URL` in the app's settings does the same).

Faults for tests: `fail_next(n, status=429|500|503)`, `unsubscribe(number)` (error 21610) and
`latency` (seconds before each API answer).

Sandbox (`make run`): python -m careline.standins.twilio_api --port 8790 --webhook http://127.0.0.1:8000/sms
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hmac
import json
import os
import re
import secrets
import signal
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
from twilio.request_validator import RequestValidator

from careline.standins.http import StandinHandler, StandinServer

API_VERSION = "2010-04-01"
PHONE_PAGE = Path(__file__).resolve().parent / "static" / "phone.html"
DEFAULT_NUMBER = "+15005550006"  # Twilio's magic "valid From" test number

_MESSAGES = re.compile(rf"^/{API_VERSION}/Accounts/([^/]+)/Messages\.json$")
_MESSAGE = re.compile(rf"^/{API_VERSION}/Accounts/([^/]+)/Messages/([^/]+)\.json$")
_E164ISH = re.compile(r"^\+?[1-9]\d{5,14}$")
# GSM 03.38 basic set (+ extension table): bodies in it are 160 chars a segment, else UCS-2 at 70.
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)

# Twilio's error codes for the HTTP faults a test can inject.
_FAULTS = {
    429: (20429, "Too Many Requests"),
    500: (20500, "An internal server error has occurred"),
    503: (20503, "Service Unavailable"),
}


def _sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def _rfc2822(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(ts, UTC))  # "Thu, 30 Jul 2015 20:12:31 +0000"


def num_segments(body: str) -> int:
    """How many SMS segments Twilio bills `body` as (GSM-7: 160/153 chars, else UCS-2: 70/67)."""
    if all(c in _GSM7 for c in body):
        single, multi = 160, 153
    else:
        single, multi = 70, 67
    n = len(body)
    return 1 if n <= single else -(-n // multi)


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    """Twilio's REST error JSON."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def sign(auth_token: str, url: str, params: dict[str, str]) -> str:
    """The X-Twilio-Signature Twilio puts on a webhook to `url` with form `params` (HMAC-SHA1)."""
    return RequestValidator(auth_token).compute_signature(url, params)


@dataclass
class Message:
    """One message the stand-in accepted (outbound) or delivered to the app (inbound)."""

    sid: str
    to: str
    from_: str | None
    body: str
    time: float  # time.time() when created
    direction: str = "outbound-api"  # outbound-api, outbound-reply (TwiML), inbound
    status: str = "queued"
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    webhook_status: int | None = None  # inbound only: the app's HTTP answer to the webhook

    def resource(self, account_sid: str) -> dict[str, Any]:
        """The Message resource JSON, as the API returns it."""
        uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{self.sid}.json"
        created = _rfc2822(self.time)
        return {
            "account_sid": account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": created,
            "date_sent": created if self.status in ("sent", "delivered") else None,
            "date_updated": _rfc2822(time.time()),
            "direction": self.direction,
            "error_code": None,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            # A Messaging Service picks the sender later, so Twilio answers 0 segments at first.
            "num_segments": "0" if self.status == "accepted" else str(num_segments(self.body)),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": self.to,
            "uri": uri,
        }


class TwilioStandIn:
    """Twilio's messaging API on a loopback port. Start with `start()` or `with TwilioStandIn() as t:`."""

    def __init__(
        self,
        account_sid: str | None = None,
        auth_token: str | None = None,
        phone_number: str = DEFAULT_NUMBER,
        messaging_service_sid: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_url: str | None = None,
        public_url: str | None = None,
        callback_delay: float = 0.05,
    ):
        self.account_sid = account_sid or _sid("AC")
        self.auth_token = auth_token or secrets.token_hex(16)
        self.phone_number = phone_number  # the clinic's Twilio number
        self.messaging_service_sid = messaging_service_sid
        self.webhook_url = webhook_url  # where inbound SMS go (the phone page uses it)
        self.public_url = public_url  # the URL signatures are computed over
        self.callback_delay = callback_delay  # seconds between "sent" and "delivered"
        self.latency = 0.0  # seconds before each REST API answer
        self.unsubscribed: set[str] = set()  # numbers that replied STOP: error 21610
        self.callbacks: list[dict[str, Any]] = []  # every status callback tried: url, params, status|error
        self._host, self._port = host, port
        self._lock = threading.Condition()
        self._messages: list[Message] = []  # outbound, in order accepted
        self._inbound: list[Message] = []
        self._faults: list[int] = []
        self._attempts = 0
        self._threads: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What replaces https://api.twilio.com, e.g. http://127.0.0.1:54321."""
        if self._server is None:
            raise RuntimeError("the Twilio stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    def gateway_env(self, public_base_url: str) -> dict[str, str]:
        """The gateway's settings that make it send through this stand-in and accept its webhooks
        (signed over `public_base_url`, the gateway's own address)."""
        return {
            "TWILIO_ACCOUNT_SID": self.account_sid,
            "TWILIO_AUTH_TOKEN": self.auth_token,
            "TWILIO_PHONE_NUMBER": self.phone_number,
            "TWILIO_API_BASE_URL": self.base_url,
            "PUBLIC_BASE_URL": public_base_url,
        }

    def start(self) -> TwilioStandIn:
        self._server = StandinServer((self._host, self._port), self, _Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="twilio-standin", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout=2)

    def __enter__(self) -> TwilioStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- faults --------------------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 429) -> None:
        """The next `count` sends fail with `status` (429 → code 20429, 500 → 20500, 503 → 20503)."""
        if status not in _FAULTS:
            raise ValueError(f"status must be one of {sorted(_FAULTS)}")
        with self._lock:
            self._faults.extend([status] * count)

    def unsubscribe(self, *numbers: str) -> None:
        """These numbers replied STOP: sends to them get 400, code 21610."""
        with self._lock:
            self.unsubscribed.update(numbers)

    def resubscribe(self, *numbers: str) -> None:
        with self._lock:
            self.unsubscribed.difference_update(numbers)

    # --- what was sent -----------------------------------------------------------------------------

    @property
    def send_attempts(self) -> int:
        """Every POST to Messages.json, accepted or not (to check that retries are bounded)."""
        with self._lock:
            return self._attempts

    def messages(self, to: str | None = None) -> list[Message]:
        """Copies of the messages accepted for delivery (REST sends and TwiML replies), oldest first."""
        with self._lock:
            return [dataclasses.replace(m) for m in self._messages if to is None or m.to == to]

    def inbound(self, from_: str | None = None) -> list[Message]:
        """Copies of the inbound messages delivered to the app by send_inbound(), oldest first."""
        with self._lock:
            return [dataclasses.replace(m) for m in self._inbound if from_ is None or m.from_ == from_]

    def wait_for(self, count: int, to: str | None = None, timeout: float = 10) -> list[Message]:
        """Block until at least `count` messages (to `to`) were accepted; return them all."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [dataclasses.replace(m) for m in self._messages if to is None or m.to == to]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"expected {count} message(s), got {len(found)} within {timeout}s")
                self._lock.wait(left)

    def clear(self) -> None:
        """Forget messages, callbacks and pending faults (the subscriptions stay)."""
        with self._lock:
            self._messages.clear()
            self._inbound.clear()
            self._faults.clear()
            self.callbacks.clear()
            self._attempts = 0

    # --- playing the patient -----------------------------------------------------------------------

    def send_inbound(
        self,
        webhook_url: str,
        from_: str,
        body: str,
        to: str | None = None,
        message_sid: str | None = None,
        public_url: str | None = None,
        extra: dict[str, str | None] | None = None,
        timeout: float = 30,
    ) -> httpx.Response:
        """POST an inbound SMS webhook to the app exactly as Twilio does: its form fields, signed
        with X-Twilio-Signature over `public_url` (the URL Twilio was configured with; by default
        `webhook_url`). `extra` adds fields, or removes them with None. A TwiML <Message> in the
        answer is recorded as an outbound-reply message, as Twilio would send it."""
        sid = message_sid or _sid("SM")
        to = to or self.phone_number
        params = self._inbound_params(sid, from_, to, body, extra)
        headers = {
            "X-Twilio-Signature": sign(self.auth_token, public_url or webhook_url, params),
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "User-Agent": "TwilioProxy/1.1",
            "Accept": "*/*",
        }
        record = Message(
            sid=sid, to=to, from_=from_, body=body, time=time.time(), direction="inbound", status="received"
        )
        with self._lock:
            self._inbound.append(record)
        with httpx.Client(timeout=timeout, trust_env=False) as http:
            response = http.post(webhook_url, data=params, headers=headers)
        with self._lock:
            record.webhook_status = response.status_code
        if response.is_success:
            self._record_twiml_replies(response.text, patient=from_, clinic=to)
        return response

    def _inbound_params(
        self, sid: str, from_: str, to: str, body: str, extra: dict[str, str | None] | None
    ) -> dict[str, str]:
        """The form fields of Twilio's inbound-SMS webhook; `extra` adds fields, or removes them with None."""
        params: dict[str, str] = {
            "ToCountry": "US",
            "ToState": "",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ToCity": "",
            "FromZip": "",
            "SmsSid": sid,
            "FromState": "",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": body,
            "FromCountry": "US",
            "To": to,
            "ToZip": "",
            "NumSegments": str(num_segments(body)),
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": API_VERSION,
        }
        if self.messaging_service_sid:
            params["MessagingServiceSid"] = self.messaging_service_sid
        for key, value in (extra or {}).items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        return params

    def _record_twiml_replies(self, text: str, patient: str, clinic: str) -> None:
        if "<Response" not in text:
            return
        try:
            root = ET.fromstring(text.strip())
        except ET.ParseError:
            return
        for el in root.iter("Message"):
            body_el = el.find("Body")
            body = (body_el.text if body_el is not None else el.text) or ""
            self._accept(
                Message(
                    sid=_sid("SM"),
                    to=el.get("to") or patient,
                    from_=el.get("from") or clinic,
                    body=body.strip(),
                    time=time.time(),
                    direction="outbound-reply",
                    status="sent",
                )
            )

    # --- the REST API --------------------------------------------------------------------------------

    def _accept(self, message: Message) -> None:
        with self._lock:
            self._messages.append(message)
            self._lock.notify_all()

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, self.account_sid) and hmac.compare_digest(password, self.auth_token)

    def _create(self, form: dict[str, str]) -> tuple[int, dict[str, Any], Message | None]:
        """Messages.json: validation in Twilio's order, then the faults, then the message."""
        with self._lock:
            self._attempts += 1
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            return fault, error_body(fault, *_FAULTS[fault]), None
        to, body = form.get("To", "").strip(), form.get("Body", "")
        from_, service = form.get("From") or None, form.get("MessagingServiceSid") or None
        if not to:
            return 400, error_body(400, 21604, "A 'To' phone number is required."), None
        if not from_ and not service:
            return 400, error_body(400, 21603, "A 'From' phone number is required."), None
        if not body and not form.get("MediaUrl") and not form.get("ContentSid"):
            return 400, error_body(400, 21602, "Message body is required."), None
        if len(body) > 1600:
            return 400, error_body(400, 21617, "The concatenated message body exceeds the 1600 character limit."), None
        if ":" not in to and not _E164ISH.match(to):
            return 400, error_body(400, 21211, f"Invalid 'To' Phone Number: {to}"), None
        with self._lock:
            unsubscribed = to in self.unsubscribed
        if unsubscribed:
            return 400, error_body(400, 21610, "Attempt to send to unsubscribed recipient"), None
        message = Message(
            sid=_sid("SM"),
            to=to,
            from_=from_,
            body=body,
            time=time.time(),
            status="queued" if from_ else "accepted",
            messaging_service_sid=service,
            status_callback=form.get("StatusCallback") or None,
        )
        self._accept(message)
        return 201, message.resource(self.account_sid), message

    def _list(self, query: dict[str, str], path: str) -> dict[str, Any]:
        """Messages.json GET: outbound messages, newest first, filtered by To/From, paged as Twilio
        pages (PageSize default 50, max 1000; Page from 0)."""
        try:
            size = min(max(int(query.get("PageSize") or 50), 1), 1000)
            page = max(int(query.get("Page") or 0), 0)
        except ValueError:
            size, page = 50, 0
        with self._lock:
            found = [
                dataclasses.replace(m)
                for m in reversed(self._messages)
                if (not query.get("To") or m.to == query["To"]) and (not query.get("From") or m.from_ == query["From"])
            ]
        chunk = found[page * size : (page + 1) * size]

        def uri(n: int) -> str:
            params = "&".join(f"{k}={quote(v)}" for k, v in (("To", query.get("To")), ("From", query.get("From"))) if v)
            return f"{path}?{params + '&' if params else ''}PageSize={size}&Page={n}"

        more = (page + 1) * size < len(found)
        return {
            "messages": [m.resource(self.account_sid) for m in chunk],
            "page": page,
            "page_size": size,
            "start": page * size,
            "end": page * size + max(len(chunk) - 1, 0),
            "uri": uri(page),
            "first_page_uri": uri(0),
            "previous_page_uri": uri(page - 1) if page else None,
            "next_page_uri": uri(page + 1) if more else None,
        }

    def _fetch(self, sid: str) -> Message | None:
        with self._lock:
            return next((dataclasses.replace(m) for m in self._messages if m.sid == sid), None)

    # --- status callbacks ----------------------------------------------------------------------------

    def _after_accept(self, message: Message) -> None:
        """Move the message on (queued → sent → delivered), calling its StatusCallback at each step
        Twilio calls it for; an unreachable callback is ignored, as Twilio does."""
        steps = (["queued"] if message.status == "accepted" else []) + ["sent", "delivered"]
        thread = threading.Thread(
            target=self._progress, args=(message, steps), daemon=True, name=f"twilio-standin-{message.sid[:10]}"
        )
        with self._lock:  # started under the lock: stop() never sees a thread it cannot join
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _progress(self, message: Message, steps: list[str]) -> None:
        for step in steps:
            time.sleep(self.callback_delay)
            with self._lock:
                message.status = step
            if message.status_callback:
                self._post_callback(message, step)

    def _post_callback(self, message: Message, status: str) -> None:
        params = {
            "SmsSid": message.sid,
            "SmsStatus": status,
            "MessageStatus": status,
            "To": message.to,
            "MessageSid": message.sid,
            "AccountSid": self.account_sid,
            "From": message.from_ or self.phone_number,
            "ApiVersion": API_VERSION,
        }
        if message.messaging_service_sid:
            params["MessagingServiceSid"] = message.messaging_service_sid
        url = message.status_callback
        attempt: dict[str, Any] = {"url": url, "params": params}
        try:
            with httpx.Client(timeout=10, trust_env=False) as http:
                response = http.post(
                    url,
                    data=params,
                    headers={
                        "X-Twilio-Signature": sign(self.auth_token, url, params),
                        "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
                        "User-Agent": "TwilioProxy/1.1",
                    },
                )
            attempt["status"] = response.status_code
        except httpx.HTTPError as exc:
            attempt["error"] = type(exc).__name__
        with self._lock:
            self.callbacks.append(attempt)

    # --- the phone page --------------------------------------------------------------------------------

    def conversation(self, number: str) -> list[dict[str, Any]]:
        """The phone page's view of one number: what it sent and what it received, oldest first."""
        with self._lock:
            items = [m for m in self._inbound if m.from_ == number] + [m for m in self._messages if m.to == number]
            items = sorted((dataclasses.replace(m) for m in items), key=lambda m: m.time)
        return [
            {
                "sid": m.sid,
                "direction": "inbound" if m.direction == "inbound" else "outbound",
                "body": m.body,
                "status": m.status,
                "time": m.time,
                "webhook_status": m.webhook_status,
            }
            for m in items
        ]


class _Handler(StandinHandler):
    server_version = "twilio-standin"
    server: StandinServer

    @property
    def standin(self) -> TwilioStandIn:
        return self.server.standin

    def _read_form(self) -> dict[str, str]:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
        return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    def _send(
        self,
        status: int,
        payload: Any,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.respond(status, data, content_type, {"Twilio-Request-Id": _sid("RQ"), **(headers or {})})

    def _not_found(self, path: str) -> None:
        self._send(404, error_body(404, 20404, f"The requested resource {path} was not found"))

    def _api_guard(self, path_sid: str, path: str) -> bool:
        """Twilio's order: credentials (401, 20003), then the account in the path (404)."""
        if self.standin.latency:
            time.sleep(self.standin.latency)
        if not self.standin._authorized(self.headers.get("Authorization")):
            self._send(
                401,
                error_body(401, 20003, "Authenticate"),
                headers={"WWW-Authenticate": 'Basic realm="Twilio API"'},
            )
            return False
        if path_sid != self.standin.account_sid:
            self._not_found(path)
            return False
        return True

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if m := _MESSAGES.match(path):
            form = self._read_form()
            if not self._api_guard(m.group(1), path):
                return
            status, payload, message = self.standin._create(form)
            self._send(status, payload)
            if message is not None:
                self.standin._after_accept(message)  # callbacks come after the 201, as from Twilio
        elif path == "/phone/send":
            self._phone_send()
        else:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._not_found(path)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if m := _MESSAGES.match(url.path):
            if self._api_guard(m.group(1), url.path):
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                self._send(200, self.standin._list(query, url.path))
        elif m := _MESSAGE.match(url.path):
            if self._api_guard(m.group(1), url.path):
                self._get_message(m.group(2), url.path)
        elif url.path in ("/phone", "/phone/"):
            if not PHONE_PAGE.exists():
                self._send(404, b"phone page missing", "text/plain")
            else:
                self._send(200, PHONE_PAGE.read_bytes(), "text/html; charset=utf-8")
        elif url.path == "/phone/messages":
            self._phone_messages((parse_qs(url.query).get("number") or [""])[0].strip())
        elif url.path == "/":
            self._send(
                200,
                {
                    "service": "twilio-standin",
                    "account_sid": self.standin.account_sid,
                    "phone_number": self.standin.phone_number,
                    "phone_page": "/phone",
                },
            )
        else:
            self._not_found(url.path)

    def _get_message(self, sid: str, path: str) -> None:
        message = self.standin._fetch(sid)
        if message is None:
            self._not_found(path)
        else:
            self._send(200, message.resource(self.standin.account_sid))

    def _phone_messages(self, number: str) -> None:
        self._send(
            200,
            {
                "number": number,
                "clinic_number": self.standin.phone_number,
                "messages": self.standin.conversation(number) if number else [],
            },
        )

    def _phone_send(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            data = json.loads(raw or b"{}")
            number, body = str(data.get("number", "")).strip(), str(data.get("body", ""))
        except (ValueError, AttributeError):
            self._send(400, {"error": 'send JSON: {"number": ..., "body": ...}'})
            return
        if not number or not body.strip():
            self._send(400, {"error": "a phone number and a message are both needed"})
            return
        standin = self.standin
        if not standin.webhook_url:
            self._send(503, {"error": "no webhook configured: start the stand-in with --webhook URL"})
            return
        try:
            response = standin.send_inbound(standin.webhook_url, number, body, public_url=standin.public_url)
        except httpx.HTTPError as exc:
            self._send(502, {"error": f"the gateway did not answer ({type(exc).__name__})"})
            return
        self._send(200, {"webhook_status": response.status_code})


def main(argv: list[str] | None = None) -> None:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m careline.standins.twilio_api",
        description="Twilio's messaging API and a patient's phone, locally.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument(
        "--account-sid", default=env("TWILIO_ACCOUNT_SID") or "AC" + "0" * 32, help="default: $TWILIO_ACCOUNT_SID"
    )
    parser.add_argument(
        "--auth-token", default=env("TWILIO_AUTH_TOKEN") or "sandbox-auth-token", help="default: $TWILIO_AUTH_TOKEN"
    )
    parser.add_argument(
        "--number",
        default=env("TWILIO_PHONE_NUMBER") or DEFAULT_NUMBER,
        help="the clinic's Twilio number (default: $TWILIO_PHONE_NUMBER)",
    )
    parser.add_argument("--messaging-service-sid", default=env("TWILIO_MESSAGING_SERVICE_SID"))
    parser.add_argument("--webhook", help="the gateway's inbound SMS URL the phone page posts to")
    parser.add_argument("--public-url", help="the URL signatures are computed over (default: --webhook)")
    args = parser.parse_args(argv)

    # Block the stop signals before any thread starts (threads inherit the mask) and wait for them
    # here: a signal the kernel hands to a server thread would otherwise not wake the main thread.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    standin = TwilioStandIn(
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        phone_number=args.number,
        messaging_service_sid=args.messaging_service_sid,
        host=args.host,
        port=args.port,
        webhook_url=args.webhook,
        public_url=args.public_url,
        callback_delay=0.5,
    ).start()
    try:
        print(f"Twilio stand-in: {standin.base_url}  (set TWILIO_API_BASE_URL to this)", flush=True)
        print(f"Patient's phone: {standin.base_url}/phone", flush=True)
        signal.sigwait(stop_signals)
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
