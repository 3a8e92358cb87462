"""Appointments: the schedule (model.py, the interface; sql.py, the built-in SQL schedule; fhir.py,
a clinic's FHIR R4 server), who is asking (identity.py, otp.py), the conversations
(dialogue.py), reminders and waitlist offers (reminders.py, worker.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from careline.scheduling.model import Scheduler
    from careline.settings import SchedulingSettings


def make_scheduler(
    settings: SchedulingSettings | None = None, engine=None, *, timezone: str | None = None, secret: str | None = None
) -> Scheduler:
    """The configured backend: the SQL schedule (DATABASE_URL, or `engine`), or the FHIR server.
    `timezone` and `secret` default to CLINIC_TIMEZONE and CONVERSATION_SECRET from the environment."""
    import os

    from careline.settings import SchedulingSettings

    settings = settings or SchedulingSettings()
    timezone = timezone or os.environ.get("CLINIC_TIMEZONE") or "America/New_York"  # Settings.clinic_timezone
    if settings.scheduling_backend == "fhir":
        if not settings.fhir_base_url:
            raise ValueError("SCHEDULING_BACKEND=fhir needs FHIR_BASE_URL (the FHIR R4 server's base URL)")
        from careline.scheduling.fhir import FhirScheduler

        return FhirScheduler(
            settings.fhir_base_url,
            token=settings.fhir_auth_token,
            timeout=settings.fhir_timeout_seconds,
            timezone=timezone,
            schedule_file=settings.schedule_file,
        )
    from careline.scheduling.sql import SqlScheduler

    if engine is None:
        from channels.db import make_engine

        engine = make_engine(os.environ.get("DATABASE_URL"))
    return SqlScheduler(engine, timezone=timezone, secret=secret)
