"""stock_lstm: daily stock price forecasting with a PyTorch LSTM.

The package is layered the way data flows: ``data`` (sources, cache, preprocessing) ->
``models`` (network, training, artifacts, registry, forecasting) -> ``evaluation`` ->
``workflows`` (one call per user action) -> ``pipeline`` / ``api`` / ``cli``.
"""

from __future__ import annotations

__version__ = "0.1.0"
