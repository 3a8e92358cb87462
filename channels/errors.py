"""Named errors, each with one HTTP status and one message a patient can read (its text in
knowledge/messages/<language>.yml, read when it is used)."""

from __future__ import annotations

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from knowledge.messages import MessageText

# Failures of the state stores: Redis (with its timeouts), SQL, and the OS under them.
STATE_ERRORS = (RedisError, SQLAlchemyError, OSError, TimeoutError)


class CareLineError(Exception):
    status_code = 500
    code = "internal_error"
    patient_message = MessageText("errors.internal")

    def __init__(self, detail: str | None = None):
        super().__init__(detail or self.patient_message)
        self.detail = detail or self.patient_message


class InvalidMessage(CareLineError):
    status_code = 422
    code = "invalid_message"
    patient_message = MessageText("errors.invalid_message")


class MessageTooLong(InvalidMessage):
    status_code = 413
    code = "message_too_long"


class Unauthorized(CareLineError):
    status_code = 401
    code = "unauthorized"
    patient_message = MessageText("errors.unauthorized")


class LoginFailed(Unauthorized):
    """A staff login refused: one answer for an unknown email, a wrong password or a disabled account."""

    code = "login_failed"


class Forbidden(CareLineError):
    """A staff member without the right to this (an agent on a supervisor's page, another's conversation)."""

    status_code = 403
    code = "forbidden"
    patient_message = MessageText("errors.unauthorized")


class CsrfFailed(Forbidden):
    """A staff request that changes something came without the session's X-CSRF-Token."""

    code = "csrf_failed"


class DuplicateInProgress(CareLineError):
    status_code = 409
    code = "duplicate_in_progress"
    patient_message = MessageText("errors.duplicate_in_progress")


class UpstreamUnavailable(CareLineError):
    """Rasa or another service of ours did not answer in time."""

    status_code = 503
    code = "upstream_unavailable"


class StoreUnavailable(CareLineError):
    """Redis or SQL failed or did not answer in time: the conversation's state cannot be read or
    kept. The safety screen has already run; the patient gets this message with the emergency
    numbers (HTTP 503 on the API, a message on the WebSocket, a TwiML reply on SMS)."""

    status_code = 503
    code = "service_unavailable"
    patient_message = MessageText("errors.store_unavailable")


class IdempotencyConflict(CareLineError):
    """An idempotency key was reused with a different message."""

    status_code = 409
    code = "idempotency_conflict"
    patient_message = MessageText("errors.idempotency_conflict")

    def __init__(self, detail: str | None = None, replies: list | None = None):
        super().__init__(detail)
        self.replies = replies or []  # the safety screen's reply when the new message was flagged


class RateLimited(CareLineError):
    status_code = 429
    code = "rate_limited"
    patient_message = MessageText("errors.rate_limited")

    def __init__(self, detail: str | None = None, retry_after: int = 60):
        super().__init__(detail)
        self.retry_after = retry_after


class LockedOut(RateLimited):
    """A staff account locked after repeated failed logins (429 with Retry-After, as RateLimited)."""

    code = "locked_out"


class PayloadTooLarge(CareLineError):
    status_code = 413
    code = "payload_too_large"
    patient_message = MessageText("errors.payload_too_large")


class UnsupportedMediaType(CareLineError):
    status_code = 415
    code = "unsupported_media_type"
    patient_message = MessageText("errors.unsupported_media_type")
