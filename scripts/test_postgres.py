"""``make test-postgres``: prove the package works on PostgreSQL, on a throw-away server.

Why a script: the project promises "any SQLAlchemy URL", and only a real server proves it.
This starts one in a temporary folder on a free loopback port, runs the database-facing tests
(``pytest -m db``, each test in a fresh schema) and one real ``stock-lstm train`` /
``predict`` round on generated prices against it, then stops the server and deletes the
folder, also when a step fails or the run is interrupted.

PostgreSQL comes from ``/usr/lib/postgresql/<version>/bin``; when it is missing and this runs
as root with ``apt-get``, the Debian package ``postgresql`` is installed. PostgreSQL refuses
to run as root, so as root the server runs as the ``postgres`` user (``runuser``).

Usage: ``.venv/bin/python scripts/test_postgres.py [--skip-tests] [--skip-cli] [-- PYTEST ARGS]``
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: Server settings for a disposable cluster: durability buys nothing here, speed does.
FAST_UNSAFE = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
SERVER_USER = "postgres"
DB_USER = "stock_lstm"
TICKER = "FIX"


def log(message: str) -> None:
    print(f"[test-postgres] {message}", file=sys.stderr, flush=True)


def _has_server(directory: Path) -> bool:
    return all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def find_bindir() -> Path | None:
    """The newest PostgreSQL server bin folder (Debian keeps them off PATH)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:  # may be a symlink into one of the folders above, or a source build
        candidates.append(Path(on_path).resolve().parent)
    return next((path for path in candidates if _has_server(path)), None)


