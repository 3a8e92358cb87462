"""Twilio's webhooks: the inbound message (`POST /sms/twilio`) and the delivery status callback
(`POST /sms/twilio/status`). Both are verified before anything is read from them: the body's size
(413), the X-Twilio-Signature over the public URL, the account and (inbound) the clinic's number
(403, logged without content). The channel itself is channels/sms.py:SmsChannel."""

from __future__ import annotations

import hmac
import logging
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response
from twilio.request_validator import RequestValidator

from careline.settings import Settings
from channels.deps import SettingsDep, SmsChannelDep
from channels.errors import PayloadTooLarge
from channels.http_limits import read_body_capped
from channels.sms import public_url, twiml_response

log = logging.getLogger(__name__)

# Twilio's error code for a message to a number that has replied STOP.
UNSUBSCRIBED = "21610"


def _plain(text: str, status_code: int) -> Response:
    return Response(text, status_code=status_code, media_type="text/plain")


def _refuse(reason: str, path: str) -> Response:
    log.warning("sms webhook rejected: %s path=%s", reason, path)
    return _plain("forbidden", 403)


async def verified_form(request: Request, settings: Settings, inbound: bool) -> dict[str, str] | Response:
    """The webhook's form once verified, or the response refusing it."""
    path = request.url.path
    try:
        raw = await read_body_capped(request, settings.max_body_bytes)
    except PayloadTooLarge:
        log.warning("sms webhook refused: body over %d bytes path=%s", settings.max_body_bytes, path)
        return _plain("payload too large", 413)
    form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
    url = public_url(request, settings.public_base_url, settings.trust_forwarded_headers)
    signature = request.headers.get("x-twilio-signature", "")
    if not signature or not RequestValidator(settings.twilio_auth_token).validate(url, form, signature):
        return _refuse("missing signature" if not signature else "invalid signature", path)
    if not hmac.compare_digest(form.get("AccountSid", "").encode(), (settings.twilio_account_sid or "").encode()):
        return _refuse("another account", path)
    service = settings.twilio_messaging_service_sid
    if (
        inbound
        and form.get("To", "") not in settings.inbound_numbers
        and not (service and form.get("MessagingServiceSid") == service)
    ):
        return _refuse("not one of our numbers", path)
    return form


router = APIRouter(tags=["sms"])


@router.post("/sms/twilio")
async def inbound(request: Request, settings: SettingsDep, channel: SmsChannelDep) -> Response:
    form = await verified_form(request, settings, inbound=True)
    if isinstance(form, Response):
        return form
    missing = [f for f in ("MessageSid", "From") if not form.get(f)]
    media = form.get("NumMedia") or "0"
    if "Body" not in form and not (media.isdigit() and int(media) > 0):
        missing.append("Body")
    if missing:
        log.warning("sms webhook malformed: missing %s", ",".join(missing))
        return _plain(f"missing {', '.join(missing)}", 400)
    return twiml_response(await channel.accept(form))


@router.post("/sms/twilio/status")
async def status(request: Request, settings: SettingsDep, channel: SmsChannelDep) -> Response:
    form = await verified_form(request, settings, inbound=False)
    if isinstance(form, Response):
        return form
    sid, state = form.get("MessageSid"), form.get("MessageStatus") or form.get("SmsStatus")
    if not sid or not state:
        return _plain("missing MessageSid or MessageStatus", 400)
    await channel.records.delivery_status(sid, state, form.get("ErrorCode"))
    if form.get("ErrorCode") == UNSUBSCRIBED:
        await channel.records.opt_out(channel.gateway.key_for("sms", form.get("To", "")), "twilio_21610")
    return Response(status_code=204)
