"""``make bench``: run every figure, write ``bench/results.json``, print the markdown table.

Each figure is a ``bench.<module>`` run in a fresh process, so one figure's imports, torch
threads or memory never colour another's; inside a figure, the two sides of a comparison run
in the same process (or alternate from it). The figures that need trained models share one
temporary "world" (``bench.world``), built once and removed at the end.

``--skip NAME`` (repeatable) leaves figures out, e.g. ``make bench BENCH_ARGS="--skip
evaluate"``; ``--only NAME`` runs just those; ``--quick`` takes fewer runs (development only:
the README quotes full runs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULT_MARKER, machine, prices_dir

#: name -> (module, needs the world of trained models, time limit in seconds)
FIGURES: dict[str, tuple[str, bool, int]] = {
    "training": ("bench.training", False, 900),
    "backtest": ("bench.backtest_speed", False, 900),
    "cache": ("bench.price_cache", False, 300),
    "forecast": ("bench.forecast", True, 300),
    "coldstart": ("bench.coldstart", True, 300),
    "memory": ("bench.memory", True, 600),
    "api": ("bench.api_load", True, 600),
    "evaluate": ("bench.many_tickers", False, 1200),
    "dask": ("bench.dask_overhead", False, 300),
    "universal": ("bench.universal_fit", False, 1200),
    "contention": ("bench.registry_contention", False, 900),
    "cluster": ("bench.cluster_train", False, 1800),
    "scale": ("bench.serving_scale", False, 1800),
}
RESULTS = REPO / "bench" / "results.json"


def run_figure(module: str, extra: list[str], limit: int) -> dict[str, Any]:
    """Run one figure module; its rows and raw numbers, or the reason it failed."""
    began = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, *extra],
            capture_output=True,
            text=True,
            timeout=limit,
            cwd=REPO,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"took longer than {limit} s", "seconds": limit}
    seconds = round(time.perf_counter() - began, 1)
    lines = [x for x in done.stdout.splitlines() if x.startswith(RESULT_MARKER)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {"error": " | ".join(tail) or f"exit code {done.returncode}", "seconds": seconds}
    return {**json.loads(lines[-1].removeprefix(RESULT_MARKER)), "seconds": seconds}


def markdown(results: dict[str, Any]) -> str:
    info = results["machine"]
    loads = [x for f in results["figures"].values() for x in f.get("load_average_1min", [])]
    lines = [
        f"Measured {results['finished'][:16].replace('T', ' ')} UTC at commit "
        f"{results['commit']} on {info['nproc']} cores ({info['cpu']}), Python "
        f"{info['python']}, torch {info['torch']}; 1-minute load average "
        f"{min(loads, default=0):.1f}-{max(loads, default=0):.1f} around the figures.",
        "",
        "| figure | result | how |",
        "|---|---|---|",
    ]
    for name, figure in results["figures"].items():
        if "error" in figure:
            lines.append(f"| {name} | failed: {figure['error']} | |")
            continue
        for item in figure["rows"]:
            lines.append(f"| {item['figure']} | {item['value']} | {item['how']} |")
    return "\n".join(lines)


def commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip", action="append", default=[], choices=list(FIGURES))
    parser.add_argument("--only", action="append", default=[], choices=list(FIGURES))
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (3)")
    parser.add_argument("--quick", action="store_true", help="fewer runs (development)")
    args = parser.parse_args()
    prices_dir()  # fail early, with the hint, when the shared prices are missing
    names = [n for n in (args.only or FIGURES) if n not in args.skip]
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": commit(),
        "figures": {},
    }
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stock-lstm-bench-world-") as tmp:
        world = Path(tmp)
        if any(FIGURES[name][1] for name in names):
            print("bench: training one model per shared ticker for the world...", flush=True)
            subprocess.run([sys.executable, "-m", "bench.world", str(world)], check=True, cwd=REPO)
        for name in names:
            module, needs_world, limit = FIGURES[name]
            extra = ["--repeats", str(args.repeats)] + (["--quick"] if args.quick else [])
            if needs_world:
                extra += ["--world", str(world)]
            print(f"bench: {name}...", end=" ", flush=True)
            load_before = os.getloadavg()[0]
            figure = run_figure(module, extra, limit)
            figure["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            results["figures"][name] = figure
            failed = f" FAILED: {figure['error']}" if "error" in figure else ""
            print(f"{figure['seconds']:.0f} s{failed}", flush=True)
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["total_seconds"] = round(time.perf_counter() - began, 1)
    results["markdown"] = markdown(results)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(results["markdown"])
    print(f"\n(total {results['total_seconds']:.0f} s; raw numbers in {RESULTS})")
    return 1 if any("error" in f for f in results["figures"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