def install_postgresql() -> Path:
    """Find the server binaries, installing the Debian package as root when they are missing."""
    bindir = find_bindir()
    if bindir is not None:
        return bindir
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL "
            "(Debian/Ubuntu: apt-get install postgresql) or run this as root with apt-get"
        )
    log("installing the Debian package postgresql")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    # The package may start its own cluster on 5432; ours runs on its own port, stop theirs.
    if shutil.which("service"):
        subprocess.run(["service", "postgresql", "stop"], capture_output=True, check=False)
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit(
            "installed postgresql but found no initdb/pg_ctl under /usr/lib/postgresql"
        )
    return bindir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Server:
    """A running throw-away server; ``url`` opens its maintenance database ``postgres``."""

    bindir: Path
    folder: Path
    port: int
    password: str
    run_as: str | None

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{DB_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def command(self, *argv: str | Path) -> list[str]:
        """``argv`` run as the server's user (``runuser`` when we are root)."""
        args = [str(arg) for arg in argv]
        return ["runuser", "-u", self.run_as, "--", *args] if self.run_as else args

    def pg_ctl(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(self.bindir / "pg_ctl", "-D", self.data, *argv),
            capture_output=True,
            text=True,
            check=False,
        )


def _server_user() -> str | None:
    """None when not root; else the ``postgres`` user (created if the system has none)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ],
            check=True,
        )
    return SERVER_USER


def start_server(bindir: Path, folder: Path | None = None) -> Server:
    """initdb + start on 127.0.0.1:<free port> in ``folder`` (default: a new temporary one);
    the caller stops it with :func:`stop_server` (``make cluster`` keeps it running)."""
    run_as = _server_user()
    folder = folder or Path(tempfile.mkdtemp(prefix="stock-lstm-pg-"))
    folder.mkdir(parents=True, exist_ok=True)
    server = Server(bindir, folder, free_port(), secrets.token_hex(16), run_as)
    password_file = folder / "password"
    password_file.write_text(server.password + "\n")
    if run_as:
        user = pwd.getpwnam(run_as)
        for path in (folder, password_file):
            os.chown(path, user.pw_uid, user.pw_gid)
    initdb = subprocess.run(
        server.command(
            bindir / "initdb",
            "-D",
            server.data,
            "-U",
            DB_USER,
            f"--pwfile={password_file}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-instructions",
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if initdb.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise SystemExit(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
    password_file.unlink()
    options = " ".join(
        [
            "-c listen_addresses=127.0.0.1",
            f"-p {server.port}",
            f"-k {folder}",  # the Unix socket stays in our folder, not /var/run
            *(f"-c {setting}" for setting in FAST_UNSAFE),
        ]
    )
    started = server.pg_ctl(
        "-l", str(folder / "server.log"), "-o", options, "-w", "-t", "60", "start"
    )
    if started.returncode != 0:
        log_text = (folder / "server.log").read_text(errors="replace")
        stop_server(server)
        raise SystemExit(f"PostgreSQL did not start:\n{started.stderr}\n{log_text}")
    log(f"PostgreSQL {bindir.parent.name} running on 127.0.0.1:{server.port} in {folder}")
    return server


def stop_server(server: Server) -> None:
    """Stop the server (if running) and delete its folder."""
    if (server.data / "postmaster.pid").exists():
        stopped = server.pg_ctl("-m", "immediate", "-w", "stop")
        if stopped.returncode != 0:
            log(f"pg_ctl stop failed: {stopped.stderr.strip()}")
    shutil.rmtree(server.folder, ignore_errors=True)
    log("server stopped and its folder removed")


@contextmanager
def running_server(bindir: Path) -> Iterator[Server]:
    """A server for the ``with`` block; always stopped and deleted afterwards."""
    server = start_server(bindir)
    try:
        yield server
    finally:
        stop_server(server)


def create_database(server: Server, name: str) -> str:
    """An empty database ``name`` on ``server``; returns its URL."""
    from sqlalchemy import create_engine, text

    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
    finally:
        admin.dispose()
    return server.url(name)


def run_tests(server: Server, pytest_args: Sequence[str]) -> None:
    """The database-facing tests, each in a fresh schema of a database made for them."""
    env = {**os.environ, "STOCK_LSTM_TEST_DATABASE_URL": create_database(server, "stock_lstm_test")}
    args = list(pytest_args) or ["-q", "-p", "no:cacheprovider", "-m", "db", "tests"]
    log(f"pytest {' '.join(args)}")
    subprocess.run([sys.executable, "-m", "pytest", *args], cwd=ROOT, env=env, check=True)


def _cli(env: dict[str, str], *argv: str) -> dict:
    command = [str(BIN / "stock-lstm"), *argv, "--json"]
    log(" ".join(["stock-lstm", *argv]))
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"stock-lstm {argv[0]} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout)


def cli_round(server: Server) -> None:
    """Train and predict through the command line, then read the rows back from PostgreSQL."""
    from sqlalchemy import create_engine, func, select

    from stock_lstm.data.synthetic import write_fixture_folder
    from stock_lstm.db import ModelRegistry, PriceCache

    url = create_database(server, "stock_lstm_cli")
    with tempfile.TemporaryDirectory(prefix="stock-lstm-pg-cli-") as work:
        prices = write_fixture_folder(Path(work) / "prices", (TICKER,))
        env = {
            **os.environ,
            "STOCK_LSTM_DATABASE_URL": url,
            "STOCK_LSTM_SOURCE": f"csv:{prices}",
            "STOCK_LSTM_MODELS_DIR": str(Path(work) / "models"),
            "STOCK_LSTM_REPORTS_DIR": str(Path(work) / "reports"),
            "STOCK_LSTM_TORCH_THREADS": "1",
        }
        small = ["--epochs", "2", "--sequence-length", "10", "--hidden-size", "8"]
        trained = _cli(env, "train", TICKER, "--source", f"csv:{prices}", *small)
        forecast = _cli(env, "predict", TICKER, "--days", "5")
        days = forecast["predictions"]
        if len(days) != 5:
            raise SystemExit(f"predict returned {len(days)} days, expected 5: {forecast}")
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                models = connection.scalar(select(func.count()).select_from(ModelRegistry))
                rows = connection.scalar(
                    select(func.count()).select_from(PriceCache).where(PriceCache.ticker == TICKER)
                )
        finally:
            engine.dispose()
        if models != 1 or not rows:
            raise SystemExit(f"PostgreSQL holds {models} models and {rows} price rows")
        log(f"trained {trained.get('version_id')}; 5 forecasts; {rows} price rows in PostgreSQL")


def _raise_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: server stopped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-tests", action="store_true", help="only the CLI round")
    parser.add_argument("--skip-cli", action="store_true", help="only the tests")
    parser.add_argument("pytest_args", nargs="*", help="instead of: -q -m db tests")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    bindir = install_postgresql()
    try:
        with running_server(bindir) as server:
            if not args.skip_tests:
                run_tests(server, args.pytest_args)
            if not args.skip_cli:
                cli_round(server)
    except subprocess.CalledProcessError as error:
        log(f"failed: {' '.join(map(str, error.cmd))} exited {error.returncode}")
        return 1
    log("PostgreSQL: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
