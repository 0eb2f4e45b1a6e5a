"""Training parameters, declared once, as one pydantic model free of torch (the CLI reads
them to build its flags without paying torch's import).

Each field of :class:`TrainParams` is the whole declaration of one parameter: its type and
default, and (as ``Annotated`` metadata, a :class:`ParamSpec`) what it means, its range or
choices and its group. The CLI's flags and help, the API's request fields, notebook 03's
parameter cell and table, the Makefile's variables (``scripts/train_param_vars.py``) and
``evaluate``'s choices are all made from it: :data:`PARAMETERS` is read off the fields.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stock_lstm.errors import InvalidParameterError
from stock_lstm.models.networks import HEAD_CLASSES, NETWORK_CLASSES

#: Forecast horizon (trading days) of a direct head, and the longest forecast served.
MAX_HORIZON = 30


@dataclass(frozen=True, eq=False)
class ParamSpec:
    """What one training parameter means and accepts (its field's metadata)."""

    help: str
    bounds: tuple[float, float] | None = None
    #: The names it accepts; a registry (``NETWORK_CLASSES``) is read each time, so a line
    #: added there is a choice everywhere.
    choices: Collection[str] = ()
    #: ``network`` for the network and its architecture (a parameter a network's constructor
    #: names), ``data`` for what it is shown and asked, ``training`` for the loop; notebook
    #: 03's parameter table is sorted by it.
    group: str = "training"


class TrainParams(BaseModel):
    """Hyperparameters of one training run (defaults follow the original design), checked
    on construction (``replace`` included), so a ``TrainParams`` that exists is valid and is
    never checked again down the call chain. A bad value is one
    :class:`InvalidParameterError` naming the parameter, the value and what it accepts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: Annotated[
        int, ParamSpec("maximum training epochs; early stopping usually ends sooner", (1, 1000))
    ] = 100
    patience: Annotated[
        int,
        ParamSpec(
            "epochs without a better validation loss before stopping; 0 never stops early",
            (0, 1000),
        ),
    ] = 10
    sequence_length: Annotated[
        int, ParamSpec("trading days the network sees per forecast", (2, 1000), group="data")
    ] = 60
    hidden_size: Annotated[
        int, ParamSpec("units per recurrent layer", (1, 1024), group="network")
    ] = 64
    num_layers: Annotated[int, ParamSpec("stacked recurrent layers", (1, 8), group="network")] = 2
    dropout: Annotated[
        float, ParamSpec("dropout between recurrent layers", (0.0, 0.9), group="network")
    ] = 0.2
    learning_rate: Annotated[float, ParamSpec("Adam learning rate", (1e-6, 1.0))] = 0.001
    batch_size: Annotated[
        int, ParamSpec("training origins per gradient step (at least one chunk)", (1, 8192))
    ] = 32
    seed: Annotated[
        int, ParamSpec("random seed; same seed and data, same model", (0, 2**32 - 1))
    ] = 42
    target: Annotated[
        str,
        ParamSpec(
            "what the network predicts: log_return (scaled returns, an output of zero is "
            "exactly persistence) or price (min-max scaled levels, the original design)",
            choices=("log_return", "price"),
            group="data",
        ),
    ] = "log_return"
    strategy: Annotated[
        str,
        ParamSpec(
            "direct (one head outputs every horizon day) or recursive (one step, fed back as "
            "the next input: the original design)",
            choices=("direct", "recursive"),
            group="data",
        ),
    ] = "direct"
    horizon: Annotated[
        int,
        ParamSpec(
            "trading days a direct head forecasts in one pass", (1, MAX_HORIZON), group="data"
        ),
    ] = MAX_HORIZON
    #: OHLCV inputs and a Student-t head: at h=1 their intervals scored best of every
    #: forecaster over 500 walk-forward origins of 20 tickers (the Student-t head below the
    #: quantile head in every seed), with the same point accuracy as the close-only point
    #: model (docs/evaluation.md).
    inputs: Annotated[
        str,
        ParamSpec(
            "what each day shows the network: ohlcv (return, high/low range, overnight gap, "
            "volume against its 20-day mean), ohlcv_market (the same plus the market ticker's "
            "return and range that day) or close (its log-return alone)",
            choices=("ohlcv", "close", "ohlcv_market"),
            group="data",
        ),
    ] = "ohlcv"
    output: Annotated[
        str,
        ParamSpec(
            "student_t (location, scale and degrees of freedom per day, negative "
            "log-likelihood), quantiles (nine non-crossing quantiles per day, pinball loss) or "
            "point (one value per day, MSE); the median is the point forecast",
            choices=HEAD_CLASSES,
            group="data",
        ),
    ] = "student_t"
    #: Origins trained per pass: one chunk of ``chunk_length`` consecutive origins (the first
    #: one's window plus the days after it) costs about two steps per origin instead of
    #: ``sequence_length``; 0 trains window by window, as the tutorials do. Same scores over
    #: 500 walk-forward origins of 20 tickers, several times cheaper (docs/evaluation.md,
    #: docs/benchmarks.md).
    chunk_length: Annotated[
        int,
        ParamSpec(
            "origins trained per recurrent pass; 0 trains window by window (several times "
            "slower, same scores)",
            (0, 1000),
        ),
    ] = 60
    network: Annotated[
        str,
        ParamSpec(
            "the network's backbone: lstm (the original design), gru (three gates to the "
            "LSTM's four), or any registered in models.networks",
            choices=NETWORK_CLASSES,
            group="network",
        ),
    ] = "lstm"
    #: The network's own constructor arguments that no parameter above names (a TCN's
    #: ``kernel_size``): recorded only when given, so other runs' parameters are unchanged.
    network_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _check_values(cls, values: Any) -> Any:
        """Every given value has the right type and lies in its range (or is one of its
        choices), before pydantic converts anything (``"5"`` is not 5, ``True`` not 1)."""
        if not isinstance(values, Mapping):
            return values
        unknown = sorted(str(name) for name in values if name not in cls.model_fields)
        if unknown:
            raise InvalidParameterError(
                f"unknown training parameter(s) {', '.join(unknown)}: known are "
                f"{', '.join(cls.model_fields)}"
            )
        for name, value in values.items():
            if name in PARAMETERS:
                _check_value(name, value)
        options = values.get("network_options", {})
        if not isinstance(options, Mapping):
            raise InvalidParameterError(
                f"network_options must be a mapping of option names to values, got {options!r}"
            )
        return values

    @model_validator(mode="after")
    def _check_combination(self) -> TrainParams:
        if self.output != "point" and self.strategy != "direct":
            raise InvalidParameterError(
                f"output {self.output!r} needs strategy 'direct' (a recursive model cannot feed "
                "a distribution back as its input): set output to 'point' for a recursive model"
            )
        if self.inputs != "close" and self.target != "log_return":
            raise InvalidParameterError(
                f"inputs {self.inputs!r} needs target 'log_return': set inputs to 'close' for "
                "the price target"
            )
        self._check_network_options()
        return self

    def _check_network_options(self) -> None:
        """Options the network's constructor takes and no parameter names (the class is
        imported only when some are given)."""
        if not self.network_options:
            return
        from stock_lstm.models.networks import network_class

        known = [name for name in network_class(self.network).options() if name not in PARAMETERS]
        unknown = sorted(str(name) for name in self.network_options if name not in known)
        if unknown:
            raise InvalidParameterError(
                f"the {self.network} network has no option {', '.join(unknown)}: its own "
                f"options are {', '.join(known) or 'none'}"
            )

    @property
    def quantile_levels(self) -> tuple[float, ...]:
        """The head's quantile levels (empty for a point head)."""
        from stock_lstm.models.online_calibration import QUANTILE_LEVELS

        return QUANTILE_LEVELS if self.output != "point" else ()

    @property
    def training_horizon(self) -> int:
        """Days each training target holds: ``horizon`` for a direct head, 1 for recursive."""
        return self.horizon if self.strategy == "direct" else 1

    def validate(self) -> TrainParams:  # type: ignore[override]
        """``self``: it was checked when it was made (kept for callers that chain it)."""
        return self

    def replace(self, **changes: Any) -> TrainParams:
        """A copy with ``changes``, checked like any new one (pydantic's ``model_copy``
        checks nothing)."""
        return type(self)(**{**dict(self), **changes})

    @property
    def data_options(self) -> dict[str, Any]:
        """What ``data.preprocessing.prepare_data`` takes from these parameters: the windows
        the network sees, what it learns to predict and how many days each target holds."""
        return {
            "sequence_length": self.sequence_length,
            "target": self.target,
            "horizon": self.training_horizon,
            "inputs": self.inputs,
        }

    def architecture(self, options: tuple[str, ...]) -> dict[str, Any]:
        """The constructor arguments of a network taking ``options``: the parameters it
        names, then ``network_options``."""
        return {
            **{name: getattr(self, name) for name in options if name in PARAMETERS},
            **self.network_options,
        }

    @property
    def relative_cost(self) -> float:
        """Compute of a full training (no early stop) in multiples of the default's.

        A chunk of ``c`` origins runs ``sequence_length + c - 1`` time steps (``c = 1``
        window by window: ``chunk_length`` 0), each costing what the network's
        ``step_cost`` says (an LSTM: ``num_layers x hidden_size^2`` multiply-adds, its
        layers one after another): that is the arithmetic. A gradient step of
        ``max(batch_size, c)`` origins runs its time steps one after another whatever its
        width: that is the latency, which small batches and chunks multiply. The cost is the
        larger of the two ratios to the default's, times ``epochs``: a bound on what one
        request can make a worker do (the data's length is fixed by the ticker, not the
        request); ``chunk_length 1, batch_size 1`` costs 30x the default per epoch. Imports
        the network's class (torch): the API, which asks, has it loaded.
        """
        from stock_lstm.models.networks import network_class

        def work(params: TrainParams) -> tuple[float, float]:
            network = network_class(params.network)
            options = network.option_values(params.architecture(network.options()))
            step_work, step_depth = network.step_cost(options)
            chunk = max(1, params.chunk_length)
            steps = (params.sequence_length + chunk - 1) * params.epochs
            arithmetic = steps / chunk * step_work
            latency = steps * step_depth / max(params.batch_size, chunk)
            return arithmetic, latency

        (mine_a, mine_l), (default_a, default_l) = work(self), work(TrainParams())
        return max(mine_a / default_a, mine_l / default_l)

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{name: value}`` for JSON, the registry and reports (floats as ``float``;
        ``network_options`` only when given)."""
        values = dict(self)
        options = values.pop("network_options")
        if options:
            values["network_options"] = dict(options)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainParams:
        """Build from a partial mapping (missing keys keep their defaults); integers given
        for float parameters (``learning_rate=1``) are accepted as floats."""
        return cls(**dict(values))


def _spec_of(name: str) -> ParamSpec | None:
    metadata = TrainParams.model_fields[name].metadata
    return next((item for item in metadata if isinstance(item, ParamSpec)), None)


#: Every training parameter that is one value with a range or choices, by name, in the
#: order of ``TrainParams``' fields: read off the fields, not a second declaration.
PARAMETERS: dict[str, ParamSpec] = {
    name: spec for name in TrainParams.model_fields if (spec := _spec_of(name)) is not None
}
#: Fields of ``TrainParams`` that are not one value with a range or choices, so no flag or
#: request field is made from them: a network's own options, given by name.
STRUCTURED_PARAMETERS = tuple(name for name in TrainParams.model_fields if name not in PARAMETERS)

#: Inclusive ranges of the numeric parameters; the CLI and the API validate against these.
PARAM_RANGES: dict[str, tuple[float, float]] = {
    name: spec.bounds for name, spec in PARAMETERS.items() if spec.bounds is not None
}


class _Choices(Mapping[str, tuple[str, ...]]):
    """Each named parameter's choices, read from its spec (and so its registry) on access."""

    def __getitem__(self, name: str) -> tuple[str, ...]:
        spec = PARAMETERS[name]
        if not spec.choices:
            raise KeyError(name)
        return tuple(spec.choices)

    def __iter__(self) -> Iterator[str]:
        return (name for name, spec in PARAMETERS.items() if spec.choices)

    def __len__(self) -> int:
        return sum(1 for _ in self)


