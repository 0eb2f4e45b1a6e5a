"""Output heads: what a network's last linear layer means, and the loss that trains it.

A head is chosen apart from the backbone (Darts' ``likelihood``, NeuralForecast's
``DistributionLoss``): any backbone's features go through one ``nn.Linear`` to
``horizon x n_params`` raw values per window, and the head turns those into its output and
scores them. The training parameter ``output`` names the head (``HEAD_CLASSES``):

* ``point``: one value per day, mean squared error;
* ``quantiles``: nine non-crossing quantiles per day (the median and positive softplus gaps
  out from it, summed), mean pinball loss;
* ``student_t``: location, scale and degrees of freedom per day, negative log-likelihood;
  its quantiles are read off the t.

A new head is one :class:`Head` subclass and one line in ``models.networks.HEAD_CLASSES``
(``models.base_network.make_head`` builds one by name).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from statistics import NormalDist
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from stock_lstm.errors import InvalidParameterError


def _inverse_softplus(value: float) -> float:
    return value + math.log(-math.expm1(-value))


def pinball_loss(
    predicted: torch.Tensor, target: torch.Tensor, levels: torch.Tensor
) -> torch.Tensor:
    """Mean pinball (quantile) loss of quantiles (n, H, Q) against targets (n, H)."""
    error = target.unsqueeze(-1) - predicted
    return torch.maximum(levels * error, (levels - 1.0) * error).mean()


class Head(ABC):
    """How raw outputs (..., horizon x ``n_params``) become a forecast, and its loss.

    ``quantiles``: the levels a distributional head's quantiles are read at (empty for a
    point head). Heads hold no weights, so an artifact's weights are the network's alone.
    """

    name: ClassVar[str]
    #: What :meth:`loss` computes, for axis labels and reports.
    loss_name: ClassVar[str]
    #: Raw outputs per horizon day (``None``: one per quantile level).
    params_per_day: ClassVar[int | None] = 1

    def __init__(self, quantiles: tuple[float, ...] = ()) -> None:
        self.quantiles = tuple(float(q) for q in quantiles)
        self._check_quantiles()

    def _check_quantiles(self) -> None:
        if not self.quantiles:
            raise InvalidParameterError(f"the {self.name} head needs quantile levels")
        if (
            0.5 not in self.quantiles
            or list(self.quantiles) != sorted(set(self.quantiles))
            or not all(0.0 < q < 1.0 for q in self.quantiles)
        ):
            raise InvalidParameterError(
                f"quantiles must be distinct, ascending, inside (0, 1) and include 0.5, "
                f"got {self.quantiles}"
            )

    @property
    def n_params(self) -> int:
        return self.params_per_day or len(self.quantiles)

    @property
    def median_index(self) -> int:
        """Position of the 0.5 quantile in the output's last axis (0 for a point head)."""
        return self.quantiles.index(0.5) if self.quantiles else 0

    def initial_bias(self) -> list[float] | None:
        """One day's starting bias of the linear layer (``None``: zeros)."""
        return None

    @abstractmethod
    def transform(self, raw: torch.Tensor, horizon: int) -> torch.Tensor:
        """The head's output from raw values (..., horizon x n_params)."""

    @abstractmethod
    def point(self, output: torch.Tensor) -> torch.Tensor:
        """The point forecast (..., horizon): the median."""

    @abstractmethod
    def quantile_values(self, output: torch.Tensor) -> Any:
        """Quantiles (..., horizon, Q) at ``quantiles`` as float64 numpy."""

    @abstractmethod
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training loss of outputs against targets (..., horizon)."""


class PointHead(Head):
    """One value per day, trained on the mean squared error."""

    name = "point"
    loss_name = "MSE"

    def _check_quantiles(self) -> None:
        if self.quantiles:
            raise InvalidParameterError("a point head has no quantiles")

    def transform(self, raw: torch.Tensor, horizon: int) -> torch.Tensor:
        return raw

    def point(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def quantile_values(self, output: torch.Tensor) -> Any:
        return output.double().numpy()

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(output, target)


class QuantileHead(Head):
    """Non-crossing quantiles per day, trained on the mean pinball loss."""

    name = "quantiles"
    loss_name = "pinball loss"
    params_per_day = None

    def __init__(self, quantiles: tuple[float, ...] = ()) -> None:
        super().__init__(quantiles)
        self.levels = torch.tensor(self.quantiles, dtype=torch.float32)

    def initial_bias(self) -> list[float] | None:
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
        return bias

    def transform(self, raw: torch.Tensor, horizon: int) -> torch.Tensor:
        """Quantiles cannot cross by construction: the median and positive (softplus) gaps
        outwards from it, summed cumulatively."""
        raw = raw.view(*raw.shape[:-1], horizon, len(self.quantiles))
        m = self.median_index
        median = raw[..., m : m + 1]
        above = median + torch.cumsum(nn.functional.softplus(raw[..., m + 1 :]), dim=-1)
        gaps_below = nn.functional.softplus(raw[..., :m].flip(-1))
        below = median - torch.cumsum(gaps_below, dim=-1).flip(-1)
        return torch.cat([below, median, above], dim=-1)

    def point(self, output: torch.Tensor) -> torch.Tensor:
        return output[..., self.median_index]

    def quantile_values(self, output: torch.Tensor) -> Any:
        return output.double().numpy()

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return pinball_loss(output, target, self.levels)


class StudentTHead(Head):
    """Location, scale and degrees of freedom per day, trained by negative log-likelihood."""

    name = "student_t"
    loss_name = "negative log-likelihood"
    params_per_day = 3

    def initial_bias(self) -> list[float] | None:
        """Location 0, scale 1 (targets have unit variance) and 5 degrees of freedom
        (2 + softplus(raw)), a typical tail for daily returns."""
        return [0.0, _inverse_softplus(1.0), _inverse_softplus(3.0)]

    def transform(self, raw: torch.Tensor, horizon: int) -> torch.Tensor:
        raw = raw.view(*raw.shape[:-1], horizon, 3)
        scale = nn.functional.softplus(raw[..., 1:2]) + 1e-4
        df = 2.0 + nn.functional.softplus(raw[..., 2:3])
        return torch.cat([raw[..., :1], scale, df], dim=-1)

    def point(self, output: torch.Tensor) -> torch.Tensor:
        return output[..., 0]

    def quantile_values(self, output: torch.Tensor) -> Any:
        from scipy import stats

        values = output.double().numpy()
        loc, scale, df = values[..., :1], values[..., 1:2], values[..., 2:3]
        return loc + scale * stats.t.ppf(np.asarray(self.quantiles), df)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = torch.distributions.StudentT(output[..., 2], output[..., 0], output[..., 1])
        return -t.log_prob(target).mean()
