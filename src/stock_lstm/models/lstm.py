"""Recurrent networks: a stacked recurrent layer (an LSTM by default) whose last step's
state is read out by the head (``models.base_network``, ``models.heads``).

``RecurrentForecaster`` holds what an RNN backbone needs; ``LSTMForecaster`` (the original
design) and ``models.gru.GRUForecaster`` only say which cell. ``models.networks`` maps their
names to the classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from stock_lstm.errors import InvalidParameterError
from stock_lstm.models.base_network import NetworkForecaster
from stock_lstm.models.heads import pinball_loss
from stock_lstm.models.online_calibration import QUANTILE_LEVELS

__all__ = [
    "QUANTILE_LEVELS",
    "LSTMForecaster",
    "RecurrentForecaster",
    "pinball_loss",
]


class RecurrentForecaster(NetworkForecaster):
    """A stacked ``nn.RNNBase`` backbone: subclasses set ``network``, ``cell`` and
    ``backbone_attribute`` (an LSTM keeps ``lstm``, so every artifact saved before this class
    still loads). Dropout applies between stacked layers only, because PyTorch ignores it
    (with a warning) on a single layer.
    """

    cell: ClassVar[type[nn.RNNBase]] = nn.LSTM
    backbone_attribute: ClassVar[str] = "rnn"
    causal: ClassVar[bool] = True

    def __init__(
        self,
        n_features: int = 1,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        horizon: int = 1,
        quantiles: tuple[float, ...] | list[float] = (),
        distribution: str = "quantiles",
    ) -> None:
        for name, value in (
            ("n_features", n_features),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise InvalidParameterError(f"dropout must be in [0, 1), got {dropout!r}")
        recurrent = self.cell(
            input_size=n_features,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=float(dropout) if num_layers > 1 else 0.0,
        )
        super().__init__(
            recurrent,
            features=hidden_size,
            n_features=n_features,
            horizon=horizon,
            quantiles=quantiles,
            distribution=distribution,
        )
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = float(dropout)

    @classmethod
    def step_cost(cls, options: Mapping[str, Any]) -> tuple[float, float]:
        """A step runs every layer in turn, each about ``hidden_size^2`` multiply-adds."""
        layers, width = int(options["num_layers"]), int(options["hidden_size"])
        return float(layers * width**2), float(layers)

    @property
    def recurrent(self) -> nn.RNNBase:
        """The recurrent layers (``self.lstm`` for an LSTM, ``self.gru`` for a GRU)."""
        module = getattr(self, self.backbone_attribute)
        assert isinstance(module, nn.RNNBase)
        return module

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        sequence_output, _ = self.recurrent(x)
        return sequence_output


class LSTMForecaster(RecurrentForecaster):
    """Stacked LSTM: the original design's network and the default."""

    network = "lstm"
    cell = nn.LSTM
    backbone_attribute = "lstm"