#: Parameters that take one of a few names (the default first).
PARAM_CHOICES: Mapping[str, tuple[str, ...]] = _Choices()


def _check_value(name: str, value: Any) -> None:
    """``value`` is one of the parameter's choices, or a number of its type in its range."""
    if name in PARAM_CHOICES:
        if value not in PARAM_CHOICES[name]:
            raise InvalidParameterError(
                f"{name} must be one of {', '.join(PARAM_CHOICES[name])}, got {value!r}"
            )
        return
    low, high = PARAM_RANGES[name]
    is_float_field = _is_float_field(name)
    kind = "a number" if is_float_field else "a whole number"
    allowed = (int, float) if is_float_field else (int,)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise InvalidParameterError(
            f"{name} must be {kind} between {_show(low)} and {_show(high)}, got {value!r}"
        )
    if not low <= value <= high:  # also rejects NaN
        raise InvalidParameterError(
            f"{name} must be between {_show(low)} and {_show(high)}, got {value!r}"
        )


def parameter_type(name: str) -> type:
    """``int``, ``float`` or ``str``: the type of the parameter's default."""
    return type(getattr(TrainParams(), name))


def parameter_help(name: str) -> str:
    """The parameter's help with what it accepts and its default, as the CLI shows it."""
    spec = PARAMETERS[name]
    default = getattr(TrainParams(), name)
    if spec.choices:
        return f"{spec.help} (one of {', '.join(spec.choices)}; default {default})"
    assert spec.bounds is not None
    low, high = spec.bounds
    return f"{spec.help} ({_show(low)}..{_show(high)}, default {_show(default)})"


