"""Settings: defaults, the CIRCUITBOARD_ environment, the cached factory."""

import pytest
from pydantic import ValidationError

from core.settings import Settings, get_settings

ENV = ("CIRCUITBOARD_DATABASE_URL", "CIRCUITBOARD_BROKER_URL", "CIRCUITBOARD_LEASE_SECONDS",
       "CIRCUITBOARD_HEARTBEAT_SECONDS")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_defaults():
    settings = Settings()
    assert settings.database_url == "sqlite:///circuitboard.db"
    assert settings.broker_url is None
    assert (settings.lease_seconds, settings.heartbeat_seconds) == (60, 10)


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("CIRCUITBOARD_DATABASE_URL", "postgresql+psycopg://u@localhost/cb")
    monkeypatch.setenv("CIRCUITBOARD_BROKER_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("CIRCUITBOARD_LEASE_SECONDS", "30")
    settings = get_settings()
    assert settings.database_url == "postgresql+psycopg://u@localhost/cb"
    assert settings.broker_url == "redis://localhost:6379/0"
    assert settings.lease_seconds == 30


def test_empty_broker_url_means_none(monkeypatch):
    monkeypatch.setenv("CIRCUITBOARD_BROKER_URL", "")
    assert Settings().broker_url is None


def test_get_settings_is_cached_until_cleared(monkeypatch):
    first = get_settings()
    monkeypatch.setenv("CIRCUITBOARD_DATABASE_URL", "sqlite:///other.db")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().database_url == "sqlite:///other.db"


def test_heartbeat_must_beat_within_the_lease():
    with pytest.raises(ValidationError, match="heartbeat_seconds"):
        Settings(lease_seconds=10, heartbeat_seconds=10)
    assert Settings(lease_seconds=2, heartbeat_seconds=1).lease_seconds == 2


def test_bad_environment_value_is_rejected(monkeypatch):
    monkeypatch.setenv("CIRCUITBOARD_LEASE_SECONDS", "soon")
    with pytest.raises(ValidationError, match="lease_seconds"):
        Settings()


def test_unknown_setting_is_rejected():
    with pytest.raises(ValidationError):
        Settings(databse_url="sqlite://")
