import pytest
from cryptography.fernet import Fernet

from careline.settings import Settings

KEY = Fernet.generate_key().decode()


def test_production_refuses_placeholder_secret_and_open_api():
    with pytest.raises(ValueError, match="CONVERSATION_SECRET"):
        Settings(careline_env="production", conversation_secret="change-me", api_token="t" * 32, _env_file=None)
    with pytest.raises(ValueError, match="API_TOKEN"):
        Settings(careline_env="production", conversation_secret="a" * 64, data_encryption_key=KEY, _env_file=None)
    assert Settings(
        careline_env="production",
        conversation_secret="a" * 64,
        api_token="t" * 32,
        data_encryption_key=KEY,
        _env_file=None,
    ).api_token


def test_secrets_have_a_minimum_length_and_the_data_key_is_a_fernet_key():
    with pytest.raises(ValueError, match="at least 32"):
        Settings(conversation_secret="short-secret", _env_file=None)
    with pytest.raises(ValueError, match="API_TOKEN must be at least"):
        Settings(conversation_secret="a" * 64, api_token="t", _env_file=None)
    with pytest.raises(ValueError, match="DATA_ENCRYPTION_KEY must be set"):
        Settings(careline_env="production", conversation_secret="a" * 64, api_token="t" * 32, _env_file=None)
    with pytest.raises(ValueError, match="Fernet"):
        Settings(conversation_secret="a" * 64, data_encryption_key="not-a-key", _env_file=None)


def test_origins_and_inbound_numbers_are_parsed():
    s = Settings(
        conversation_secret="a" * 64,
        allowed_origins="https://www.clinic.org/, https://b.org",
        twilio_phone_number="+15550001",
        twilio_inbound_numbers="+15550002",
        _env_file=None,
    )
    assert s.origins == ["https://www.clinic.org", "https://b.org"]
    assert s.inbound_numbers == {"+15550001", "+15550002"}


def test_development_allows_an_open_api():
    assert Settings(conversation_secret="a" * 64, _env_file=None).api_token is None
