"""The training loop: Adam on the head's loss (NLL, pinball or MSE), early stopping
on validation loss, best weights restored.

Kept lean on purpose because it runs on CPU: tensors are built once, each epoch draws one
seeded permutation and slices batches by index (no DataLoader, no per-sample Dataset), and the
loss is read back to Python once per epoch. The same seed and thread count give identical
losses on the same machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from stock_lstm.data.preprocessing import PreparedData
from stock_lstm.errors import InvalidParameterError
from stock_lstm.models.base_network import NetworkForecaster
from stock_lstm.models.params import (  # noqa: F401  (re-exported: the training API)
    MAX_HORIZON,
    PARAM_CHOICES,
    PARAM_RANGES,
    PARAMETERS,
    ParamSpec,
    TrainParams,
    parameter_help,
    parameter_type,
)

#: An epoch improves on the best validation loss only by more than this (guards float noise).
IMPROVEMENT_TOLERANCE = 1e-12
#: Rows per forward pass when evaluating without gradients (validation loss, predictions).
EVAL_CHUNK_SIZE = 2048


@dataclass(frozen=True)
class EpochReport:
    """What a progress callback learns after each epoch (losses are MSE, or pinball for a
    quantile head, on scaled values)."""

    epoch: int
    total_epochs: int
    train_loss: float
    val_loss: float
    best_epoch: int
    best_val_loss: float
    elapsed_seconds: float


ProgressCallback = Callable[[EpochReport], None]


@dataclass
class TrainResult:
    """A trained network (best validation weights, eval mode) and how training went."""

    model: NetworkForecaster
    history: list[dict[str, float]]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    train_seconds: float


def set_torch_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (``None``: one per CPU core) and return the number set."""
    count = (os.cpu_count() or 1) if threads is None else threads
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidParameterError(f"threads must be a positive whole number, got {threads!r}")
    torch.set_num_threads(count)
    return count


#: glibc ``mallopt`` parameters (malloc.h) and their defaults, restored after training.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
#: Freed heap glibc may keep while training, instead of handing it back to the OS.
_TRAINING_TRIM_THRESHOLD = 1 << 30
_heap_lock = threading.Lock()
_heap_users = 0


