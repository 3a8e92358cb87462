"""One typed settings object for the gateway and the tools that talk to the stack."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "dev-secret", "secret"}
# Shortest accepted secret or bearer token (characters): 32 hex characters are 128 bits.
MIN_SECRET_CHARS = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    careline_env: Literal["development", "test", "production"] = "development"

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    # Public base URL printed by `make run` and used by the widget when it is embedded elsewhere.
    public_url: str | None = None

    rasa_url: str = "http://127.0.0.1:5005"
    rasa_token: str | None = None
    action_server_url: str = "http://127.0.0.1:5055"

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_key_prefix: str = "careline"
    # Durable records (safety audit, consent): SQLite under var/ when unset.
    database_url: str | None = None

    # Key of the HMAC that turns (channel, address) into the pseudonymous conversation id.
    conversation_secret: str = Field(default="", repr=False)
    # Optional bearer token for POST /api/messages; unset means open (development and tests).
    api_token: str | None = Field(default=None, repr=False)

    max_message_chars: int = 2000

    # --- SMS through Twilio: the channel is on whenever the account settings are present ---------
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = Field(default=None, repr=False)
    twilio_phone_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    # Another host for Twilio's REST API (a regional edge, a proxy, the local stand-in in tests).
    twilio_api_base_url: str | None = None
    # The public https URL Twilio calls (signatures are computed over it), e.g. https://chat.clinic.org
    public_base_url: str | None = None
    # Behind a proxy that sets X-Forwarded-Proto/Host: rebuild the public URL from them.
    trust_forwarded_headers: bool = False
    # Parallel SMS conversations; one conversation is always handled by one shard, in order.
    sms_shards: int = Field(default=16, ge=1, le=64)
    sms_send_retries: int = Field(default=3, ge=0, le=6)
    clinic_name: str = "Maplewood Family Clinic"
    clinic_phone: str = "(555) 555-0100"

    @property
    def sms_enabled(self) -> bool:
        return bool(
            self.twilio_account_sid
            and self.twilio_auth_token
            and (self.twilio_phone_number or self.twilio_messaging_service_sid)
        )

    # Accepted inbound numbers (To) besides TWILIO_PHONE_NUMBER, comma-separated E.164: the numbers of
    # a Messaging Service. A webhook for any other number, or from another account, is refused.
    twilio_inbound_numbers: str = ""
    # SMS queue entries pending longer than this for a consumer that stopped are taken over (XAUTOCLAIM).
    sms_claim_idle_seconds: int = Field(default=60, ge=5, le=3600)

    # --- hardening: limits, origins, time bounds, retention ------------------------------------
    # Sites that may embed the widget and open /ws (comma-separated origins such as
    # https://www.clinic.org); the gateway's own origin is always allowed.
    allowed_origins: str = ""
    # Largest request body (API, Twilio webhooks) and WebSocket frame, in bytes.
    max_body_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    max_ws_frame_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    # Rate limits in the `limits` notation ("20/minute", "5/second;100/hour"), shared through Redis:
    # per conversation, and per client (IP address, or API token).
    rate_limit_conversation: str = "20/minute"
    rate_limit_client: str = "300/minute"
    # Every Redis call gives up after this long (the patient then gets the emergency numbers).
    redis_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    # The safety screen's deadline per message, and its worker processes.
    screen_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    screen_workers: int = Field(default=2, ge=1, le=16)
    # Conversation data (transcripts, Rasa trackers, queues, SQL rows) is erased this many days after
    # the conversation's first message; consent records and audit trails are kept.
    retention_days: int = Field(default=30, ge=1, le=3650)
    # Fernet key that encrypts what must be kept to reply (an SMS patient's number). `make run`
    # creates var/data_key; generate one with
    # python3 -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'
    data_encryption_key: str = Field(default="", repr=False)

    transcript_max_items: int = 500
    dedupe_ttl_seconds: int = 24 * 3600
    rasa_timeout_seconds: float = 30.0
    rasa_connect_retries: int = 2

    # --- the staff console -----------------------------------------------------------------------
    # A staff session ends after this many seconds without a request (HIPAA automatic logoff).
    staff_idle_timeout_seconds: int = Field(default=900, ge=1, le=12 * 3600)
    # Wrong passwords in a row that lock a staff account.
    staff_login_max_failures: int = Field(default=5, ge=1, le=100)
    # How long a locked staff account stays locked, in seconds.
    staff_lockout_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    # Login attempts per client IP address, in the `limits` notation, shared through Redis.
    staff_login_rate_limit: str = "10/minute"

    # Service levels of the staff queue, in seconds: how long a hand-off may wait for a person.
    staff_sla_seconds: str = "emergency=60,urgent=300,normal=900"
    # Staffed hours in the clinic's time zone ("mon-fri 08:00-18:00; sat 09:00-12:00"; "" = always).
    # Outside them, or with nobody online, a hand-off says when a reply will come (a call-back).
    staff_hours: str = "mon-fri 08:00-18:00"
    # The clinic's IANA time zone (staffed hours, reminders).
    clinic_timezone: str = "America/New_York"

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.careline_env == "production" and self.conversation_secret.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("CONVERSATION_SECRET must be set to a real random value in production")
        if self.careline_env == "production" and not self.api_token:
            raise ValueError("API_TOKEN must be set in production: POST /api/messages is never left open there")
        if not self.conversation_secret:
            raise ValueError(
                "CONVERSATION_SECRET is not set: `make run` creates one under var/; "
                "otherwise generate one with `python3 -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        if len(self.conversation_secret) < MIN_SECRET_CHARS:
            raise ValueError(f"CONVERSATION_SECRET must be at least {MIN_SECRET_CHARS} characters")
        if self.api_token and len(self.api_token) < MIN_SECRET_CHARS:
            raise ValueError(f"API_TOKEN must be at least {MIN_SECRET_CHARS} characters")
        if self.careline_env == "production" and not self.data_encryption_key:
            raise ValueError("DATA_ENCRYPTION_KEY must be set in production (see .env.example)")
        if self.data_encryption_key:
            from cryptography.fernet import Fernet

            try:
                Fernet(self.data_encryption_key.encode())
            except (ValueError, TypeError) as exc:
                raise ValueError("DATA_ENCRYPTION_KEY must be a Fernet key (32 url-safe base64-encoded bytes)") from exc
        return self

    @property
    def origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()]

    @property
    def inbound_numbers(self) -> set[str]:
        numbers = {n.strip() for n in self.twilio_inbound_numbers.split(",") if n.strip()}
        return numbers | ({self.twilio_phone_number} if self.twilio_phone_number else set())

    @property
    def retention_seconds(self) -> int:
        return self.retention_days * 24 * 3600

    @property
    def production(self) -> bool:
        return self.careline_env == "production"


class LLMSettings(BaseSettings):
    """Optional LLM generation of knowledge answers, read by the action server. With no LLM_MODEL
    the answers stay extractive and no model is built."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_prefix="LLM_", env_ignore_empty=True
    )

    # "provider:model" for LangChain's init_chat_model, e.g. "openai:gpt-4o-mini".
    model: str | None = None
    # An OpenAI-compatible server instead of the provider's default endpoint.
    base_url: str | None = None
    # Unset: the provider package reads its own variable (OPENAI_API_KEY for openai).
    api_key: str | None = Field(default=None, repr=False)
    # Wall-clock limit of one generation; past it the extractive answer is sent.
    timeout_s: float = Field(default=4.0, gt=0, le=30)
    max_retries: int = Field(default=1, ge=0, le=1)
    max_tokens: int = Field(default=300, ge=16, le=2000)


