"""Named errors, each with one HTTP status and one message a patient can read."""

from __future__ import annotations


class CareLineError(Exception):
    status_code = 500
    code = "internal_error"
    patient_message = "Sorry, something went wrong on our side."

    def __init__(self, detail: str | None = None):
        super().__init__(detail or self.patient_message)
        self.detail = detail or self.patient_message


class InvalidMessage(CareLineError):
    status_code = 422
    code = "invalid_message"
    patient_message = "That message could not be read. Please try again."


class MessageTooLong(InvalidMessage):
    status_code = 413
    code = "message_too_long"


class Unauthorized(CareLineError):
    status_code = 401
    code = "unauthorized"
    patient_message = "Not authorised."


class DuplicateInProgress(CareLineError):
    status_code = 409
    code = "duplicate_in_progress"
    patient_message = "This message is already being handled."


class UpstreamUnavailable(CareLineError):
    """Rasa or another service of ours did not answer in time."""

    status_code = 503
    code = "upstream_unavailable"
