"""docker-compose.yml is valid (no Docker engine here: `config` only parses and validates), requires
its secrets, runs Redis with a password and without eviction, and gives the gateway every setting
it reads, in values careline/settings.py accepts in production."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from careline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
REDIS_PASSWORD = "r" * 40
SECRETS = {
    "RASA_TOKEN": "t" * 40,
    "CONVERSATION_SECRET": "s" * 40,
    "POSTGRES_PASSWORD": "p" * 40,
    "API_TOKEN": "a" * 40,
    "REDIS_PASSWORD": REDIS_PASSWORD,
    "DATA_ENCRYPTION_KEY": "4H0tlVbvbOToPl7AEUO2g8Wc8aIFO85VWP-hxM8-Mrg=",  # a Fernet key made for this test
}
ENV = {**SECRETS, "PATH": "/usr/bin:/bin"}
SMS = {
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "f" * 32,
    "TWILIO_PHONE_NUMBER": "+15005550006",
    "TWILIO_MESSAGING_SERVICE_SID": "MG" + "0" * 32,
    "TWILIO_INBOUND_NUMBERS": "+15005550007,+15005550008",
    "PUBLIC_BASE_URL": "https://chat.clinic.example",
    "TRUST_FORWARDED_HEADERS": "true",
    "SMS_SHARDS": "8",
    "SMS_CLAIM_IDLE_SECONDS": "120",
}
# Settings the gateway's container does not take from .env, and why.
NOT_PASSED = {
    "gateway_host",
    "gateway_port",  # the image listens on 0.0.0.0:8000; GATEWAY_PORT is the published port
    "redis_key_prefix",  # must match Rasa's key_prefix in bot/endpoints.yml
    "transcript_max_items",
    "dedupe_ttl_seconds",
    "rasa_timeout_seconds",
    "rasa_connect_retries",  # tuning
}


def compose_command() -> list[str]:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed (make test installs it)")


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )


def services(env: dict[str, str] = ENV) -> dict:
    result = compose_config(env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_compose_config_is_valid():
    config = services()
    assert set(config) == {"redis", "postgres", "chroma", "actions", "rasa", "gateway"}
    for name, service in config.items():
        assert "healthcheck" in service, name
    for name in ("actions", "rasa", "gateway"):
        for dep in config[name]["depends_on"].values():
            assert dep["condition"] == "service_healthy"
    # Only the gateway is published; Rasa stays on the internal network.
    assert [n for n, s in config.items() if s.get("ports")] == ["gateway"]
    assert (ROOT / "docker/rasa.Dockerfile").read_text().startswith("# The official Rasa 3.6.21")


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_compose_refuses_missing_secrets(secret):
    result = compose_config({k: v for k, v in ENV.items() if k != secret})
    assert result.returncode != 0 and secret in result.stderr


def test_redis_has_a_password_that_every_service_uses_and_never_evicts():
    config = services()
    command = config["redis"]["command"]
    assert command[command.index("--requirepass") + 1] == REDIS_PASSWORD
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    # The healthcheck authenticates (an unauthenticated PING answers NOAUTH, with exit code 0).
    assert config["redis"]["environment"]["REDISCLI_AUTH"] == REDIS_PASSWORD
    assert "PONG" in " ".join(config["redis"]["healthcheck"]["test"])
    for name in ("actions", "gateway"):
        assert config[name]["environment"]["REDIS_URL"] == f"redis://:{REDIS_PASSWORD}@redis:6379/0", name
    # Rasa's tracker and lock stores take the password through bot/endpoints.yml's variables.
    assert config["rasa"]["environment"]["REDIS_PASSWORD"] == REDIS_PASSWORD
    endpoints = yaml.safe_load((ROOT / "bot" / "endpoints.yml").read_text())
    for store in ("tracker_store", "lock_store"):
        assert endpoints[store]["password"] == "${REDIS_PASSWORD}"
        assert endpoints[store]["url"] == "${REDIS_HOST}"


def test_gateway_gets_the_sms_settings_and_the_encryption_key():
    gateway = services({**ENV, **SMS})["gateway"]["environment"]
    assert gateway["CARELINE_ENV"] == "production"
    assert gateway["DATA_ENCRYPTION_KEY"] == SECRETS["DATA_ENCRYPTION_KEY"]
    for name, value in SMS.items():
        assert gateway[name] == value, name


def test_gateway_gets_every_setting_and_they_pass_production_validation(monkeypatch):
    gateway = services()["gateway"]["environment"]
    fields = set(Settings.model_fields)
    missing = {f.upper() for f in fields - NOT_PASSED} - set(gateway)
    assert not missing, f"docker-compose.yml does not pass {sorted(missing)} to the gateway"
    # The defaults written in docker-compose.yml parse (an empty number would not) and pass the checks.
    for name in list(Settings.model_fields):
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in gateway.items():
        monkeypatch.setenv(name, str(value))
    settings = Settings(_env_file=None)
    assert settings.production and not settings.sms_enabled
    defaults = {f: Settings.model_fields[f].default for f in fields - NOT_PASSED}
    for name in (
        "retention_days",
        "sms_shards",
        "max_body_bytes",
        "max_ws_frame_bytes",
        "redis_timeout_seconds",
        "screen_workers",
        "screen_timeout_seconds",
        "rate_limit_conversation",
        "rate_limit_client",
        "sms_claim_idle_seconds",
        "trust_forwarded_headers",
    ):
        assert getattr(settings, name) == defaults[name], name
