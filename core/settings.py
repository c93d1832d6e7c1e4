"""Process settings, read from the environment (prefix ``CIRCUITBOARD_``) or passed in.

    CIRCUITBOARD_DATABASE_URL=postgresql+psycopg://... circuitboard serve

Code that needs settings takes a ``Settings`` argument; only entry points (the CLI, the app
factory's default, the worker) call :func:`get_settings`, which reads the environment once per
process. An entry point that takes settings on its command line (``--db``) builds them with
:func:`settings_with` and passes them on; a child process gets them through :func:`environ_of`. Tests build ``Settings(...)`` directly, or call ``get_settings.cache_clear()`` after
changing the environment.
"""

from functools import lru_cache

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CIRCUITBOARD_", extra="forbid", frozen=True)

    database_url: str = "sqlite:///circuitboard.db"  # a relative SQLite path is relative to the CWD
    broker_url: str | None = None  # a Redis URL turns on Celery dispatch; None: the embedded worker
    lease_seconds: int = Field(60, ge=1)  # a job whose lease is not renewed for this long is lost
    heartbeat_seconds: int = Field(10, ge=1)  # how often a running job renews its lease
    stop_grace_seconds: int = Field(10, ge=0)  # after SIGTERM, how long a stopping job may checkpoint before SIGKILL
    stall_seconds: int = Field(900, ge=0)  # a job reporting no progress this long is killed and resumed (0: never)
    visibility_timeout_seconds: int = Field(7 * 24 * 3600, ge=60)  # Redis redelivers an unacked task after this
    republish_after_seconds: int = Field(30, ge=1)  # a QUEUED job unclaimed this long is published again
    auth_token: str | None = None  # set: every dashboard route but share links and static files needs it
    secret_key: str | None = None  # signs CSRF tokens and login cookies; None: a random key per process
    max_body_bytes: int = Field(1_000_000, ge=1024)  # larger request bodies get 413
    pack_size: int | None = Field(None, ge=1, le=512)  # train jobs per pack; None: core/packing.py's cost model
    local_workers: int = Field(1, ge=1, le=64)  # `circuitboard serve` starts this many embedded workers (jobs at once)
    train_threads: int | None = Field(None, ge=1, le=1024)  # torch CPU threads per job's process; None: torch's
    # choice, or the cores shared out when serve starts several local workers
    max_inflight_requests: int = Field(64, ge=1)  # past this many requests at once, a web server answers 503 at once
    db_pool_timeout_seconds: float = Field(2.0, gt=0, le=60)  # a request waits this long for a pooled connection, then 503
    page_cache_mb: int = Field(64, ge=0)  # finished runs' rendered pages and JSON kept in memory per server process (0: off)
    page_cache_check_seconds: float = Field(0.5, ge=0, le=60)  # a finished run's change stamp is trusted this long

    @field_validator("broker_url", "auth_token", "secret_key")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None  # CIRCUITBOARD_BROKER_URL= (empty) means no broker, and so on

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> "Settings":
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError(
                f"heartbeat_seconds ({self.heartbeat_seconds}) must be less than "
                f"lease_seconds ({self.lease_seconds}), or leases expire between heartbeats"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on the first call."""
    return Settings()


def settings_with(**overrides) -> Settings:
    """The process's settings with ``overrides`` applied (None leaves a setting as it is), validated."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if not given:
        return get_settings()
    return Settings(**{**get_settings().model_dump(), **given})


def environ_of(settings: Settings) -> dict[str, str]:
    """The ``CIRCUITBOARD_*`` variables from which a child process's :func:`get_settings` rebuilds ``settings``."""
    prefix = Settings.model_config["env_prefix"]
    return {f"{prefix}{key.upper()}": str(value) for key, value in settings.model_dump().items() if value is not None}
