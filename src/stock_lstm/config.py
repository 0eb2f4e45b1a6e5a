"""All configuration in one place, read from ``STOCK_LSTM_*`` environment variables.

CLI flags override these per call; nothing deeper in the package reads the environment.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///data/stock_lstm.db"
#: An allowed host: ``name``, ``name:port``, ``[v6]`` or ``[v6]:port``.
_ALLOWED_HOST = re.compile(r"^([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$")


class Settings(BaseSettings):
    """Runtime settings. Every field maps to ``STOCK_LSTM_<FIELD>`` (e.g. ``STOCK_LSTM_SOURCE``)."""

    # A `.env` file in the working folder (the project root for the CLI, make and notebook
    # kernels) is read too, e.g. STOCK_LSTM_SOURCE=csv:../shared/data/prices for offline work;
    # real environment variables win over it.
    model_config = SettingsConfigDict(
        env_prefix="STOCK_LSTM_", extra="ignore", env_file=".env", env_file_encoding="utf-8"
    )

    database_url: str = Field(
        DEFAULT_DATABASE_URL, description="Any SQLAlchemy URL; SQLite is the embedded default."
    )
    source: str = Field("yahoo", description="Price source: 'yahoo' or 'csv:DIR'.")
    cache_expiry_hours: float = Field(
        24.0, gt=0, description="Cached rows of a ticker are fresh for this many hours."
    )
    models_dir: Path = Field(Path("models"), description="Where model artifacts are written.")
    reports_dir: Path = Field(Path("reports"), description="Where run reports are written.")
    history_years: int = Field(
        10, ge=1, le=100, description="Years of history a Yahoo download covers by default."
    )
    torch_threads: int | None = Field(
        1,
        ge=1,
        description="Threads torch uses for training and forecasting. 1 by default: for this "
        "small LSTM, measured on the 2-core machines, 2 threads were never faster and often "
        "many times slower (OpenMP threads spin against each other). None: one per core.",
    )
    model_cache_size: int = Field(32, ge=1, description="Loaded models kept in memory.")
    price_recheck_seconds: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="A long-running process (the API) trusts a ticker's cache summary read "
        "less than this many seconds ago instead of querying it again for every forecast; "
        "its own writes are seen at once, another process's up to this late. 0: always query.",
    )
    sqlite_busy_timeout_seconds: float = Field(30.0, gt=0)
    gate_threshold: float = Field(
        1.0,
        gt=0,
        description="A new model becomes active only if its validation rMAE at h=1 "
        "(MAE / persistence MAE) is at most this.",
    )
    interval_level: float = Field(
        0.9, description="Prediction interval coverage: 0.8, 0.9 or 0.95 (split-conformal)."
    )
    api_token: str | None = Field(None, description="Bearer token for state-changing API calls.")
    pushgateway_url: str | None = Field(None, description="Prometheus Pushgateway for batch runs.")
    dask_scheduler: str | None = Field(
        None,
        description="Dask scheduler (tcp://host:port) that runs many-ticker work (run --tickers, "
        "sweep, evaluate, API trainings). None: a local cluster of worker processes per command.",
    )
    # --- the API server (stock-lstm serve) ---
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Without a token the API answers only requests addressed to 127.0.0.1, "
        "localhost or [::1] (a DNS-rebinding page's own name is refused); these host names "
        "(comma-separated, `name` for any port or `name:port`) are accepted too.",
    )
    api_concurrency_limit: int = Field(
        100,
        ge=1,
        le=100_000,
        description="Open connections and requests in flight before the server answers 503.",
    )
    api_keep_alive_seconds: int = Field(
        5, ge=1, le=3600, description="An idle keep-alive connection is closed after this long."
    )
    api_header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="A request's line and headers must arrive within this long of the "
        "connection opening (or the request starting), else the connection is closed.",
    )

    @field_validator("interval_level")
    @classmethod
    def _check_level(cls, value: float) -> float:
        if value not in (0.8, 0.9, 0.95):
            raise ValueError("interval_level must be 0.8, 0.9 or 0.95")
        return value

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        if value != "yahoo" and not value.startswith("csv:"):
            raise ValueError("source must be 'yahoo' or 'csv:DIR' (a folder of <TICKER>.csv)")
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        """``STOCK_LSTM_ALLOWED_HOSTS=a.example,b.example:8000``: a comma-separated list; a
        list's text (``['a.example']``, how ``cluster.settings_environment`` hands settings to
        a worker's kernel) reads the same."""
        if isinstance(value, str):
            value = [part for part in re.split(r"[\s,\[\]'\"]+", value) if part]
        if isinstance(value, list | tuple):
            for host in value:
                if not isinstance(host, str) or not _ALLOWED_HOST.match(host):
                    raise ValueError(
                        f"allowed_hosts: {host!r} is not a host name or host:port "
                        "(comma-separated, e.g. stock.example.org,stock.example.org:8000)"
                    )
            return tuple(host.lower() for host in value)
        return value

    @field_validator("dask_scheduler")
    @classmethod
    def _blank_scheduler_is_none(cls, value: str | None) -> str | None:
        """``STOCK_LSTM_DASK_SCHEDULER=`` (empty) means the local default, not an address."""
        return (value.strip() or None) if value is not None else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once from the environment (tests build their own ``Settings``)."""
    return Settings()


@contextlib.contextmanager
def temporary_environment(values: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` updated with ``values`` for the block, restored afterwards.

    How settings reach a notebook kernel (it reads ``STOCK_LSTM_*`` when it starts).
    Process-wide: callers run one such block at a time per process.
    """
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
