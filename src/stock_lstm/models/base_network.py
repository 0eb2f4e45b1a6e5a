"""What every network shares: a backbone read out by one linear layer into a head.

A network subclass says only how a window becomes features (:meth:`NetworkForecaster.encode`,
its backbone); the head (``models.heads``: point, quantiles, Student-t) and its loss are
chosen apart by name. Its constructor's own keyword arguments are its options (Darts'
``_extract_model_creation_params``): training passes those ``TrainParams`` names it has
(``hidden_size``, ...) or ``network_options``, and its ``config()`` records them, so a
network-only option is one constructor argument stored as an attribute of the same name.

Chunked training (``training.train_model``'s ``chunk_length``) needs features at every step
that read no later step: a backbone that gives them sets ``causal = True``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from stock_lstm.errors import InvalidParameterError
from stock_lstm.models.heads import Head


def make_head(name: str, quantiles: tuple[float, ...] = ()) -> Head:
    """A head by name (``models.networks.HEAD_CLASSES``), reading its quantiles at
    ``quantiles``."""
    from stock_lstm.models.networks import head_class

    cls = head_class(name)
    if not (isinstance(cls, type) and issubclass(cls, Head)) or cls.name != name:
        raise TypeError(f"the head registered as {name!r} is not a Head named {name!r}")
    return cls(quantiles)


#: Constructor arguments every network takes; the rest of a subclass's are its options.
SHARED_ARGUMENTS = ("n_features", "horizon", "quantiles", "distribution")


class NetworkForecaster(nn.Module):
    """Maps a window of scaled features (batch, seq_len, n_features) to the next
    ``horizon`` scaled target values: (batch, horizon) for a point head, (batch, horizon, K)
    for a distributional one, both in the encoder's units.

    Subclasses set ``network`` (the name artifacts record) and ``backbone_attribute`` (the
    submodule's name: it prefixes the saved weights), build their backbone *before* calling
    ``super().__init__`` (so weights are drawn backbone first, head second, as they always
    were) and implement :meth:`encode`.
    """

    network: ClassVar[str] = ""
    backbone_attribute: ClassVar[str] = "backbone"
    #: Features at step t read steps <= t only, so one pass forecasts every step of a chunk.
    causal: ClassVar[bool] = False

    def __init__(
        self,
        backbone: nn.Module,
        *,
        features: int,
        n_features: int = 1,
        horizon: int = 1,
        quantiles: tuple[float, ...] | list[float] = (),
        distribution: str = "quantiles",
    ) -> None:
        super().__init__()
        for name, value in (("n_features", n_features), ("horizon", horizon)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}")
        self.n_features = n_features
        self.horizon = horizon
        self.quantiles = tuple(float(q) for q in quantiles)
        #: The head's name when it has quantiles (``quantiles`` or ``student_t``); a head
        #: without quantiles is a point head, whatever this says.
        self.distribution = distribution if self.quantiles else "quantiles"
        head_name = self.distribution if self.quantiles else "point"
        self.head_kind: Head = make_head(head_name, self.quantiles)
        self.add_module(self.backbone_attribute, backbone)
        self.head = nn.Linear(features, horizon * self.head_kind.n_params)
        # Start close to a zero output: for the log_return target that is exactly the
        # persistence forecast, so training departs from the baseline only where it helps.
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        bias = self.head_kind.initial_bias()
        if bias is not None:
            with torch.no_grad():
                self.head.bias.copy_(torch.tensor(bias * self.horizon, dtype=torch.float32))
        if self.quantiles:
            # Saved with the weights since the first quantile head: kept so those load.
            self.register_buffer("levels", torch.tensor(self.quantiles, dtype=torch.float32))

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """The network's own constructor arguments: its architecture."""
        signature = inspect.signature(cls.__init__)
        return tuple(
            name
            for name, parameter in signature.parameters.items()
            if name != "self"
            and name not in SHARED_ARGUMENTS
            and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        )

    @classmethod
    def option_values(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every option's value: ``given``'s, else the constructor's default."""
        signature = inspect.signature(cls.__init__)
        return {name: given.get(name, signature.parameters[name].default) for name in cls.options()}

    @classmethod
    def step_cost(cls, options: Mapping[str, Any]) -> tuple[float, float]:
        """What one time step of one window costs with these options (``option_values``):
        its arithmetic (multiply-adds, up to a constant) and how many operations in it run
        one after another. The API bounds a job by it (``TrainParams.relative_cost``); a
        network that does not say is costed as one layer of its ``features`` width."""
        return 1.0, 1.0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq_len, n_features) -> features (batch, steps, features); the last step's
        features make the forecast."""
        raise NotImplementedError

    @property
    def is_student_t(self) -> bool:
        return self.head_kind.name == "student_t"

    @property
    def loss_name(self) -> str:
        return self.head_kind.loss_name

    @property
    def median_index(self) -> int:
        return self.head_kind.median_index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq_len, n_features) -> the head's output for the window's last day."""
        return self._outputs(self.encode(x)[:, -1, :])

    def forward_steps(self, x: torch.Tensor, first_step: int) -> torch.Tensor:
        """The head's output at every step from ``first_step`` on: (batch, steps, horizon...).

        One pass over a long chunk gives a forecast at each of its later steps, each from the
        features of everything before it in the chunk: how a chunk trains many origins for
        the price of one sequence. Only a ``causal`` backbone can.
        """
        if not self.causal:
            raise NotImplementedError(
                f"the {self.network} network is not causal step by step: train it with "
                "chunk_length 0"
            )
        return self._outputs(self.encode(x)[:, first_step:, :])

    def _outputs(self, features: torch.Tensor) -> torch.Tensor:
        return self.head_kind.transform(self.head(features), self.horizon)

    def point(self, output: torch.Tensor) -> torch.Tensor:
        """The point forecast (batch, horizon) of an output: the median."""
        return self.head_kind.point(output)

    def quantile_values(self, output: torch.Tensor) -> Any:
        """Quantiles (batch, horizon, Q) at ``self.quantiles`` as a float64 numpy array."""
        return self.head_kind.quantile_values(output)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.head_kind.loss(output, target)

    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments as plain Python values: ``type(self)(**config)``
        (``quantiles`` only for a distributional head and ``distribution`` only when it is not
        the quantile head, so a point or quantile LSTM's config is as it always was)."""
        config: dict[str, Any] = {
            "n_features": int(self.n_features),
            **{name: getattr(self, name) for name in self.options()},
            "horizon": int(self.horizon),
        }
        if self.quantiles:
            config["quantiles"] = list(self.quantiles)
            if self.distribution != "quantiles":
                config["distribution"] = self.distribution
        return config