class SchedulingSettings(BaseSettings):
    """Appointments (careline/scheduling/): read by the gateway, the action server and the CLI,
    none of which needs the others' settings to run it."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # sql: the built-in schedule in DATABASE_URL; fhir: a FHIR R4 server at FHIR_BASE_URL.
    scheduling_backend: Literal["sql", "fhir"] = "sql"
    fhir_base_url: str | None = None
    fhir_auth_token: str | None = Field(default=None, repr=False)  # sent as "Authorization: Bearer ..."
    fhir_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # The clinic's schedule (locations, providers, visit types, weekly templates, holidays).
    schedule_file: str = "knowledge/clinic/schedule.yml"
    schedule_days_ahead: int = Field(default=28, ge=1, le=366)  # slots are made this far ahead
    slot_hold_seconds: int = Field(default=300, ge=30, le=3600)  # a slot offered and picked is held this long
    slots_offered: int = Field(default=3, ge=1, le=9)
    # Inside this many hours of the start, a patient's cancel or move goes to staff instead.
    cancel_cutoff_hours: int = Field(default=24, ge=0, le=24 * 14)
    # Reminders: hours before the start (comma-separated), sent only inside the sending hours
    # (clinic time zone); one due outside them waits for the next opening.
    reminder_hours: str = "72,24"
    sms_sending_hours: str = "08:00-20:00"
    # One-time codes: digits, lifetime, wrong tries before the code is void, codes sent per patient.
    otp_digits: int = Field(default=6, ge=4, le=10)
    otp_ttl_seconds: int = Field(default=600, ge=60, le=3600)
    otp_max_attempts: int = Field(default=5, ge=1, le=10)
    otp_send_rate_limit: str = "3/15minutes"
    # Wrong dates of birth for a name before the assistant stops asking and offers a person.
    identity_max_attempts: int = Field(default=3, ge=1, le=10)
    # Identity tries for one name across all conversations (someone guessing a date of birth).
    identity_rate_limit: str = "10/hour"
    # A waitlist offer of a freed slot stands this long; the first yes wins.
    waitlist_offer_minutes: int = Field(default=60, ge=5, le=24 * 60)
    # The worker that sends reminders, codes and offers (in the gateway, or `careline worker`).
    scheduling_worker: bool = True
    scheduling_worker_interval_seconds: float = Field(default=1.0, gt=0, le=60)

    @property
    def reminder_offsets_hours(self) -> list[int]:
        return sorted({int(h) for h in self.reminder_hours.split(",") if h.strip()}, reverse=True)


class LanguageSettings(BaseSettings):
    """The language of what patients read (knowledge/messages/<language>.yml). Its own class: the
    action server and the screen's workers read it too, and they have no gateway secrets."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True)

    careline_language: str = Field(default="en", pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")


@lru_cache
def get_settings() -> Settings:
    return Settings()
