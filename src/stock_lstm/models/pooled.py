"""A universal network: one model fitted on the windows of many tickers pooled.

Why: one ticker has ~2,500 days and one or two volatility regimes, too little for a
network to learn more than a linear HAR already knows; networks trained on many stocks
pooled keep an edge even on stocks left out of training (Zhang, Zhang, Cucuringu & Qian
2023; Christensen, Siggaard & Veliyev 2023).

How, in the project's terms:

* every ticker is prepared exactly as a per-ticker fit is (``prepare_data``): its encoder is
  fitted on *its own* training rows, so inputs and targets are scale-free (returns in units
  of the ticker's own volatility) and the network never learns a ticker's identity or price
  level; a ticker it never saw is encoded the same way from its own history;
* the split is by date across the universe: the last ``validation_fraction`` of the
  universe's dates validate (early stopping), every row before trains; with ``until`` no row
  dated on or after it is read at all;
* training is chunked like a per-ticker fit (``training._chunk_epoch``), the chunks of
  every ticker shuffled together, ``POOLED_BATCH_CHUNKS`` of them per gradient step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pandas as pd
import torch

from stock_lstm.data.preprocessing import SplitFractions, prepare_data
from stock_lstm.errors import InvalidParameterError, NotEnoughDataError
from stock_lstm.models.base_network import NetworkForecaster
from stock_lstm.models.params import TrainParams

#: Share of the universe's dates (the last ones) that validate.
VALIDATION_FRACTION = 0.15
#: Chunks per gradient step. A pooled epoch holds ~150x the origins of one ticker's, so the
#: per-ticker batch (one chunk a step) would take thousands of steps an epoch; 32 chunks of
#: 60 origins keep an epoch to about a hundred steps of a batch the CPU runs efficiently.
POOLED_BATCH_CHUNKS = 32
#: Epochs without a better validation loss before a pooled fit stops: each epoch already
#: sees every ticker's history once, so the per-ticker patience (10) would mostly wait.
POOLED_PATIENCE = 3


@dataclass(frozen=True)
class TickerSlices:
    """One ticker's encoded series behind its consecutive training (and validation) origins:
    ``series`` (n + seq_len - 1, F) and ``targets`` (n, H), as ``_chunk_epoch`` reads them."""

    ticker: str
    train_series: torch.Tensor
    train_targets: torch.Tensor
    val_series: torch.Tensor | None
    val_targets: torch.Tensor | None


@dataclass
class PooledData:
    """The universe prepared for one fit, and what was left out and why."""

    slices: list[TickerSlices]
    n_features: int
    horizon: int
    validation_start: pd.Timestamp
    until: pd.Timestamp | None
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def tickers(self) -> list[str]:
        return [s.ticker for s in self.slices]

    @property
    def train_origins(self) -> int:
        return sum(int(s.train_targets.shape[0]) for s in self.slices)


def validation_start(frames: Mapping[str, pd.DataFrame], fraction: float) -> pd.Timestamp:
    """The first validation date: the universe's dates, the last ``fraction`` of them."""
    dates = pd.DatetimeIndex(sorted(set().union(*(frame.index for frame in frames.values()))))
    if len(dates) < 2:
        raise NotEnoughDataError("the universe has fewer than two dates: nothing to split")
    return pd.Timestamp(dates[min(len(dates) - 1, math.floor(len(dates) * (1 - fraction)))])


def prepare_universe(
    frames: Mapping[str, pd.DataFrame],
    params: TrainParams,
    *,
    until: pd.Timestamp | None = None,
    validation_fraction: float = VALIDATION_FRACTION,
) -> PooledData:
    """Encode every ticker of ``frames`` (normalized price frames) for one pooled fit.

    Rows dated on or after ``until`` are dropped before anything is computed from them. A
    ticker too short for one training window, or with no row on one side of the split, is
    skipped (named in ``skipped`` with the reason); no usable ticker at all raises
    :class:`NotEnoughDataError`.
    """
    from stock_lstm.models.training import _as_tensor, _chunked_series

    if until is not None:
        frames = {t: f[f.index < until] for t, f in frames.items()}
        frames = {t: f for t, f in frames.items() if len(f)}
    if not frames:
        raise NotEnoughDataError("no universe rows before the cut-off: use a later --until")
    split = validation_start(frames, validation_fraction)
    slices: list[TickerSlices] = []
    skipped: dict[str, str] = {}
    for ticker, frame in frames.items():
        n_train = int((frame.index < split).sum())
        if n_train == 0 or n_train == len(frame):
            skipped[ticker] = "no rows on one side of the validation date"
            continue
        train = n_train / len(frame)
        fractions = SplitFractions(train, 1.0 - train, allow_empty_test=True)
        try:
            data = prepare_data(frame, fractions=fractions, **params.data_options)
        except (NotEnoughDataError, InvalidParameterError) as exc:
            skipped[ticker] = str(exc)
            continue
        train_windows = _as_tensor(data.X_train)
        train_series = _chunked_series(train_windows) if len(train_windows) > 1 else None
        if train_series is None:
            skipped[ticker] = "fewer than two training windows"
            continue
        val_series = _chunked_series(_as_tensor(data.X_val)) if len(data.X_val) > 1 else None
        slices.append(
            TickerSlices(
                ticker,
                train_series,
                _as_tensor(data.y_train),
                val_series,
                _as_tensor(data.y_val) if val_series is not None else None,
            )
        )
    if not slices:
        raise NotEnoughDataError(
            f"no ticker of the universe has enough rows for one training window: {skipped}"
        )
    first = slices[0]
    return PooledData(
        slices,
        int(first.train_series.shape[1]),
        int(first.train_targets.shape[1]),
        split,
        until,
        skipped,
    )


