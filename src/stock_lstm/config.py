"""All configuration in one place, read from ``STOCK_LSTM_*`` environment variables.

CLI flags override these per call; nothing deeper in the package reads the environment.
Every field has a bound, and a value outside it is refused when settings are first read
(``load_settings``) with one line naming the variable, the value and what is accepted, so a
typo in the environment or ``.env`` stops a command, a server or a notebook run before any
work starts instead of surfacing as a traceback halfway through.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from stock_lstm.errors import SettingsError
from stock_lstm.source_spec import accepted as sources_accepted
from stock_lstm.source_spec import parse_source

DEFAULT_DATABASE_URL = "sqlite:///data/stock_lstm.db"
ENV_PREFIX = "STOCK_LSTM_"
#: Characters of a refused value quoted back (a pasted file should not flood the terminal).
MAX_QUOTED_CHARS = 80
#: Upper bounds: far beyond any sensible use, low enough to catch a misplaced digit.
MAX_CACHE_EXPIRY_HOURS = 87_600.0  # ten years: "never refresh" for an offline CSV folder
MAX_TORCH_THREADS = 1024
MAX_MODEL_CACHE_SIZE = 10_000
MAX_METRICS_TICKER_LABELS = 100_000
MAX_BUSY_TIMEOUT_SECONDS = 3600.0
MAX_GATE_THRESHOLD = 10.0
#: Schemes a Dask client connects with (none given: tcp).
DASK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
_HOST_PORT = re.compile(r"^\[?[A-Za-z0-9._:-]+\]?:(\d{1,5})$")
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: it travels in a header
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")

#: What each setting accepts, quoted by the error a bad value gets (one entry per field).
ACCEPTED: dict[str, str] = {
    "database_url": "a SQLAlchemy URL such as sqlite:///data/stock_lstm.db or "
    "postgresql+psycopg://USER:PASSWORD@HOST:5432/DBNAME",
    "source": sources_accepted(),
    "cache_expiry_hours": "a number of hours from 0 (always refresh) to "
    f"{MAX_CACHE_EXPIRY_HOURS:g}",
    "models_dir": "a folder path (created when missing)",
    "reports_dir": "a folder path (created when missing)",
    "universe_dir": "a folder of <TICKER>.csv files (notebook 06 trains on every one)",
    "history_years": "a whole number of years from 1 to 100",
    "torch_threads": f"a whole number from 1 to {MAX_TORCH_THREADS}, or empty for one per core",
    "model_cache_size": f"a whole number from 1 to {MAX_MODEL_CACHE_SIZE}",
    "metrics_ticker_labels": f"a whole number from 0 (no ticker labels) to "
    f"{MAX_METRICS_TICKER_LABELS}",
    "price_recheck_seconds": "a number of seconds from 0 (always query) to 3600",
    "sqlite_busy_timeout_seconds": f"a number of seconds above 0, at most "
    f"{MAX_BUSY_TIMEOUT_SECONDS:g}",
    "gate_threshold": f"a number above 0, at most {MAX_GATE_THRESHOLD:g} (train --force "
    "activates a model regardless)",
    "interval_level": "0.8, 0.9 or 0.95",
    "api_token": "printable characters without spaces, or empty for no token",
    "pushgateway_url": "http(s)://HOST:PORT or HOST:PORT, or empty for none",
    "dask_scheduler": "tcp://HOST:PORT (or tls://, ws://, wss://, ucx://), or empty for a "
    "local cluster",
    "job_timeout_hours": "a number of hours above 0, at most 168",
    "max_job_cost": "a number above 0 (multiples of the default training), at most 1e6",
    "max_queued_jobs": "a whole number of jobs from 1 to 1000",
    "max_jobs_per_client": "a whole number of jobs from 1 to 1000",
    "allowed_hosts": "host names or host:port, comma-separated (e.g. stock.example.org), or "
    "empty for loopback only",
    "api_concurrency_limit": "a whole number from 1 to 100000",
    "api_keep_alive_seconds": "a whole number of seconds from 1 to 3600",
    "api_header_timeout_seconds": "a number of seconds above 0, at most 3600",
    "api_body_timeout_seconds": "a number of seconds above 0, at most 3600",
    "api_connections_per_client": "a whole number from 1 to 100000",
}
#: Settings whose value is never quoted back (it is a secret).
SECRET_FIELDS = frozenset({"api_token"})
#: An allowed host: ``name``, ``name:port``, ``[v6]`` or ``[v6]:port``.
_ALLOWED_HOST = re.compile(r"^([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$")


class Settings(BaseSettings):
    """Runtime settings. Every field maps to ``STOCK_LSTM_<FIELD>`` (e.g. ``STOCK_LSTM_SOURCE``).

    ``ACCEPTED`` says in words what each field takes; build settings from the environment
    with ``load_settings`` (or ``get_settings``) so a bad value is one line, not a traceback.
    """

    # A `.env` file in the working folder (the project root for the CLI, make and notebook
    # kernels) is read too, e.g. STOCK_LSTM_SOURCE=csv:../shared/data/prices for offline work;
    # real environment variables win over it.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", env_file=".env", env_file_encoding="utf-8"
    )

    database_url: str = Field(
        DEFAULT_DATABASE_URL, description="Any SQLAlchemy URL; SQLite is the embedded default."
    )
    source: str = Field("yahoo", description="Price source: 'yahoo' or 'csv:DIR'.")
    cache_expiry_hours: float = Field(
        24.0,
        ge=0,
        le=MAX_CACHE_EXPIRY_HOURS,
        description="Cached rows of a ticker are fresh for this many hours. 0: never fresh, "
        "every sync asks the source (always refresh).",
    )
    models_dir: Path = Field(Path("models"), description="Where model artifacts are written.")
    reports_dir: Path = Field(Path("reports"), description="Where run reports are written.")
    universe_dir: Path = Field(
        Path("../shared/data/universe"),
        description="The tickers a universal model is trained on (notebook 06's default).",
    )
    history_years: int = Field(
        10, ge=1, le=100, description="Years of history a Yahoo download covers by default."
    )
    torch_threads: int | None = Field(
        1,
        ge=1,
        le=MAX_TORCH_THREADS,
        description="Threads torch uses for training and forecasting. 1 by default: for this "
        "small LSTM, measured on the 2-core machines, 2 threads were never faster and often "
        "many times slower (OpenMP threads spin against each other). None: one per core.",
    )
    model_cache_size: int = Field(
        256,
        ge=1,
        le=MAX_MODEL_CACHE_SIZE,
        description="Loaded models kept in memory. 256: round-robin over 200 active models "
        "then never reloads from disk (measured: 42 req/s, p50 19 ms, against 16 req/s and "
        "58 ms at 32, which reloaded every one); a loaded model costs about 0.35 MB.",
    )
    metrics_ticker_labels: int = Field(
        1000,
        ge=0,
        le=MAX_METRICS_TICKER_LABELS,
        description="Tickers the API's stock_lstm_predictions counter names in its ticker "
        "label, the first ones predicted; the others, and any ticker without an active model, "
        "are counted as <other>. It bounds the series a scrape carries whatever the registry "
        "grows to (about 150 bytes of /metrics per labelled ticker).",
    )
    price_recheck_seconds: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="A long-running process (the API) trusts a ticker's cache summary read "
        "less than this many seconds ago instead of querying it again for every forecast; "
        "its own writes are seen at once, another process's up to this late. 0: always query.",
    )
    sqlite_busy_timeout_seconds: float = Field(30.0, gt=0, le=MAX_BUSY_TIMEOUT_SECONDS)
    gate_threshold: float = Field(
        1.0,
        gt=0,
        le=MAX_GATE_THRESHOLD,
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
    job_timeout_hours: float = Field(
        4.0,
        gt=0,
        le=168,
        description="Wall-clock limit of one API training job, enforced as the notebook's cell "
        "timeout (the training cell is the long one); a default training takes minutes.",
    )
    max_job_cost: float = Field(
        32.0,
        gt=0,
        le=1e6,
        description="Largest training an API request may ask for, in multiples of the default "
        "training's compute (TrainParams.relative_cost: epochs, layers, hidden size, window, "
        "chunk length and batch size).",
    )
    max_queued_jobs: int = Field(
        8,
        ge=1,
        le=1000,
        description="API training jobs that may wait for a worker; more are a 503 with "
        "Retry-After (each may run for up to STOCK_LSTM_JOB_TIMEOUT_HOURS).",
    )
    max_jobs_per_client: int = Field(
        4,
        ge=1,
        le=1000,
        description="Unfinished API training jobs one client address may have; more are a 429.",
    )

    @field_validator(
        "torch_threads", "api_token", "pushgateway_url", "dask_scheduler", mode="before"
    )
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        """``STOCK_LSTM_X=`` (empty) means "not set" for optional settings, not a value."""
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        """Parsed (and its dialect found) now: otherwise the first query fails with a
        SQLAlchemy traceback. Whether the server is reachable is checked when it is used."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            url = make_url(value)
            url.get_dialect()
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise ValueError("not a SQLAlchemy URL") from exc
        if url.port is not None and not 1 <= url.port <= 65535:
            raise ValueError("port out of range")
        return value

    @field_validator("models_dir", "reports_dir", mode="before")
    @classmethod
    def _check_folder(cls, value: Any) -> Any:
        """A blank path would silently mean the working folder; a file cannot hold files."""
        if isinstance(value, str) and not value.strip():
            raise ValueError("a folder path is required")
        if isinstance(value, str | Path) and Path(value).exists() and not Path(value).is_dir():
            raise ValueError("exists and is not a folder")
        return value

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
    api_body_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="A request's body must arrive within this long of its headers, else the "
        "connection is closed (bodies here are at most 64 KiB of JSON).",
    )
    api_connections_per_client: int = Field(
        32,
        ge=1,
        le=100000,
        description="Open connections one client address may hold; more are closed at once, "
        "so one host cannot take every slot of STOCK_LSTM_API_CONCURRENCY_LIMIT.",
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
        parse_source(value)  # ValueError naming what is accepted
        return value

    @field_validator("api_token")
    @classmethod
    def _check_token(cls, value: str | None) -> str | None:
        if value is not None and not _TOKEN.match(value):
            raise ValueError("a token travels in an HTTP header: printable, no spaces")
        return value

    @field_validator("pushgateway_url")
    @classmethod
    def _check_pushgateway(cls, value: str | None) -> str | None:
        if value is not None and not _is_address(value, ("http", "https")):
            raise ValueError("not an http(s) address")
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
    def _check_scheduler(cls, value: str | None) -> str | None:
        """A mistyped address would otherwise cost a connect timeout on every command."""
        if value is not None and not _is_address(value, DASK_SCHEMES):
            raise ValueError("not a Dask scheduler address")
        return value


def _is_address(value: str, schemes: tuple[str, ...]) -> bool:
    """True for ``HOST:PORT`` or ``SCHEME://HOST:PORT[/path]`` with a scheme of ``schemes``
    and a port from 1 to 65535."""
    if "://" in value:
        scheme, _, rest = value.partition("://")
        if scheme.lower() not in schemes:
            return False
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            return False
        return bool(parts.hostname) and (port is None or 1 <= port <= 65535) and bool(rest)
    match = _HOST_PORT.match(value)
    return bool(match) and 1 <= int(match.group(1)) <= 65535


def _quoted(field: str, value: Any) -> str:
    """The refused value as the user typed it: secrets hidden, passwords masked, long
    values cut."""
    if field in SECRET_FIELDS:
        return "(hidden)"
    text = mask_url(str(value))
    if len(text) > MAX_QUOTED_CHARS:
        text = text[:MAX_QUOTED_CHARS] + "..."
    return repr(text)


def mask_url(url: str) -> str:
    """A database URL with its password replaced by ``***`` (safe to print or log)."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def describe_settings_error(error: ValidationError, labels: Mapping[str, str] | None = None) -> str:
    """One line for every refused value: ``STOCK_LSTM_X='v' is not accepted: use ...``.

    ``labels`` names a field by where its value came from (e.g. ``--database-url`` for a
    CLI flag); by default the environment variable is named.
    """
    parts: list[str] = []
    for item in error.errors():
        field = str(item["loc"][0]) if item.get("loc") else "?"
        name = (labels or {}).get(field) or f"{ENV_PREFIX}{field.upper()}"
        accepted = ACCEPTED.get(field, str(item.get("msg", "a valid value")))
        parts.append(f"{name}={_quoted(field, item.get('input'))} is not accepted: use {accepted}")
    return "; ".join(dict.fromkeys(parts))


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    env_file: Path | None = None,
) -> Settings:
    """Settings from the environment and ``.env``, with ``overrides`` (CLI flags) winning.

    ``env_file`` reads another ``.env`` than the working folder's (the one a notebook kernel
    will read). A value outside its bound raises ``SettingsError`` with one line (see
    ``describe_settings_error``): the CLI prints it and exits 2, the API refuses to start.
    """
    extra: dict[str, Any] = {} if env_file is None else {"_env_file": env_file}
    try:
        return Settings(**extra, **dict(overrides or {}))
    except ValidationError as exc:
        raise SettingsError(describe_settings_error(exc, labels)) from None
    except UnicodeDecodeError as exc:
        where = Path(env_file or ".env").resolve()
        raise SettingsError(
            f"{where} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}): save it as UTF-8 or remove that byte"
        ) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once from the environment (tests build their own ``Settings``).

    A bad value raises ``SettingsError`` every time it is asked for (errors are not cached).
    """
    return load_settings()


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
