"""The add-to-calendar link the web chat gives after a booking: GET /calendar/<token>.ics is the
appointment's iCalendar file (careline/scheduling/ics.py).

The token is the appointment id signed with CONVERSATION_SECRET, so the link opens only the
appointment it was made for. Anything else (an unknown appointment, a forged or mangled token) is
a bare 404 that does not say which; the file is never cached, so a cancellation shows on the next
download.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import Response

from careline.scheduling.ics import appointment_ics, read_calendar_token
from careline.scheduling.model import NotFound, SchedulingError
from channels.deps import SchedulerDep, SettingsDep
from channels.errors import STATE_ERRORS

log = logging.getLogger(__name__)

router = APIRouter(tags=["calendar"])

NO_STORE = {"Cache-Control": "no-store"}


@router.get("/calendar/{token}.ics", response_class=Response)
async def appointment_calendar(token: str, settings: SettingsDep, scheduler: SchedulerDep) -> Response:
    appointment_id = read_calendar_token(settings.conversation_secret, token)
    if appointment_id is None:
        log.info("calendar refused reason=bad_token")
        return Response(status_code=404, headers=NO_STORE)
    try:
        appointment = await asyncio.to_thread(scheduler.appointment, appointment_id)
        locations = await asyncio.to_thread(scheduler.locations) if appointment else []
    except NotFound:
        appointment = None
    except (SchedulingError, *STATE_ERRORS) as exc:
        log.warning("calendar unavailable appointment=%s error=%s", appointment_id, type(exc).__name__)
        return Response(status_code=503, headers={**NO_STORE, "Retry-After": "60"})
    if appointment is None:
        log.info("calendar refused appointment=%s reason=not_found", appointment_id)
        return Response(status_code=404, headers=NO_STORE)
    address = next((loc.address for loc in locations if loc.id == appointment.location_id), "")
    body = appointment_ics(
        appointment,
        clinic_name=settings.clinic_name,
        location_address=address,
        timezone=settings.clinic_timezone,
    )
    headers = {**NO_STORE, "Content-Disposition": 'attachment; filename="appointment.ics"'}
    return Response(body, media_type="text/calendar; charset=utf-8", headers=headers)
