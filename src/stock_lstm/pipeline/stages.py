"""The pipeline's stages and the notebooks behind them."""

from __future__ import annotations

from pathlib import Path

from stock_lstm.errors import InvalidParameterError

#: Stage name -> notebook stem, in pipeline order.
STAGES: dict[str, str] = {
    "sync": "01_sync",
    "eda": "02_eda",
    "train": "03_train",
    "predict": "04_predict",
    "backtest": "05_backtest",
    "universe": "06_universe",
}
#: Stages whose notebook may register a version (linked to its report by ``report_path``)
#: and so may run for a training job (``job_id``).
REGISTERING_STAGES = ("train", "universe")
ALL = "all"
#: What ``all`` runs: the backtest refits many times and the universe trains on hundreds of
#: tickers, so they are asked for by name.
ALL_STAGES = ("sync", "eda", "train", "predict")
KERNEL_NAME = "stock-lstm"


def default_notebooks_dir() -> Path:
    """``notebooks/`` of the checkout this package is installed from (editable install)."""
    return Path(__file__).resolve().parents[3] / "notebooks"


def resolve_stages(names: list[str]) -> list[str]:
    """Expand ``all``, reject unknown names, drop duplicates, keep pipeline order."""
    if not names:
        raise InvalidParameterError(f"name at least one stage: {', '.join(STAGES)} or {ALL}")
    wanted: set[str] = set()
    for name in names:
        key = name.strip().lower()
        if key == ALL:
            wanted.update(ALL_STAGES)
        elif key in STAGES:
            wanted.add(key)
        else:
            raise InvalidParameterError(
                f"unknown stage {name!r}: choose from {', '.join(STAGES)} or {ALL}"
            )
    return [stage for stage in STAGES if stage in wanted]
