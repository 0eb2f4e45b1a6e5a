"""What a training produces, as typed records: scores per horizon, the promotion gate, the
interval calibration and the training run itself.

Why typed: each is a frozen pydantic model, so a reader names an attribute (a typo fails at
once, and type checkers see it, where a string key into nested dicts breaks silently) and
the API publishes the same types in its schema.

One JSON form is stored in the registry's ``metrics`` column: ``TrainingMetrics.to_json()``.
Its next-day test scores (``mae``, ``rmse``, ``mape``, ``n``, ``rmae``, ``persistence``,
``drift``) are also repeated at the top level, as computed fields, for readers of the flat
form rows had before these records (API clients, old notebooks). ``TrainingMetrics.from_json``
reads every row ever written: rows from before the records held the training run's fields at
the top level, and the oldest ones had no per-horizon rows (the headline becomes horizon 1).

Point metrics are a dict keyed by ``evaluation.metrics.POINT_METRICS``'s names rather than
fields here, so a new metric added there reaches every table without touching this module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    computed_field,
    model_validator,
)

logger = logging.getLogger(__name__)

#: A forecast's point scores by metric name (``mae``, ``rmse``, ``mape``, ...).
Scores = dict[str, float | None]

#: Keys of the training run that rows from before these records held at the top level.
_LEGACY_RUN_KEYS = ("best_epoch", "best_val_loss", "epochs_run", "stopped_early")


class Record(BaseModel):
    """Frozen, and lenient on read: a key this version does not know (from a newer or an
    older writer) is ignored rather than making a registered model unreadable."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class HorizonScores(Record):
    """Test scores of the forecasts ``horizon`` trading days ahead, beside the baselines on
    exactly the same days (see ``evaluation.holdout.horizon_metrics``)."""

    horizon: int = Field(ge=1)
    n: int = Field(0, ge=0, description="Forecasts scored.")
    model: Scores
    baselines: dict[str, Scores] = Field(
        description="Each point baseline's scores on the same days, by its name in "
        "evaluation.baselines.BASELINE_CLASSES; persistence is the one rMAE divides by."
    )
    rmae: float | None = Field(
        None, description="Model MAE / persistence MAE (below 1: a lower error)."
    )
    rmae_ci: tuple[float | None, float | None] = Field(
        (None, None), description="95% band of rMAE from the Diebold-Mariano test."
    )
    directional_accuracy: float | None = None
    directional_ci: tuple[float | None, float | None] = (None, None)
    dm_statistic: float | None = None
    dm_p_value: float | None = Field(None, description="Diebold-Mariano test against persistence.")
    predicted_move_std: float | None = None
    actual_move_std: float | None = None
    coverage: float | None = Field(None, description="Share of closes inside the interval.")
    interval_width: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_named_baselines(cls, values: Any) -> Any:
        """Rows from before ``baselines`` held persistence and drift as fields of their own."""
        if isinstance(values, Mapping) and "baselines" not in values:
            values = dict(values)
            named = {name: values.get(name) for name in ("persistence", "drift")}
            values["baselines"] = {name: scores for name, scores in named.items() if scores}
        return values

    @computed_field  # type: ignore[prop-decorator]
    @property
    def persistence(self) -> Scores:
        """Tomorrow = today, on the same days: the reference of every rMAE."""
        return dict(self.baselines.get("persistence") or {})

    @computed_field  # type: ignore[prop-decorator]
    @property
    def baseline_rmae(self) -> dict[str, float | None]:
        """Each baseline other than persistence: its MAE / persistence MAE."""
        base = self.persistence.get("mae")
        ratios: dict[str, float | None] = {}
        for name, scores in self.baselines.items():
            mae = scores.get("mae")
            if name != "persistence":
                ratios[name] = mae / base if mae is not None and base else None
        return ratios


class ValidationScores(Record):
    """Next-day scores on the validation slice: what the promotion gate reads."""

    n: int | None = None
    mae: float | None = None
    persistence_mae: float | None = None
    rmae_h1: float | None = None


class IntervalScores(Record):
    """One forecaster's interval on the test slice at h=1 (Winkler and CRPS in % of the
    close, lower is better)."""

    coverage: float | None = None
    winkler: float | None = None
    crps: float | None = None


class GateDecision(Record):
    """The promotion gate's verdict (see ``workflows.gate_decision``)."""

    status: Literal["passed", "failed", "forced"]
    reason: str = ""
    threshold: float | None = None
    value: float | None = Field(None, description="Validation rMAE at h=1.")

    @property
    def failed(self) -> bool:
        return self.status == "failed"


class TrainingRun(Record):
    """How the training loop went."""

    best_epoch: int | None = None
    best_val_loss: float | None = None
    epochs_run: int | None = None
    stopped_early: bool | None = None