#: Order of the groups in notebook 03's parameter table.
GROUPS = ("network", "data", "training")


def parameter_rows(params: TrainParams) -> list[dict[str, str]]:
    """Notebook 03's parameter table, made from :data:`PARAMETERS`: one row per parameter
    with this run's value and the default (as a user types them), its group, what it
    accepts and what it means."""
    defaults = TrainParams()
    rows = []
    for name, spec in sorted(PARAMETERS.items(), key=lambda item: GROUPS.index(item[1].group)):
        if spec.choices:
            accepted = " | ".join(spec.choices)
        else:
            assert spec.bounds is not None
            accepted = f"{_show(spec.bounds[0])}..{_show(spec.bounds[1])}"
        rows.append(
            {
                "parameter": name,
                "group": spec.group,
                "value": _show(getattr(params, name)),
                "default": _show(getattr(defaults, name)),
                "accepts": accepted,
                "meaning": spec.help,
            }
        )
    return rows


def _show(value: float | str) -> str:
    """A value as a user types it: ``4294967295`` rather than ``4.29497e+09``, ``0.001``."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _is_float_field(name: str) -> bool:
    return isinstance(PARAM_RANGES[name][0], float)


def notebook_parameter_lines() -> list[str]:
    """Notebook 03's training-parameter assignments, made from the fields: each default and
    a comment with what it accepts and (wrapped above it) what it means."""
    import textwrap

    defaults = TrainParams()
    lines = []
    for name, spec in PARAMETERS.items():
        accepts = (
            " | ".join(spec.choices)
            if spec.choices
            else f"{_show(spec.bounds[0])}..{_show(spec.bounds[1])}"  # type: ignore[index]
        )
        lines.extend(textwrap.wrap(spec.help, 96, initial_indent="# ", subsequent_indent="# "))
        lines.append(f"{name} = {python_literal(getattr(defaults, name))}  # {accepts}")
    return lines


def python_literal(value: Any) -> str:
    """``value`` as a notebook's formatted source writes it (strings in double quotes)."""
    import json

    return json.dumps(value) if isinstance(value, str) else repr(value)
