"""Serving and listing at scale: 200 active models, 2,000 registry rows and 2,000 runs.

Why: a team that retrains the universe every night serves every ticker and lists thousands
of versions and runs. On a world of one model per universe ticker (one epoch each: a
model's size and load time do not depend on how long it trained), this measures:

- ``/predict`` round-robin over every ticker, one client, ``ROUNDS`` rounds, with the model
  cache at 32 and at the default (256): the first round loads every model, the later ones
  show whether the cache holds them; p50/p99, requests/s and the server's memory, hence
  the memory of one loaded model;
- ``stock-lstm predict --all`` over every ticker (a new process, so cold);
- ``/metrics`` after that: its size and how many ``stock_lstm_predictions`` series;
- ``/api/v1/models`` and ``/api/v1/training/jobs`` with ``ROWS`` rows each (inactive
  versions and finished jobs added to the world's registry), first page and a deep page
  through the cursor, and ``stock-lstm models``;
- ``reports/index.html`` rebuilt from ``ROWS`` runs: copies of one real ``run train``
  folder spread over every ticker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.cluster_train import universe_dir
from bench.common import (
    STOCK_LSTM,
    ApiServer,
    build_world,
    emit,
    figure_args,
    http_json,
    median,
    percentile,
    row,
)

ROUNDS = 3
ROWS = 2000
#: The old default and the new one (``STOCK_LSTM_MODEL_CACHE_SIZE``).
CACHE_SIZES = (32, 256)
LISTING_REQUESTS = 30


def round_robin(server: ApiServer, tickers: tuple[str, ...], rounds: int) -> list[list[float]]:
    """Seconds of each ``/predict`` answer, round by round."""
    out = []
    for _ in range(rounds):
        seconds = []
        for ticker in tickers:
            began = time.perf_counter()
            status, body = http_json(
                "POST", f"{server.url}/api/v1/predict", {"ticker": ticker, "days_ahead": 5}
            )
            seconds.append(time.perf_counter() - began)
            if status != 200:
                raise SystemExit(f"bench: /predict {ticker} answered {status}: {body}")
        out.append(seconds)
    return out


def describe_round(seconds: list[float]) -> dict[str, float]:
    return {
        "per_second": len(seconds) / sum(seconds),
        "p50_ms": percentile(seconds, 50) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
    }


def add_registry_rows(world: Any, rows: int) -> None:
    """Inactive versions and finished jobs until the registry holds ``rows`` of each.

    Each added version carries a real version's parameters and metrics, and each job a
    50-epoch loss history: a listing's cost is mostly decoding and sending that JSON.
    """
    from sqlalchemy import update

    from stock_lstm.db import Database, TrainingJob
    from stock_lstm.models import jobs
    from stock_lstm.models.artifacts import SavedArtifacts
    from stock_lstm.models.registry import (
        TrainingDataSummary,
        get_active_model,
        register_model,
    )

    db = Database(world.env["STOCK_LSTM_DATABASE_URL"])
    real = get_active_model(db, world.tickers[0])
    summary = TrainingDataSummary(date(2011, 1, 3), date(2020, 12, 31), 2516, "0" * 64)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    existing = len(world.tickers)
    for n in range(rows - existing):
        ticker = world.tickers[n % existing]
        at = start + timedelta(minutes=n)
        version_id = f"{ticker}_{at:%Y%m%d_%H%M%S}"
        files = Path("/nowhere") / version_id
        artifacts = SavedArtifacts(version_id, files / "m.pt", files / "s.json", "m" * 64, "s" * 64)
        register_model(
            db,
            ticker=ticker,
            artifacts=artifacts,
            params=real.params,
            metrics=real.metrics,
            data=summary,
            code_version="bench",
            activate=False,
            clock=lambda at=at: at,
        )
    for n in range(rows):
        job_id = f"bench-job-{n:05d}"
        jobs.create_job(db, world.tickers[n % existing], {"epochs": 1}, job_id=job_id)
        jobs.mark_failed(db, job_id, "a bench row")
    losses = [{"epoch": e, "train_loss": 0.1, "val_loss": 0.1} for e in range(1, 51)]
    with db.transaction() as session:
        session.execute(
            update(TrainingJob)
            .where(TrainingJob.job_id.like("bench-job-%"))
            .values(losses=losses, current_epoch=50, total_epochs=100)
        )
    db.dispose()


def timed_get(url: str, requests: int) -> dict[str, float]:
    seconds = []
    for _ in range(requests):
        began = time.perf_counter()
        status, body = http_json("GET", url)
        seconds.append(time.perf_counter() - began)
        if status != 200:
            raise SystemExit(f"bench: GET {url} answered {status}: {body}")
    return {"p50_ms": median(seconds) * 1000, "p99_ms": percentile(seconds, 99) * 1000}


def deep_cursor(server: ApiServer, path: str, pages: int) -> str:
    """The cursor ``pages`` pages of 100 in: the deep page a client reaches by paging."""
    cursor = ""
    for _ in range(pages):
        status, body = http_json("GET", f"{server.url}{path}?limit=100{cursor}")
        if status != 200 or not body.get("next_cursor"):
            raise SystemExit(f"bench: {path} has fewer than {pages + 1} pages: {status} {body}")
        cursor = f"&cursor={body['next_cursor']}"
    return cursor


#: The deep page the listing figure times (the last of 2,000 rows at 100 a page is page 20).
DEEP_PAGE = 16


def listings(server: ApiServer, requests: int, deep_page: int = DEEP_PAGE) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, path in (("models", "/api/v1/models"), ("jobs", "/api/v1/training/jobs")):
        first_page = f"{server.url}{path}?limit=100"
        _, first = http_json("GET", first_page)
        out[name] = {
            "total": first["total"],
            "first": timed_get(first_page, requests),
            "deep": timed_get(first_page + deep_cursor(server, path, deep_page - 1), requests),
        }
    return out


def cli_seconds(world: Any, *argv: str) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run([STOCK_LSTM, *argv], capture_output=True, text=True, env=world.env)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"bench: stock-lstm {' '.join(argv)} failed: {done.stderr[-1000:]}")
    return took, done.stdout


def index_rebuild(world: Any, runs: int, repeats: int) -> dict[str, Any]:
    """One real ``run train`` folder copied ``runs`` times over the tickers, then the index
    rebuilt ``repeats`` times in a new process each (the manifests read from disk each time)."""
    ticker = world.tickers[0]
    epochs = ["-p", "epochs", "1"]
    cli_seconds(world, "run", "train", "--ticker", ticker, *epochs, "--run-id", "seed-run")
    reports = Path(world.env["STOCK_LSTM_REPORTS_DIR"])
    model = reports / ticker / "seed-run"
    manifest = json.loads((model / "run.json").read_text())
    for n in range(runs - 1):
        name = world.tickers[n % len(world.tickers)]
        run_id = f"bench-{n:05d}"
        folder = reports / name / run_id
        shutil.copytree(model, folder)
        copy = {**manifest, "run_id": run_id, "ticker": name}
        (folder / "run.json").write_text(json.dumps(copy, default=str))
    seconds = [cli_seconds(world, "reports")[0] for _ in range(repeats)]
    index = reports / "index.html"
    return {
        "runs": runs,
        "seconds": seconds,
        "median_seconds": median(seconds),
        "index_kb": index.stat().st_size / 1024,
        "manifest_kb": (model / "run.json").stat().st_size / 1024,
    }


def main() -> None:
    args = figure_args(__doc__.splitlines()[0])
    universe = universe_dir()
    rows_wanted = 300 if args.quick else ROWS
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="stock-lstm-bench-scale-") as tmp:
        root = Path(tmp)
        if args.quick:  # a slice of the universe: the shape of every figure, not its size
            small = root / "universe"
            small.mkdir()
            for path in sorted(universe.glob("*.csv"))[:12]:
                shutil.copy(path, small / path.name)
            universe = small
        began = time.perf_counter()
        world = build_world(root / "world", prices=universe)
        raw["world_seconds"] = time.perf_counter() - began
        n = len(world.tickers)
        rounds = 2 if args.quick else ROUNDS

        serving: dict[int, Any] = {}
        for size in CACHE_SIZES:
            log = root / f"api-{size}.log"
            with ApiServer(world, log, {"STOCK_LSTM_MODEL_CACHE_SIZE": str(size)}) as server:
                rss_before = server.status_kib("VmRSS")
                timings = round_robin(server, world.tickers, rounds)
                serving[size] = {
                    "first": describe_round(timings[0]),
                    "later": describe_round([s for r in timings[1:] for s in r]),
                    "rss_mb_before": rss_before / 1024,
                    "rss_mb": server.status_kib("VmRSS") / 1024,
                }
                if size == CACHE_SIZES[-1]:
                    with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as answer:
                        text = answer.read()
                    raw["metrics"] = {
                        "bytes": len(text),
                        "prediction_series": text.count(b"stock_lstm_predictions_total{"),
                    }
        raw["serving"] = serving
        small_cache, big_cache = (serving[size] for size in CACHE_SIZES)
        held = min(n, CACHE_SIZES[-1]) - min(n, CACHE_SIZES[0])
        per_model_mb = (big_cache["rss_mb"] - small_cache["rss_mb"]) / max(held, 1)

        predict_all, _ = cli_seconds(world, "predict", "--all", "--days", "5")
        raw["predict_all_seconds"] = predict_all

        add_registry_rows(world, rows_wanted)
        with ApiServer(world, root / "api-listing.log") as server:
            deep_page = min(DEEP_PAGE, rows_wanted // 100)
            raw["listings"] = listings(server, 10 if args.quick else LISTING_REQUESTS, deep_page)
        raw["models_cli_seconds"], _ = cli_seconds(world, "models")
        raw["index"] = index_rebuild(world, rows_wanted, 2 if args.quick else args.repeats)

    def serve_value(figures: dict[str, Any]) -> str:
        first, later = figures["first"], figures["later"]
        return (
            f"later rounds {later['per_second']:.0f} req/s, p50 {later['p50_ms']:.0f} ms, p99 "
            f"{later['p99_ms']:.0f} ms (first round {first['per_second']:.0f} req/s, p50 "
            f"{first['p50_ms']:.0f} ms); server {figures['rss_mb']:.0f} MB"
        )

    how = f"/predict (5 days) for each of {n} active models in turn, {rounds} rounds, 1 client"
    rows = [
        row(f"Serving {n} models round-robin, model cache {size}", serve_value(serving[size]), how)
        for size in CACHE_SIZES
    ]
    listing = raw["listings"]
    rows += [
        row(
            "Memory per loaded model",
            f"{per_model_mb:.2f} MB",
            f"server RSS at cache {CACHE_SIZES[-1]} minus at {CACHE_SIZES[0]}, over the {held} "
            "models only the larger cache holds",
        ),
        row(
            f"`stock-lstm predict --all` over {n} tickers",
            f"{raw['predict_all_seconds']:.1f} s",
            "a new process (imports and every model loaded from disk), one run",
        ),
        row(
            f"/metrics with {n} tickers predicted",
            f"{raw['metrics']['bytes'] / 1024:.0f} KB, {raw['metrics']['prediction_series']} "
            "prediction series",
            "one scrape after the round-robin above (STOCK_LSTM_METRICS_TICKER_LABELS=1000)",
        ),
        *(
            row(
                f"{path} with {listing[name]['total']} rows",
                f"first page p50 {listing[name]['first']['p50_ms']:.1f} ms (p99 "
                f"{listing[name]['first']['p99_ms']:.1f}); page {deep_page} p50 "
                f"{listing[name]['deep']['p50_ms']:.1f} ms",
                f"GET ?limit=100, {10 if args.quick else LISTING_REQUESTS} requests each; "
                f"page {deep_page} reached through the cursor; SQLite",
            )
            for name, path in (("models", "/api/v1/models"), ("jobs", "/api/v1/training/jobs"))
        ),
        row(
            f"`stock-lstm models` with {listing['models']['total']} rows",
            f"{raw['models_cli_seconds']:.2f} s",
            "a new process, first page of 50",
        ),
        row(
            f"reports/index.html rebuilt from {raw['index']['runs']} runs",
            f"{raw['index']['median_seconds']:.1f} s, {raw['index']['index_kb']:.0f} KB",
            f"`stock-lstm reports` in a new process, median of {len(raw['index']['seconds'])}; "
            f"copies of one real train run ({raw['index']['manifest_kb']:.0f} KB manifest) "
            f"over {n} tickers",
        ),
    ]
    emit(rows, raw)


if __name__ == "__main__":
    main()
