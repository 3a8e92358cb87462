"""One typed settings object for the gateway and the tools that talk to the stack."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "dev-secret", "secret"}


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
        return bool(self.twilio_account_sid and self.twilio_auth_token
                    and (self.twilio_phone_number or self.twilio_messaging_service_sid))
    transcript_ttl_seconds: int = 7 * 24 * 3600
    transcript_max_items: int = 500
    dedupe_ttl_seconds: int = 24 * 3600
    rasa_timeout_seconds: float = 30.0
    rasa_connect_retries: int = 2

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> "Settings":
        if self.careline_env == "production" and self.conversation_secret.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("CONVERSATION_SECRET must be set to a real random value in production")
        if self.careline_env == "production" and not self.api_token:
            raise ValueError("API_TOKEN must be set in production: POST /api/messages is never left open there")
        if not self.conversation_secret:
            raise ValueError(
                "CONVERSATION_SECRET is not set: `make run` creates one under var/; "
                "otherwise generate one with `python3 -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        return self


class LLMSettings(BaseSettings):
    """Optional LLM generation of knowledge answers, read by the action server. With no LLM_MODEL
    the answers stay extractive and no model is built."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      env_prefix="LLM_", env_ignore_empty=True)

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


@lru_cache
def get_settings() -> Settings:
    return Settings()