class CalibrationRecord(Record):
    """The online interval calibration a version carries from its test slice into its
    forecasts: ``models.online_calibration.CalibrationState`` in its JSON form."""

    levels: tuple[float, ...] = Field(description="Interval levels, e.g. 0.5, 0.8, 0.9, 0.95.")
    theta: tuple[tuple[float, ...], ...] = Field(
        description="Per horizon (h=1 first), the band's log-width multiplier at each level."
    )
    through: str = Field(description="ISO date of the last close the calibration has seen.")
    updates: int = Field(0, description="Outcomes that updated it.")
    step: float | None = Field(None, description="The tracker's step size.")


class TrainingMetrics(Record):
    """Everything a registered version's evaluation recorded (the registry's ``metrics``)."""

    horizons: tuple[HorizonScores, ...] = Field(
        default=(), description="Test scores per horizon, h=1 first."
    )
    validation: ValidationScores = Field(default_factory=ValidationScores)
    conformal: dict[str, list[float | None]] = Field(
        default_factory=dict,
        description="Static split-conformal quantiles by level, per horizon (log space).",
    )
    interval_level: float | None = None
    calibration: CalibrationRecord | None = Field(
        None, description="The online interval calibration after the test slice."
    )
    intervals_h1: dict[str, IntervalScores] = Field(
        default_factory=dict, description="By forecaster: model, model_static, garch_t, ewma."
    )
    gate: GateDecision | None = None
    training: TrainingRun = Field(default_factory=TrainingRun)
    served_anchors: tuple[str, ...] = Field(
        default=(),
        description="Per horizon (h=1 first), the anchor the served interval averages with "
        "the model's: the strongest on the test slice (the serving rule, docs/evaluation.md). "
        "Empty: the model's own interval is served (versions from before the rule).",
    )

    @model_validator(mode="before")
    @classmethod
    def _read_legacy_form(cls, values: Any) -> Any:
        """Rows from before these records: the run's fields at the top level, and (oldest)
        only the flat next-day scores, which become horizon 1."""
        if not isinstance(values, Mapping):
            return values
        values = dict(values)
        if "training" not in values:
            run = {key: values[key] for key in _LEGACY_RUN_KEYS if key in values}
            if run:
                values["training"] = run
        if not values.get("horizons") and "mae" in values and "persistence" in values:
            model = {k: v for k, v in values.items() if k in ("mae", "rmse", "mape")}
            values["horizons"] = [
                {
                    "horizon": 1,
                    "n": values.get("n") or 0,
                    "model": model,
                    "persistence": values["persistence"],
                    "drift": values.get("drift") or {},
                    "rmae": values.get("rmae"),
                }
            ]
        if isinstance(values.get("gate"), Mapping) and "status" not in values["gate"]:
            values["gate"] = None  # a gate from before statuses: nothing to show
        return values

    @property
    def next_day(self) -> HorizonScores | None:
        """The test scores at h=1, the headline of every table (None if none were recorded)."""
        return self.horizons[0] if self.horizons else None

    # The flat next-day form, repeated at the top level for readers of the old rows.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def mae(self) -> float | None:
        return self.next_day.model.get("mae") if self.next_day else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rmse(self) -> float | None:
        return self.next_day.model.get("rmse") if self.next_day else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mape(self) -> float | None:
        return self.next_day.model.get("mape") if self.next_day else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def n(self) -> int | None:
        return self.next_day.n if self.next_day else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rmae(self) -> float | None:
        return self.next_day.rmae if self.next_day else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def persistence(self) -> Scores:
        return dict(self.next_day.persistence) if self.next_day else {}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def drift(self) -> Scores:
        return dict(self.next_day.baselines.get("drift") or {}) if self.next_day else {}

    def to_json(self) -> dict[str, Any]:
        """The one JSON form the registry stores and the API returns."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, values: Mapping[str, Any] | None) -> TrainingMetrics:
        """A stored row's metrics, whichever version wrote them.

        A part that does not read (a row edited by hand, a writer's bug) is dropped with a
        warning rather than failing: the version's weights and calibration still serve, and
        a registry listing must not fail on one odd row.
        """
        values = dict(values or {})
        for _attempt in range(len(values) + 1):
            try:
                return cls.model_validate(values)
            except ValidationError as error:
                broken = {str(e["loc"][0]) for e in error.errors() if e["loc"]}
                if not broken & set(values):
                    break
                logger.warning("registry metrics: ignoring unreadable %s", sorted(broken))
                values = {k: v for k, v in values.items() if k not in broken}
        return cls()

    def with_gate(self, gate: GateDecision) -> TrainingMetrics:
        return self.model_copy(update={"gate": gate})

    def with_training(self, run: TrainingRun) -> TrainingMetrics:
        return self.model_copy(update={"training": run})
