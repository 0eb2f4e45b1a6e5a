"""The network: a stacked recurrent layer (an LSTM by default) read out by one linear layer
on its last time step.

``RecurrentForecaster`` holds everything but the cell (heads, losses, chunked outputs, its
config); ``LSTMForecaster`` (the original design) and ``models.gru.GRUForecaster`` only say
which cell. ``models.networks`` maps their names to the classes.

The head gives either one value per horizon day (a point forecast, trained on MSE) or, with
``quantiles``, a set of non-crossing quantiles per day (trained on the pinball loss): the
median is the point forecast and the spread is the network's own, day-by-day uncertainty.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
from torch import nn

from stock_lstm.errors import InvalidParameterError
from stock_lstm.models.online_calibration import QUANTILE_LEVELS

__all__ = [
    "DISTRIBUTIONS",
    "QUANTILE_LEVELS",
    "LSTMForecaster",
    "RecurrentForecaster",
    "pinball_loss",
]
#: How a distributional head is parameterized (see ``LSTMForecaster.distribution``).
DISTRIBUTIONS = ("quantiles", "student_t")


def _inverse_softplus(value: float) -> float:
    return value + math.log(-math.expm1(-value))


def pinball_loss(
    predicted: torch.Tensor, target: torch.Tensor, levels: torch.Tensor
) -> torch.Tensor:
    """Mean pinball (quantile) loss of quantiles (n, H, Q) against targets (n, H)."""
    error = target.unsqueeze(-1) - predicted
    return torch.maximum(levels * error, (levels - 1.0) * error).mean()


class RecurrentForecaster(nn.Module):
    """Maps a window of scaled features to the next ``horizon`` scaled target values.

    Subclasses set ``network`` (the name artifacts record), ``cell`` (an ``nn.RNNBase``
    class) and ``cell_attribute`` (the submodule's name: it prefixes the saved weights, so
    an LSTM keeps ``lstm`` and every artifact saved before this class still loads).

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
        quantiles: tuple[float, ...] | list[float] = (),
        distribution: str = "quantiles",
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
        self.quantiles = tuple(float(q) for q in quantiles)
        if distribution not in DISTRIBUTIONS:
            raise InvalidParameterError(
                f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}"
            )
        #: How a head with ``quantiles`` is parameterized: the quantiles themselves, or a
        #: Student-t (location, scale, degrees of freedom) whose quantiles are read off.
        self.distribution = distribution if self.quantiles else "quantiles"
        if self.quantiles and (
            0.5 not in self.quantiles
            or list(self.quantiles) != sorted(set(self.quantiles))
            or not all(0.0 < q < 1.0 for q in self.quantiles)
        ):
            raise InvalidParameterError(
                f"quantiles must be distinct, ascending, inside (0, 1) and include 0.5, "
                f"got {self.quantiles}"
            )
        recurrent = self.cell(
            input_size=n_features,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=self.dropout if num_layers > 1 else 0.0,
        )
        self.add_module(self.cell_attribute, recurrent)
        n_outputs = max(len(self.quantiles), 1)
        if self.is_student_t:
            n_outputs = 3
        self.head = nn.Linear(hidden_size, horizon * n_outputs)
        # Start close to a zero output: for the log_return target that is exactly the
        # persistence forecast, so training departs from the baseline only where it helps.
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        if self.is_student_t:
            # Start at location 0, scale 1 (targets have unit variance) and 5 degrees of
            # freedom (2 + softplus(raw)), a typical tail for daily returns.
            with torch.no_grad():
                start = [0.0, _inverse_softplus(1.0), _inverse_softplus(3.0)]
                self.head.bias.copy_(torch.tensor(start * self.horizon, dtype=torch.float32))
        elif self.quantiles:
            self._init_quantile_bias()
        if self.quantiles:
            self.register_buffer("levels", torch.tensor(self.quantiles, dtype=torch.float32))

    network: str = ""
    cell: type[nn.RNNBase] = nn.LSTM
    cell_attribute: str = "rnn"
    #: The training parameters (``models.params.PARAMETERS``, group ``network``) this network
    #: takes as constructor options: its architecture. Training passes exactly these; the
    #: shared ones (inputs, horizon, head) come from the data and ``output``.
    options: tuple[str, ...] = ("hidden_size", "num_layers", "dropout")

    @property
    def recurrent(self) -> nn.RNNBase:
        """The recurrent layers (``self.lstm`` for an LSTM, ``self.gru`` for a GRU)."""
        module = getattr(self, self.cell_attribute)
        assert isinstance(module, nn.RNNBase)
        return module

    @property
    def is_student_t(self) -> bool:
        """A head that outputs Student-t parameters (trained by negative log-likelihood)."""
        return self.distribution == "student_t"

    @property
    def loss_name(self) -> str:
        """What :meth:`loss` computes, for axis labels and reports."""
        if self.is_student_t:
            return "negative log-likelihood"
        return "pinball loss" if self.quantiles else "MSE"

    @property
    def median_index(self) -> int:
        """Position of the 0.5 quantile in the output's last axis (0 for a point head)."""
        return self.quantiles.index(0.5) if self.quantiles else 0

    def _init_quantile_bias(self) -> None:
        """Start at a standard normal's quantiles: targets have unit variance per horizon, so
        the first epoch already has a sensible (static) spread that training makes adaptive."""
        normal = NormalDist()
        z = [normal.inv_cdf(q) for q in self.quantiles]
        m = self.median_index
        bias = [0.0] * len(z)
        for k in range(m + 1, len(z)):
            bias[k] = _inverse_softplus(z[k] - z[k - 1])
        for k in range(m - 1, -1, -1):
            bias[k] = _inverse_softplus(z[k + 1] - z[k])
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor(bias * self.horizon, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq_len, n_features) -> (batch, horizon), or (batch, horizon, Q) quantiles
        (Student-t: (batch, horizon, 3) location, scale, degrees of freedom).

        Quantiles cannot cross by construction: the head gives the median and positive
        (softplus) gaps outwards from it, summed cumulatively.
        """
        sequence_output, _ = self.recurrent(x)
        return self._outputs(sequence_output[:, -1, :])

    def forward_steps(self, x: torch.Tensor, first_step: int) -> torch.Tensor:
        """The head's output at every step from ``first_step`` on: (batch, steps, horizon...).

        One pass over a long chunk gives a forecast at each of its later steps, each from the
        state built by everything before it in the chunk: how a chunk trains many origins for
        the price of one sequence (see ``training.train_model``'s ``chunk_length``).
        """
        sequence_output, _ = self.recurrent(x)
        return self._outputs(sequence_output[:, first_step:, :])

    def _outputs(self, hidden: torch.Tensor) -> torch.Tensor:
        """Head outputs for hidden states (..., hidden_size)."""
        out = self.head(hidden)
        if not self.quantiles:
            return out
        lead = out.shape[:-1]
        if self.is_student_t:
            raw = out.view(*lead, self.horizon, 3)
            scale = nn.functional.softplus(raw[..., 1:2]) + 1e-4
            df = 2.0 + nn.functional.softplus(raw[..., 2:3])
            return torch.cat([raw[..., :1], scale, df], dim=-1)
        raw = out.view(*lead, self.horizon, len(self.quantiles))
        m = self.median_index
        median = raw[..., m : m + 1]
        above = median + torch.cumsum(nn.functional.softplus(raw[..., m + 1 :]), dim=-1)
        below = median - torch.cumsum(nn.functional.softplus(raw[..., :m].flip(-1)), dim=-1).flip(
            -1
        )
        return torch.cat([below, median, above], dim=-1)

    def point(self, output: torch.Tensor) -> torch.Tensor:
        """The point forecast (batch, horizon) of an output: the median of a quantile head
        (the location of a Student-t head, its median too)."""
        if self.is_student_t:
            return output[..., 0]
        return output[..., self.median_index] if self.quantiles else output

    def quantile_values(self, output: torch.Tensor) -> Any:
        """Quantiles (batch, horizon, Q) at ``self.quantiles`` as a float64 numpy array."""
        values = output.double().numpy()
        if not self.is_student_t:
            return values
        from scipy import stats

        loc, scale, df = values[..., :1], values[..., 1:2], values[..., 2:3]
        return loc + scale * stats.t.ppf(np.asarray(self.quantiles), df)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """MSE for a point head, the mean pinball loss over the quantiles for a quantile head,
        the mean negative log-likelihood for a Student-t head."""
        if self.is_student_t:
            t = torch.distributions.StudentT(output[..., 2], output[..., 0], output[..., 1])
            return -t.log_prob(target).mean()
        if self.quantiles:
            return pinball_loss(output, target, self.levels)
        return nn.functional.mse_loss(output, target)

    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments as plain Python values: ``LSTMForecaster(**config)``
        (``quantiles`` only for a quantile head, so a point head's config is as it always was)."""
        config: dict[str, Any] = {
            "n_features": int(self.n_features),
            "hidden_size": int(self.hidden_size),
            "num_layers": int(self.num_layers),
            "dropout": float(self.dropout),
            "horizon": int(self.horizon),
        }
        if self.quantiles:
            config["quantiles"] = list(self.quantiles)
        if self.is_student_t:
            config["distribution"] = self.distribution
        return config


class LSTMForecaster(RecurrentForecaster):
    """Stacked LSTM: the original design's network and the default."""

    network = "lstm"
    cell = nn.LSTM
    cell_attribute = "lstm"
