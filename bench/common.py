"""What every figure shares: paths, statistics, the machine, a temporary "world" of models.

Each figure module prints one JSON object (``{"rows": [...], "raw": {...}}``) as the last line
of its stdout; ``bench.run`` collects them. A row is what the README table shows: a label,
a value with its unit, and how it was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: The shared real prices (20 tickers, 2013-2023) beside the checkout; never copied into it.
DEFAULT_PRICES_DIR = REPO.parent / "shared" / "data" / "prices"
BIN = Path(sys.executable).parent
STOCK_LSTM = str(BIN / "stock-lstm")
RESULT_MARKER = "BENCH-RESULT "


def prices_dir() -> Path:
    """``STOCK_LSTM_BENCH_PRICES`` or ``../shared/data/prices``; a clear error if absent."""
    directory = Path(os.environ.get("STOCK_LSTM_BENCH_PRICES", DEFAULT_PRICES_DIR)).resolve()
    if not (directory / "AAPL.csv").is_file():
        raise SystemExit(
            f"bench: no AAPL.csv in {directory}: put the shared prices beside the checkout "
            "(../shared/data/prices) or set STOCK_LSTM_BENCH_PRICES"
        )
    return directory


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``: an observed value, no blending."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5 - 1e-9))
    return float(ordered[min(rank, len(ordered)) - 1])


def row(figure: str, value: str, how: str) -> dict[str, str]:
    """One line of the README table."""
    return {"figure": figure, "value": value, "how": how}


def emit(rows: list[dict[str, str]], raw: dict[str, Any]) -> None:
    """Hand the figure's rows and raw numbers to ``bench.run`` (last line of stdout)."""
    print(RESULT_MARKER + json.dumps({"rows": rows, "raw": raw}, default=str), flush=True)


def machine() -> dict[str, Any]:
    """Where the numbers came from: cores, CPU model, Python and torch versions."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "torch": metadata.version("torch"),
        "host": socket.gethostname(),
    }


def figure_args(description: str) -> argparse.Namespace:
    """The options every figure module takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--world", type=Path, help="a folder made by bench.world (else a new one)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--quick", action="store_true", help="fewer runs, for development")
    return parser.parse_args()


# --- the world: a temporary database and models folder with one model per shared ticker -----


@dataclass(frozen=True)
class World:
    """A temporary STOCK_LSTM_* environment whose registry holds an active model per ticker."""

    root: Path
    tickers: tuple[str, ...]
    #: The CSV folder its models were trained on (None: the shared prices).
    prices: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        """``os.environ`` plus the settings that point every ``stock-lstm`` call here."""
        return {
            **os.environ,
            "STOCK_LSTM_DATABASE_URL": f"sqlite:///{self.root / 'stock_lstm.db'}",
            "STOCK_LSTM_MODELS_DIR": str(self.root / "models"),
            "STOCK_LSTM_REPORTS_DIR": str(self.root / "reports"),
            "STOCK_LSTM_SOURCE": f"csv:{self.prices or prices_dir()}",
            "STOCK_LSTM_PUSHGATEWAY_URL": "",
        }

    def settings(self) -> Any:
        from stock_lstm.config import Settings

        env = self.env
        return Settings(
            database_url=env["STOCK_LSTM_DATABASE_URL"],
            models_dir=Path(env["STOCK_LSTM_MODELS_DIR"]),
            reports_dir=Path(env["STOCK_LSTM_REPORTS_DIR"]),
            source=env["STOCK_LSTM_SOURCE"],
        )

    def save(self) -> None:
        prices = str(self.prices) if self.prices else None
        (self.root / "world.json").write_text(
            json.dumps({"tickers": list(self.tickers), "prices": prices})
        )

    @classmethod
    def load(cls, root: Path) -> World:
        data = json.loads((root / "world.json").read_text())
        prices = Path(data["prices"]) if data.get("prices") else None
        return cls(root.resolve(), tuple(data["tickers"]), prices)


#: One epoch: the figures need real-sized networks (2 x 64, 30-day head) in the registry,
#: not good ones; a model's size does not depend on how long it trained.
WORLD_TRAIN_PARAMS = {"epochs": 1, "patience": 0}


def build_world(root: Path, prices: Path | None = None) -> World:
    """Train and register one default-sized model per ticker of ``prices`` (default: the
    shared prices), about a second each."""
    from stock_lstm.data.sources import CsvSource
    from stock_lstm.models.training import TrainParams
    from stock_lstm.workflows import AppContext, register_outcome, train_ticker

    tickers = tuple(CsvSource(prices or prices_dir()).available_tickers())
    world = World(root.resolve(), tickers, prices)
    ctx = AppContext.create(world.settings())
    params = TrainParams.from_dict(WORLD_TRAIN_PARAMS)
    for ticker in tickers:
        register_outcome(ctx, train_ticker(ctx, ticker, params), force=True)
    ctx.db.dispose()
    world.save()
    return world


@contextmanager
def world_from(path: Path | None) -> Iterator[World]:
    """The given world, or a new one in a temporary folder removed afterwards."""
    if path is not None:
        yield World.load(path)
        return
    with tempfile.TemporaryDirectory(prefix="stock-lstm-bench-") as tmp:
        yield build_world(Path(tmp))


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"bench: {what} did not happen within {timeout:.0f} s")


def http_json(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """A tiny JSON client on the standard library (the API's figures must not need httpx)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class ApiServer:
    """``stock-lstm serve`` on a free loopback port in its own process group."""

    def __init__(
        self, world: World, log_path: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [STOCK_LSTM, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env={**world.env, **(extra_env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def healthy() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"bench: the API exited early; see {log_path}")
            try:
                return http_json("GET", self.url + "/health")[0] == 200
            except OSError:
                return False

        wait_until(healthy, 60, "the API answering /health")

    def status_kib(self, field: str) -> int:
        """A ``/proc/<pid>/status`` memory field (``VmHWM``, ``VmRSS``) in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def stop(self) -> None:
        """SIGTERM this server's process group (it and any notebook kernel it started)."""
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- a throw-away PostgreSQL (``scripts/test_postgres.py``'s server) --------------------------


@dataclass
class PostgresServer:
    """A running throw-away server; ``new_database_url(name)`` creates an empty database."""

    server: Any
    script: Any

    def new_database_url(self, name: object) -> str:
        return str(self.script.create_database(self.server, f"bench_{name}"))


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """The server for the ``with`` block (installed from Debian's packages when missing), in
    a temporary folder of its own: the server's user must be able to reach it."""
    import scripts.test_postgres as script  # the project folder is on sys.path (python -m)

    bindir = script.find_bindir() or script.install_postgresql()
    server = script.start_server(bindir)
    try:
        yield PostgresServer(server, script)
    finally:
        script.stop_server(server)
