"""A GRU forecaster: the LSTM's heads and training on a gated recurrent unit.

A GRU has three gates to the LSTM's four and no separate cell state: about three quarters of
the LSTM's weights and compute at the same width. Everything else (inputs, heads, losses,
chunked training, artifacts) is :class:`~stock_lstm.models.lstm.RecurrentForecaster`'s.
"""

from __future__ import annotations

from torch import nn

from stock_lstm.models.lstm import RecurrentForecaster


class GRUForecaster(RecurrentForecaster):
    """Stacked GRU (``--network gru``)."""

    network = "gru"
    cell = nn.GRU
    backbone_attribute = "gru"