def _chunks(
    slices: list[TickerSlices], part: str, length: int, offset: int
) -> list[tuple[int, int]]:
    """(ticker index, first origin) of every whole chunk of ``length`` origins in ``part``."""
    out = []
    for k, s in enumerate(slices):
        targets = s.train_targets if part == "train" else s.val_targets
        if targets is None:
            continue
        n = int(targets.shape[0])
        if n < length:
            if n > 0 and part == "val":
                out.append((k, 0))  # a short validation span: one chunk of what there is
            continue
        out.extend((k, start) for start in range(offset, n - length + 1, length))
    return out


def _batch(
    slices: list[TickerSlices], part: str, pairs: list[tuple[int, int]], length: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Inputs (B, warm + L, F) and targets (B, L, H) of chunks, and the warm-up length."""
    inputs, targets = [], []
    warm = 0
    for k, start in pairs:
        s = slices[k]
        series = s.train_series if part == "train" else s.val_series
        wanted = s.train_targets if part == "train" else s.val_targets
        assert series is not None and wanted is not None
        warm = int(series.shape[0] - wanted.shape[0])
        span = min(length, int(wanted.shape[0]) - start)
        inputs.append(series[start : start + warm + span])
        targets.append(wanted[start : start + span])
    if len({t.shape[0] for t in targets}) > 1:  # ragged short spans: pad by repetition
        longest = max(t.shape[0] for t in targets)
        inputs = [
            torch.cat([x, x[-1:].expand(longest - t.shape[0], -1)])
            for x, t in zip(inputs, targets, strict=True)
        ]
        targets = [torch.cat([t, t[-1:].expand(longest - t.shape[0], -1)]) for t in targets]
    return torch.stack(inputs), torch.stack(targets), warm


def _validation_loss(model: NetworkForecaster, data: PooledData, length: int) -> float:
    """Mean loss over every validation origin, in chunks from fixed starts, no graph."""
    pairs = _chunks(data.slices, "val", length, 0)
    if not pairs:
        return math.nan
    total, count = 0.0, 0
    with torch.inference_mode():
        for first in range(0, len(pairs), POOLED_BATCH_CHUNKS * 4):
            inputs, targets, warm = _batch(
                data.slices, "val", pairs[first : first + POOLED_BATCH_CHUNKS * 4], length
            )
            output = model.forward_steps(inputs, warm)
            loss = model.loss(output.flatten(0, 1), targets.flatten(0, 1))
            total += float(loss) * targets.shape[0] * targets.shape[1]
            count += targets.shape[0] * targets.shape[1]
    return total / max(count, 1)


@dataclass
class PooledResult:
    """A fitted universal network (best validation weights, eval mode) and its run."""

    model: NetworkForecaster
    tickers: list[str]
    history: list[dict[str, float]]
    best_epoch: int
    epochs_run: int
    train_seconds: float
    train_origins: int
    validation_start: pd.Timestamp
    skipped: dict[str, str]


def train_pooled(
    data: PooledData,
    params: TrainParams,
    *,
    threads: int | None = None,
    patience: int = POOLED_PATIENCE,
    progress: Callable[[int, float, float], None] | None = None,
) -> PooledResult:
    """Fit one network on every ticker's training chunks; stop on the pooled validation loss.

    Seeded by ``params.seed`` (the chunk order and the initial weights); the global torch RNG
    is left as it was. ``progress(epoch, train_loss, val_loss)`` after each epoch.
    """
    from stock_lstm.models.training import new_network, set_torch_threads

    params = params.validate()
    set_torch_threads(threads)
    length = params.chunk_length or 60
    started = time.perf_counter()
    history: list[dict[str, float]] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        generator = torch.Generator().manual_seed(params.seed)
        model = new_network(params, data.n_features, data.horizon)
        if not model.causal:
            raise InvalidParameterError(
                f"pooled training runs in chunks, which the {params.network} network cannot "
                "(its backbone is not causal step by step): choose a causal network"
            )
        optimizer = torch.optim.Adam(model.parameters(), lr=params.learning_rate)
        best_loss, best_epoch, best_state, waited = math.inf, 0, None, 0
        epoch = 0
        for epoch in range(1, params.epochs + 1):
            model.train()
            offset = int(torch.randint(0, length, (1,), generator=generator))
            pairs = _chunks(data.slices, "train", length, offset)
            order = torch.randperm(len(pairs), generator=generator).tolist()
            loss_sum, count = 0.0, 0
            for first in range(0, len(order), POOLED_BATCH_CHUNKS):
                chosen = [pairs[i] for i in order[first : first + POOLED_BATCH_CHUNKS]]
                inputs, targets, warm = _batch(data.slices, "train", chosen, length)
                optimizer.zero_grad(set_to_none=True)
                output = model.forward_steps(inputs, warm)
                loss = model.loss(output.flatten(0, 1), targets.flatten(0, 1))
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach()) * targets.shape[0] * targets.shape[1]
                count += targets.shape[0] * targets.shape[1]
            train_loss = loss_sum / max(count, 1)
            model.eval()
            val_loss = _validation_loss(model, data, length)
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
            if progress:
                progress(epoch, train_loss, val_loss)
            if val_loss < best_loss - 1e-12:
                best_loss, best_epoch, waited = val_loss, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                waited += 1
            if not math.isfinite(train_loss) or waited >= patience:
                break
    if best_state is None:
        raise InvalidParameterError(
            "pooled training diverged: the validation loss was never finite: use a smaller "
            "--learning-rate"
        )
    model.load_state_dict(best_state)
    model.eval()
    return PooledResult(
        model,
        data.tickers,
        history,
        best_epoch,
        epoch,
        time.perf_counter() - started,
        data.train_origins,
        data.validation_start,
        data.skipped,
    )
