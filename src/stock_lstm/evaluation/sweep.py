"""``stock-lstm sweep``: walk-forward backtest every point of a hyperparameter grid.

Why backtests and not the holdout score: one test slice flatters whichever point happened to
fit it; a walk-forward backtest scores every point on the same origins, beside persistence
(tomorrow = today) and drift on the same days. Points are ranked by rMAE at h=1 (model MAE /
persistence MAE; below 1 is a lower error). Here: the grid, the ranking and the table; each
point runs as one Dask task (``pipeline.experiments.run_sweep``), so a grid spreads over the
cluster. A sweep registers nothing;
``--register-best`` then trains the best point through the normal train notebook (report,
promotion gate and all).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stock_lstm.errors import InvalidParameterError

#: Grid names a sweep does not take: the backtest's ``--horizon`` sets the head's horizon.
NOT_IN_GRID = ("horizon",)
#: A guard against a typo that multiplies a grid into days of work.
MAX_POINTS = 1000
PERSISTENCE_LABEL = "persistence (tomorrow = today)"


def _kinds() -> dict[str, type]:
    """Each training parameter's type, from ``TrainParams``' defaults (int, float, str)."""
    from stock_lstm.models.training import TrainParams

    defaults = TrainParams()
    return {name: type(getattr(defaults, name)) for name in TrainParams.model_fields}


def _value(name: str, kind: type, text: str) -> Any:
    text = text.strip()
    try:
        return kind(text)
    except ValueError:
        what = {int: "a whole number", float: "a number"}.get(kind, kind.__name__)
        raise InvalidParameterError(
            f"--grid {name}: {text!r} is not {what} (e.g. --grid {name}=1,2)"
        ) from None


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``["hidden_size=32,64", "dropout=0,0.2"]`` -> ``{"hidden_size": [32, 64], ...}``.

    Names must be training parameters (not ``horizon``), each given once; values are
    converted to the parameter's type and checked point by point in ``grid_points``.
    """
    kinds = _kinds()
    allowed = [name for name in kinds if name not in NOT_IN_GRID]
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise InvalidParameterError(
                f"--grid {spec!r}: write NAME=V1,V2 (e.g. --grid hidden_size=32,64)"
            )
        if name not in allowed:
            raise InvalidParameterError(
                f"--grid {name!r} is not a parameter a sweep varies: choose from "
                f"{', '.join(allowed)}"
            )
        if name in grid:
            raise InvalidParameterError(f"--grid {name} is given twice: merge the values")
        parsed = [_value(name, kinds[name], part) for part in values.split(",") if part.strip()]
        grid[name] = list(dict.fromkeys(parsed))
    if not grid:
        raise InvalidParameterError("a sweep needs at least one --grid NAME=V1,V2")
    return grid


def grid_points(
    grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Every combination of the grid's values over ``fixed``, each validated as ``TrainParams``
    (the error names the point); the full parameter dicts, in grid order."""
    from stock_lstm.models.training import TrainParams

    names = list(grid)
    combos = list(itertools.product(*(grid[name] for name in names)))
    if len(combos) > MAX_POINTS:
        raise InvalidParameterError(
            f"the grid has {len(combos)} points, more than {MAX_POINTS}: sweep fewer values"
        )
    points = []
    for combo in combos:
        point = dict(zip(names, combo, strict=True))
        try:
            params = TrainParams.from_dict({**fixed, **point})
        except InvalidParameterError as exc:
            raise InvalidParameterError(f"grid point {point_label(point)}: {exc}") from None
        points.append(params.to_dict())
    return points


def point_label(point: Mapping[str, Any], names: Sequence[str] | None = None) -> str:
    return " ".join(f"{name}={point[name]}" for name in (names or list(point)))


def rank_key(row: Mapping[str, Any]) -> tuple[int, float]:
    value = row.get("rmae_h1")
    finite = isinstance(value, int | float) and math.isfinite(value)
    return (0 if row.get("status") == "ok" and finite else 1, value if finite else math.inf)


@dataclass
class SweepResult:
    """Points ranked best first (failed ones last) and the baselines they are measured by."""

    ticker: str
    grid: dict[str, list[Any]]
    config: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best(self) -> dict[str, Any] | None:
        ranked = [row for row in self.rows if rank_key(row)[0] == 0]
        return ranked[0] if ranked else None

    @property
    def failed(self) -> list[str]:
        return [row["label"] for row in self.rows if row.get("status") != "ok"]

    @property
    def baselines(self) -> dict[str, Any]:
        """Each point baseline at h=1: the same for every point (same origins, same days)."""
        from stock_lstm.evaluation.baselines import BASELINE_CLASSES

        ok = next((row for row in self.rows if row.get("status") == "ok"), None)
        if ok is None:
            return {}
        return {
            name: {
                "rmae_h1": 1.0 if name == "persistence" else ok.get(f"rmae_{name}_h1"),
                "mae_h1": ok.get(f"{name}_mae_h1"),
            }
            for name in BASELINE_CLASSES
            if f"{name}_mae_h1" in ok
        }

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "ticker": self.ticker,
            "grid": self.grid,
            "config": self.config,
            "baselines": self.baselines,
            "points": self.rows,
            "best": best["label"] if best else None,
            "failed": self.failed,
        }


def _num(value: Any, spec: str) -> str:
    if isinstance(value, int | float) and math.isfinite(value):
        return format(value, spec)
    return "–"


def format_sweep(result: SweepResult) -> str:
    """The ranked table, persistence and drift placed where their rMAE ranks them."""
    names = list(result.grid)
    width = max([len(row["label"]) for row in result.rows] + [len(PERSISTENCE_LABEL)]) + 2
    first = next((row for row in result.rows if row.get("status") == "ok"), {})
    lines = [
        f"{result.ticker}: {len(result.rows)} grid point(s) over {', '.join(names)}; "
        f"{first.get('n_origins', '?')} origins {first.get('first_origin', '?')}.."
        f"{first.get('last_origin', '?')}, ranked by rMAE at h=1 (model MAE / persistence "
        "MAE; below 1 is a lower error than tomorrow = today)",
        f"{'rank':>4}  {'point':<{width}}{'rMAE h=1':>9}{'MAE h=1':>11}{'DM p':>7}"
        f"{'direction':>10}  status",
    ]
    entries: list[tuple[float, int, str]] = []
    for position, row in enumerate(result.rows, start=1):
        status = row.get("status", "?")
        if status != "ok":
            status = f"failed: {row.get('error', '')}"
        text = (
            f"{position:>4}  {row['label']:<{width}}{_num(row.get('rmae_h1'), '9.3f')}"
            f"{_num(row.get('mae_h1'), '11.4f')}{_num(row.get('dm_p_h1'), '7.2f')}"
            f"{_num(row.get('directional_accuracy_h1'), '10.3f')}  {status}"
        )
        failed, value = rank_key(row)
        entries.append((math.inf if failed else value, 1, text))
    for name, values in result.baselines.items():
        shown = PERSISTENCE_LABEL if name == "persistence" else name
        text = (
            f"{'':>4}  {shown:<{width}}{_num(values['rmae_h1'], '9.3f')}"
            f"{_num(values['mae_h1'], '11.4f')}"
        )
        value = values["rmae_h1"]
        finite = isinstance(value, int | float) and math.isfinite(value)
        entries.append((value if finite else math.inf, 0, text))
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    lines.extend(text for _rank, _order, text in entries)
    best = result.best
    lines.append(f"best: {best['label']}" if best else "best: none (every point failed)")
    return "\n".join(lines)