def _mallopt() -> Callable[[int, int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return None


@contextlib.contextmanager
def _reuse_freed_memory() -> Iterator[None]:
    """While training, let glibc reuse freed blocks instead of unmapping them.

    Why: glibc serves large blocks (a batch's LSTM activations and workspaces) with ``mmap``
    and returns them with ``munmap``, so every batch page-faults its buffers in again: at
    batch 256 on AAPL, 125,000 page faults and 0.5 s of system time per 1.9 s epoch. Served
    from the heap and kept there, the same buffers are reused (a few hundred faults, a
    quarter less time); peak RSS grows by about one batch's buffers. The defaults come back
    (and the freed heap goes back to the OS) when the last training of the process ends.
    """
    global _heap_users
    mallopt = _mallopt()
    if mallopt is None:
        yield
        return
    with _heap_lock:
        if _heap_users == 0:
            mallopt(_M_MMAP_MAX, 0)
            mallopt(_M_TRIM_THRESHOLD, _TRAINING_TRIM_THRESHOLD)
        _heap_users += 1
    try:
        yield
    finally:
        with _heap_lock:
            _heap_users -= 1
            if _heap_users == 0:
                mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)


def _as_tensor(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def _evaluation_loss(model: NetworkForecaster, X: torch.Tensor, y: torch.Tensor) -> float:
    """The training loss of ``model`` over all of ``X``/``y`` in large chunks, no graph."""
    total = torch.zeros((), dtype=torch.float64)
    with torch.inference_mode():
        for start in range(0, X.shape[0], EVAL_CHUNK_SIZE):
            chunk = y[start : start + EVAL_CHUNK_SIZE]
            loss = model.loss(model(X[start : start + EVAL_CHUNK_SIZE]), chunk)
            total += loss.double() * chunk.numel()
    return total.item() / y.numel()


def _check_data(data: PreparedData) -> None:
    for name in ("train", "val"):
        X, y = getattr(data, f"X_{name}"), getattr(data, f"y_{name}")
        if X.ndim != 3 or y.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
            raise ValueError(
                f"X_{name} must be (n, seq_len, n_features) and y_{name} (n, horizon) with "
                f"n > 0, got {X.shape} and {y.shape}"
            )


def new_network(params: TrainParams, n_features: int, horizon: int) -> NetworkForecaster:
    """The untrained network ``params`` describe: ``params.network`` names its class, which
    names the parameters it takes as its architecture (its ``options``)."""
    from stock_lstm.models.networks import build_network, network_class

    architecture = params.architecture(network_class(params.network).options())
    return build_network(
        params.network,
        n_features=n_features,
        **architecture,
        horizon=horizon,
        quantiles=params.quantile_levels,
        distribution=params.output,
    )


def _chunked_series(X: torch.Tensor) -> torch.Tensor | None:
    """The input series behind consecutive windows ``X`` (n, seq_len, F): (n + seq_len - 1, F),
    or None when the windows are not consecutive one-day steps of one series."""
    if X.shape[0] < 2 or not torch.equal(X[1:, :-1], X[:-1, 1:]):
        return None
    return torch.cat([X[0], X[1:, -1]])


def _chunk_epoch(
    model: NetworkForecaster,
    optimizer: torch.optim.Optimizer,
    series: torch.Tensor,
    targets: torch.Tensor,
    length: int,
    batch_size: int,
    generator: torch.Generator,
) -> float:
    """One pass over the training origins in chunks of ``length`` consecutive origins.

    A chunk is the window of its first origin plus the ``length - 1`` days after it: one LSTM
    pass scores all its origins (each forecast from the state of everything before it in the
    chunk, at least ``seq_len`` days), so an epoch runs about ``(seq_len + length) / length``
    steps per origin instead of ``seq_len``. Chunk starts move by a random offset every epoch
    so no origin always sits at the same place in its chunk; ``batch_size`` origins (whole
    chunks, at least one) make one gradient step.
    """
    n = targets.shape[0]
    warm = series.shape[0] - n  # seq_len - 1 days before the first origin's day
    offset = int(torch.randint(0, length, (1,), generator=generator))
    starts = torch.arange(offset, n - length + 1, length)
    if starts.numel() == 0:
        starts = torch.zeros(1, dtype=torch.long)
        length = n
    starts = starts[torch.randperm(starts.numel(), generator=generator)]
    per_step = max(1, batch_size // length)
    loss_sum, count = torch.zeros(()), 0
    for first in range(0, starts.numel(), per_step):
        batch = starts[first : first + per_step]
        inputs = torch.stack([series[s : s + warm + length] for s in batch.tolist()])
        wanted = torch.stack([targets[s : s + length] for s in batch.tolist()])
        optimizer.zero_grad(set_to_none=True)
        output = model.forward_steps(inputs, warm)
        loss = model.loss(output.flatten(0, 1), wanted.flatten(0, 1))
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * wanted.shape[0] * wanted.shape[1]
        count += wanted.shape[0] * wanted.shape[1]
    return loss_sum.item() / max(count, 1)


def train_model(
    data: PreparedData,
    params: TrainParams,
    *,
    callbacks: Sequence[ProgressCallback] = (),
    threads: int | None = None,
    show_progress: bool = False,
    initial_state: Mapping[str, torch.Tensor] | None = None,
    patience: int | None = None,
    chunk_length: int | None = None,
) -> TrainResult:
    """Train the network ``params.network`` names on ``data`` and return it with its history.

    ``initial_state`` warm-starts from another fit's weights (a walk-forward refit starting
    from the previous window's model): those weights, scored on this validation slice before
    any step, are the bar every epoch must beat, so a refit that cannot improve on them keeps
    them. ``patience`` overrides ``params.patience`` (warm refits need fewer epochs).

    The epochs are :func:`_run_epochs`; the weights of the best validation epoch are restored
    after them. The global torch RNG is left as it was, so training does not disturb the
    caller's random state.
    """
    _check_data(data)
    set_torch_threads(threads)
    X_train, y_train = _as_tensor(data.X_train), _as_tensor(data.y_train)
    X_val, y_val = _as_tensor(data.X_val), _as_tensor(data.y_val)

    with torch.random.fork_rng(devices=[]), _reuse_freed_memory():
        torch.manual_seed(params.seed)
        generator = torch.Generator().manual_seed(params.seed)
        model = new_network(params, int(X_train.shape[2]), int(y_train.shape[1]))
        optimizer = torch.optim.Adam(model.parameters(), lr=params.learning_rate)
        best = _BestWeights(params.patience if patience is None else patience)
        if initial_state is not None:
            model.load_state_dict(initial_state)
            best.start_from(model, _evaluation_loss(model.eval(), X_val, y_val))
        chunk_length = params.chunk_length if chunk_length is None else chunk_length
        # A backbone whose features may read later steps trains window by window.
        chunks = _chunked_series(X_train) if chunk_length and model.causal else None
        started = time.perf_counter()
        history, epoch, stopped_early = _run_epochs(
            _EpochInputs(model, optimizer, X_train, y_train, X_val, y_val, chunks, chunk_length),
            params,
            best,
            generator,
            callbacks=callbacks,
            show_progress=show_progress,
        )

    best.restore(model, params.learning_rate)
    return TrainResult(
        model=model,
        history=history,
        best_epoch=best.epoch,
        epochs_run=epoch,
        stopped_early=stopped_early,
        train_seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class _EpochInputs:
    """What every epoch of one fit reads: the network, its optimizer and the tensors."""

    model: NetworkForecaster
    optimizer: torch.optim.Optimizer
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    #: The training series cut into chunks, when the backbone trains chunk by chunk.
    chunks: torch.Tensor | None
    chunk_length: int | None


def _run_epochs(
    inputs: _EpochInputs,
    params: TrainParams,
    best: _BestWeights,
    generator: torch.Generator,
    *,
    callbacks: Sequence[ProgressCallback],
    show_progress: bool,
) -> tuple[list[dict[str, float]], int, bool]:
    """The epochs of one fit until the last or an early stop: the loss history, the epochs
    run and whether it stopped early. ``best`` keeps the best validation weights.

    Each epoch shuffles the training windows (seeded by ``params.seed``), takes Adam steps on
    the MSE of scaled targets (the negative log-likelihood for ``output="student_t"``, the
    pinball loss for ``output="quantiles"``), then scores the whole validation set. Training
    stops after ``best.patience`` epochs without improvement (0: never early) or when the
    training loss stops being finite. Every callback is called with an :class:`EpochReport`
    after each epoch.
    """
    model = inputs.model
    started = time.perf_counter()
    progress = tqdm(
        range(1, params.epochs + 1),
        desc="training",
        unit="epoch",
        file=sys.stderr,
        disable=not show_progress,
    )
    history: list[dict[str, float]] = []
    epoch, stopped_early = 0, False
    for epoch in progress:
        train_loss = _train_epoch(inputs, params.batch_size, generator)
        val_loss = _evaluation_loss(model.eval(), inputs.X_val, inputs.y_val)
        best.observe(model, epoch, val_loss)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        progress.set_postfix(train=f"{train_loss:.3g}", val=f"{val_loss:.3g}", refresh=False)
        report = EpochReport(
            epoch=epoch,
            total_epochs=params.epochs,
            train_loss=train_loss,
            val_loss=val_loss,
            best_epoch=best.epoch,
            best_val_loss=best.val_loss,
            elapsed_seconds=time.perf_counter() - started,
        )
        for callback in callbacks:
            callback(report)
        if epoch < params.epochs and best.should_stop(train_loss):
            stopped_early = True
            break
    progress.close()
    return history, epoch, stopped_early


def _train_epoch(inputs: _EpochInputs, batch_size: int, generator: torch.Generator) -> float:
    """One pass of Adam steps over the training set, chunk by chunk when the backbone trains
    that way, else window by window; the epoch's mean training loss."""
    inputs.model.train()
    if inputs.chunks is not None and inputs.chunk_length:
        return _chunk_epoch(
            inputs.model,
            inputs.optimizer,
            inputs.chunks,
            inputs.y_train,
            inputs.chunk_length,
            batch_size,
            generator,
        )
    return _window_epoch(
        inputs.model, inputs.optimizer, inputs.X_train, inputs.y_train, batch_size, generator
    )


class _BestWeights:
    """Early stopping's memory: the weights of the best validation epoch so far, and how
    many epochs have passed without beating it (``patience`` 0: never stop early)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.val_loss = math.inf
        self.epoch = 0
        self.state: dict[str, torch.Tensor] | None = None
        self.epochs_without_improvement = 0

    def start_from(self, model: NetworkForecaster, val_loss: float) -> None:
        """Warm start: the given weights, scored before any step, are the bar to beat."""
        if math.isfinite(val_loss):
            self.val_loss = val_loss
            self.state = _copy_state(model)

    def observe(self, model: NetworkForecaster, epoch: int, val_loss: float) -> None:
        if val_loss < self.val_loss - IMPROVEMENT_TOLERANCE:
            self.val_loss, self.epoch = val_loss, epoch
            self.state = _copy_state(model)
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1

    def should_stop(self, train_loss: float) -> bool:
        """The training loss stopped being finite, or ``patience`` epochs did not improve."""
        return not math.isfinite(train_loss) or (
            self.patience > 0 and self.epochs_without_improvement >= self.patience
        )

    def restore(self, model: NetworkForecaster, learning_rate: float) -> None:
        """Load the best weights into ``model`` (in eval mode)."""
        if self.state is None:
            raise InvalidParameterError(
                f"training diverged: the validation loss was never finite "
                f"(learning_rate {learning_rate:g}): use a smaller --learning-rate"
            )
        model.load_state_dict(self.state)
        model.eval()


def _copy_state(model: NetworkForecaster) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _window_epoch(
    model: NetworkForecaster,
    optimizer: torch.optim.Optimizer,
    X: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
) -> float:
    """One pass over the training windows in a seeded random order, ``batch_size`` a step."""
    n = X.shape[0]
    permutation = torch.randperm(n, generator=generator)
    loss_sum = torch.zeros(())
    for start in range(0, n, batch_size):
        batch = permutation[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(model(X[batch]), y[batch])
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * batch.shape[0]
    return loss_sum.item() / n


def predict_scaled(model: NetworkForecaster, X: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    """Scaled predictions (n, horizon) float32 for windows ``X`` (n, seq_len, n_features).

    Runs in eval mode under ``torch.inference_mode``; the model's train/eval mode is restored.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    inputs = _as_tensor(X)
    if inputs.ndim != 3:
        raise ValueError(f"X must be (n, seq_len, n_features), got {tuple(inputs.shape)}")
    if inputs.shape[0] == 0:
        return np.empty((0, model.horizon), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            outputs = [
                model(inputs[start : start + batch_size])
                for start in range(0, inputs.shape[0], batch_size)
            ]
            return torch.cat(outputs).numpy().astype(np.float32, copy=False)
    finally:
        model.train(was_training)
