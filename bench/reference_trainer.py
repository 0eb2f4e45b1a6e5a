"""The baseline of the training figure: the loop most LSTM stock tutorials write.

A per-sample ``Dataset`` handing out numpy windows, ``DataLoader(shuffle=True)`` collating
them into tensors batch by batch, ``.item()`` after every step, validation through another
``DataLoader`` under ``torch.no_grad()``, and torch's default thread count. Same network
(:class:`~stock_lstm.models.lstm.LSTMForecaster`), same seed, same data, same Adam + MSE as
:func:`stock_lstm.models.training.train_model`: only the way the loop is written differs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from stock_lstm.data.preprocessing import PreparedData
from stock_lstm.models.lstm import LSTMForecaster
from stock_lstm.models.training import TrainParams


class WindowDataset(Dataset[tuple[np.ndarray, np.ndarray]]):
    """One (window, targets) pair per index, as numpy arrays; the loader makes tensors."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X = X
        self.y = y

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.X[index], self.y[index]


def train_reference(
    data: PreparedData, params: TrainParams, epoch_ends: list[float] | None = None
) -> dict[str, Any]:
    """Train ``params.epochs`` epochs (no early stopping) and return the last losses.

    ``epoch_ends`` receives ``time.perf_counter()`` after each epoch's validation pass.
    """
    torch.manual_seed(params.seed)
    model = LSTMForecaster(
        n_features=data.X_train.shape[2],
        hidden_size=params.hidden_size,
        num_layers=params.num_layers,
        dropout=params.dropout,
        horizon=data.y_train.shape[1],
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=params.learning_rate)
    criterion = nn.MSELoss()
    train_loader = DataLoader(
        WindowDataset(data.X_train, data.y_train), batch_size=params.batch_size, shuffle=True
    )
    val_loader = DataLoader(
        WindowDataset(data.X_val, data.y_val), batch_size=params.batch_size, shuffle=False
    )
    train_loss = val_loss = float("nan")
    for _epoch in range(params.epochs):
        model.train()
        running = 0.0
        for inputs, targets in train_loader:
            inputs, targets = inputs.float(), targets.float()
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            running += loss.item() * inputs.size(0)
        train_loss = running / len(train_loader.dataset)  # type: ignore[arg-type]
        model.eval()
        total = 0.0
        with torch.no_grad():
            for inputs, targets in val_loader:
                total += criterion(model(inputs.float()), targets.float()).item() * inputs.size(0)
        val_loss = total / len(val_loader.dataset)  # type: ignore[arg-type]
        if epoch_ends is not None:
            epoch_ends.append(time.perf_counter())
    return {"train_loss": train_loss, "val_loss": val_loss}
