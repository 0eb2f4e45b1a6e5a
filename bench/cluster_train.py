"""``train-all`` on a real multi-process cluster: 1 and 2 workers, universe tickers, PostgreSQL.

Why: the nightly retrain of many tickers is a batch sent to a scheduler and worker processes
that live on their own (``scripts/cluster.py``, what ``make cluster WORKERS=N POSTGRES=1``
runs), not a local cluster inside one command. For 1 and then 2 workers, each on a new
cluster and a new PostgreSQL, this times ``stock-lstm run train --tickers ...`` over the same
``TICKERS`` universe tickers with the default parameters (the command a user types, its
start-up included), then the same batch on the local default (2 worker processes started by
the command, SQLite). From those: tickers per hour per core, the 1 -> 2 worker speed-up, the
scheduler's cost per near-empty task on the real cluster, and each worker's peak memory, the
worker process and the notebook kernel it runs together (sampled every 0.2 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, STOCK_LSTM, emit, figure_args, free_port, row

#: How many universe tickers each batch trains (every ``len // TICKERS``-th, sorted).
TICKERS = 24
DEFAULT_UNIVERSE = REPO.parent / "shared" / "data" / "universe"
CLUSTER_SCRIPT = REPO / "scripts" / "cluster.py"
SAMPLE_SECONDS = 0.2


def universe_dir() -> Path:
    folder = Path(os.environ.get("STOCK_LSTM_BENCH_UNIVERSE", DEFAULT_UNIVERSE)).resolve()
    if not any(folder.glob("*.csv")):
        raise SystemExit(
            f"bench: no <TICKER>.csv in {folder}: put the universe beside the checkout "
            "(../shared/data/universe) or set STOCK_LSTM_BENCH_UNIVERSE"
        )
    return folder


def pick_tickers(folder: Path, count: int) -> list[str]:
    """``count`` tickers spread over the sorted folder (not the first letters only)."""
    names = sorted(path.stem for path in folder.glob("*.csv"))
    step = max(1, len(names) // count)
    return names[::step][:count]


class PeakMemory:
    """The largest summed RSS of some processes and all their children, sampled in a thread.

    Why sampled: a worker runs each ticker's notebook in a kernel process that exits with the
    ticker, so the kernel's own high-water mark is gone by the time the batch ends.
    """

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak_bytes = {pid: 0 for pid in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            for pid in self.pids:
                try:
                    parent = psutil.Process(pid)
                    family = [parent, *parent.children(recursive=True)]
                    total = sum(p.memory_info().rss for p in family if p.is_running())
                except psutil.Error:
                    continue
                self.peak_bytes[pid] = max(self.peak_bytes[pid], total)
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cluster(state_dir: Path, *argv: str) -> None:
    done = subprocess.run(
        [sys.executable, str(CLUSTER_SCRIPT), *argv, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: cluster.py {argv[0]} failed: {done.stdout}{done.stderr}")


def cluster_env(state_dir: Path, root: Path) -> dict[str, str]:
    """The client's settings from the cluster's env file, with this figure's folders."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCK_LSTM_")}
    for line in (state_dir / "env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    env["STOCK_LSTM_MODELS_DIR"] = str(root / "models")
    env["STOCK_LSTM_REPORTS_DIR"] = str(root / "reports")
    env["STOCK_LSTM_PUSHGATEWAY_URL"] = ""
    return env


def train_batch(env: dict[str, str], tickers: list[str], universe: Path) -> dict[str, Any]:
    """``stock-lstm run train --tickers ...`` timed end to end, with its per-ticker outcome."""
    argv = [STOCK_LSTM, "run", "train", "--tickers", ",".join(tickers), "--no-progress"]
    argv += ["--source", f"csv:{universe}", "--run-id", "bench", "--json"]
    began = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - began
    try:
        summary = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise SystemExit(f"bench: the batch printed no summary: {done.stderr[-2000:]}") from None
    statuses = [result.get("status") for result in summary.get("results", [])]
    if done.returncode != 0 or statuses.count("ok") != len(tickers):
        raise SystemExit(f"bench: the batch failed (exit {done.returncode}): {done.stdout[-2000:]}")
    return {"wall_seconds": wall, "tickers": len(tickers)}


def task_overhead(address: str, tasks: int) -> float:
    """Seconds per near-empty task through ``stock_lstm.cluster`` on the running scheduler."""
    from bench.dask_overhead import dask_seconds_per_task
    from stock_lstm.cluster import open_executor

    def tiny_task(number: int) -> dict[str, Any]:
        # Defined here, so it travels by value: the workers cannot import ``bench``.
        return {"status": "ok", "value": sum(range(number % 100))}

    with open_executor(address, echo=None) as executor:
        dask_seconds_per_task(executor, 10, tiny_task)
        rounds = [dask_seconds_per_task(executor, tasks, tiny_task) for _ in range(3)]
    return sorted(rounds)[1]


def on_real_cluster(workers: int, tickers: list[str], universe: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"stock-lstm-bench-cluster{workers}-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # as root, PostgreSQL runs as its own user: it must reach its folder
        state = root / "cluster"
        port, dashboard = free_port(), free_port()
        began = time.perf_counter()
        cluster(state, "start", "--workers", str(workers), "--port", str(port),
                "--dashboard-port", str(dashboard), "--postgres")  # fmt: skip
        startup = time.perf_counter() - began
        try:
            env = cluster_env(state, root)
            overhead = task_overhead(env["STOCK_LSTM_DASK_SCHEDULER"], 200)
            pids = [int(p) for p in json.loads((state / "state.json").read_text())["workers"]]
            with PeakMemory(pids) as memory:
                batch = train_batch(env, tickers, universe)
        finally:
            cluster(state, "stop")
    peaks = [b / 2**20 for b in memory.peak_bytes.values()]
    return {**batch, "workers": workers, "startup_seconds": startup,
            "task_overhead_seconds": overhead, "peak_mb_per_worker": peaks}  # fmt: skip


def on_local_default(tickers: list[str], universe: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="stock-lstm-bench-local-") as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOCK_LSTM_")}
        env |= {
            "STOCK_LSTM_DATABASE_URL": f"sqlite:///{root / 'stock_lstm.db'}",
            "STOCK_LSTM_MODELS_DIR": str(root / "models"),
            "STOCK_LSTM_REPORTS_DIR": str(root / "reports"),
            "STOCK_LSTM_PUSHGATEWAY_URL": "",
        }
        return {**train_batch(env, tickers, universe), "workers": os.cpu_count() or 1}


def main() -> None:
    args = figure_args(__doc__.splitlines()[0])
    universe = universe_dir()
    tickers = pick_tickers(universe, 4 if args.quick else TICKERS)
    one = on_real_cluster(1, tickers, universe)
    two = on_real_cluster(2, tickers, universe)
    local = on_local_default(tickers, universe)
    n = len(tickers)

    def per_hour_per_core(result: dict[str, Any]) -> float:
        return n / result["wall_seconds"] * 3600 / result["workers"]

    speedup = one["wall_seconds"] / two["wall_seconds"]
    how = (
        f"`stock-lstm run train --tickers` over {n} universe tickers, default parameters, "
        "timed from the command's start to its summary (kernel start-up and reports included)"
    )
    rows = [
        row(
            f"train-all on the real cluster, {r['workers']} worker(s), PostgreSQL",
            f"{r['wall_seconds']:.0f} s for {n} tickers: {per_hour_per_core(r):.0f} tickers "
            f"per hour per core ({r['wall_seconds'] * r['workers'] / n:.1f} core-s a ticker)",
            how + f"; scripts/cluster.py start --workers {r['workers']} --postgres",
        )
        for r in (one, two)
    ]
    rows += [
        row(
            "train-all speed-up, 1 -> 2 workers on the real cluster",
            f"{speedup:.2f}x",
            f"the two rows above ({n} tickers each, one run each)",
        ),
        row(
            "train-all on the local default (2 worker processes, SQLite)",
            f"{local['wall_seconds']:.0f} s for {n} tickers: {per_hour_per_core(local):.0f} "
            "tickers per hour per core",
            how + "; no scheduler set, so the command starts its own cluster",
        ),
        row(
            "Dask overhead per task on the real cluster",
            f"{two['task_overhead_seconds'] * 1000:.1f} ms",
            "200 near-empty tasks through stock_lstm.cluster to the 2-worker scheduler, "
            "median of 3 rounds",
        ),
        row(
            "Peak memory per worker (worker + its notebook kernel)",
            ", ".join(f"{mb:.0f} MB" for mb in two["peak_mb_per_worker"]),
            f"summed RSS sampled every {SAMPLE_SECONDS} s during the 2-worker batch",
        ),
        row(
            "Cluster start-up (scheduler, workers, PostgreSQL)",
            f"{one['startup_seconds']:.1f} s (1 worker), {two['startup_seconds']:.1f} s (2)",
            "scripts/cluster.py start --postgres until the workers have registered",
        ),
    ]
    emit(rows, {"tickers": tickers, "one_worker": one, "two_workers": two, "local": local})


if __name__ == "__main__":
    main()
