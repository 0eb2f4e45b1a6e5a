"""Fuzz every route of the API against its own OpenAPI schema: no request, valid or not,
may get a 5xx. Every bad input must be a 4xx whose ``detail`` says what is wrong.

Schemathesis generates the requests (positive and negative data, from the schema at
``/openapi.json``) and sends them in-process to ``create_app`` over a temporary database in
which AAPL has a trained, active model, so predictions run real code. A training started
by the fuzzer is recorded but not run: random hyperparameters (1000 epochs of a 1024-unit
network) would keep the two cores busy for hours, and training is covered elsewhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from api_helpers import fast_training
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis import APIOperation, BaseSchema, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans

from stock_lstm.api import create_app
from stock_lstm.api.training_pool import TrainingTask
from stock_lstm.models.registry import get_active_model
from stock_lstm.workflows import AppContext

#: Examples per operation and kind of data: ~14 operations x 3 kinds stay under a minute.
MAX_EXAMPLES = 15


@pytest.fixture
def api_schema(ctx: AppContext) -> Iterator[BaseSchema]:
    """The schema of an app whose AAPL has an active model; trainings are only recorded."""
    fast_training(ctx, TrainingTask("fixture-job", "AAPL", {}))
    assert get_active_model(ctx.db, "AAPL").is_active
    started: list[TrainingTask] = []

    def record_only(context: AppContext, task: TrainingTask) -> None:
        started.append(task)

    app = create_app(context=ctx, run_training=record_only)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    shutdown_lifespans()  # stop the pool and the app schemathesis started


def check_response(case: Case, seen: Counter[tuple[str, int]]) -> None:
    """No 5xx (schemathesis' own check), and every JSON error says what is wrong."""
    response = case.call_and_validate(checks=[not_a_server_error])
    seen[(case.operation.label, response.status_code)] += 1
    if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
        assert response.json().get("detail"), f"{case.method} {case.formatted_path}: no detail"


def strategies(schema: BaseSchema, operation: APIOperation) -> dict[str, SearchStrategy[Case]]:
    """The schema's own examples (AAPL: real predictions), valid and invalid generated data."""
    found = {
        mode.value: operation.as_strategy(generation_mode=mode)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    }
    examples = schema.get_strategies_from_examples(operation)
    if examples:
        found["examples"] = st.one_of(examples)
    return found


def test_no_request_gets_a_server_error(api_schema: BaseSchema) -> None:
    """Every operation, every kind of data; all failures are reported together.

    (``schema.parametrize()`` with ``schemathesis.pytest.from_fixture`` would be the usual
    form, but schemathesis 4.32 cannot rename pytest 9's test ids, so each operation gets a
    hypothesis test of its own here.)
    """
    failures: list[str] = []
    seen: Counter[tuple[str, int]] = Counter()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12, [op.label for op in operations]
    for operation in operations:
        for kind, strategy in strategies(api_schema, operation).items():

            @given(case=strategy)
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: Case) -> None:
                check_response(case, seen)

            try:
                fuzz()
            except Unsatisfiable:
                continue  # nothing invalid can be sent (e.g. a route without parameters)
            except Exception as exc:
                failures.append(f"{operation.label} ({kind}): {exc}")
    assert not failures, "\n\n".join(failures)
    # The fuzz reached real code, not only the validation layer.
    statuses = {status for _label, status in seen}
    assert {200, 202, 404, 422} <= statuses, sorted(seen.items())
    for served in ("POST /api/v1/predict", "GET /api/v1/models/{ticker}/active"):
        assert seen[(served, 200)] > 0, sorted(seen.items())
