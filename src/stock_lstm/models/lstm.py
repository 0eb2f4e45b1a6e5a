"""The network: a stacked LSTM read out by one linear layer on its last time step."""

from __future__ import annotations

import torch
from torch import nn

from stock_lstm.errors import InvalidParameterError


class LSTMForecaster(nn.Module):
    """Maps a window of scaled features to the next ``horizon`` scaled target values.

    Input (batch, seq_len, n_features) float32 -> output (batch, horizon) float32, both in the
    scaler's units (training prices map to [0, 1]). Dropout applies between stacked LSTM layers
    only, because PyTorch ignores it (with a warning) on a single layer.
    """

    def __init__(
        self,
        n_features: int = 1,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        horizon: int = 1,
    ) -> None:
        super().__init__()
        for name, value in (
            ("n_features", n_features),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
            ("horizon", horizon),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise InvalidParameterError(f"dropout must be in [0, 1), got {dropout!r}")
        self.n_features = n_features
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = float(dropout)
        self.horizon = horizon
        self.lstm = nn.LSTM(
            input_size=n_features,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=self.dropout if num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden_size, horizon)
        # Start close to a zero output: for the log_return target that is exactly the
        # persistence forecast, so training departs from the baseline only where it helps.
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq_len, n_features) -> (batch, horizon)."""
        sequence_output, _ = self.lstm(x)
        return self.head(sequence_output[:, -1, :])

    def config(self) -> dict[str, int | float]:
        """Constructor keyword arguments as plain Python values: ``LSTMForecaster(**config)``."""
        return {
            "n_features": int(self.n_features),
            "hidden_size": int(self.hidden_size),
            "num_layers": int(self.num_layers),
            "dropout": float(self.dropout),
            "horizon": int(self.horizon),
        }
