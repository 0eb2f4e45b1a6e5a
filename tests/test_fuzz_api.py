"""Fuzz every route of the API against its own OpenAPI schema: no request, valid or not,
may get a 5xx. Every bad input must be a 4xx whose ``detail`` says what is wrong.

Schemathesis generates the requests (positive and negative data, from the schema at
``/openapi.json``) and sends them in-process to ``create_app`` over a temporary database in
which AAPL has a trained, active model, so predictions run real code. A training started
by the fuzzer is recorded but not run: random hyperparameters (1000 epochs of a 1024-unit
network) would keep the two cores busy for hours, and training is covered elsewhere.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

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
from starlette.types import ASGIApp, Receive, Scope, Send

from stock_lstm.api import create_app
from stock_lstm.api.training_pool import TrainingTask
from stock_lstm.models.registry import get_active_model
from stock_lstm.workflows import AppContext

#: Examples per operation and kind of data: ~14 operations x 3 kinds stay under a minute.
MAX_EXAMPLES = 15
#: Hostile values per parameter: NUL bytes (PostgreSQL refuses them in text: a 500 before
#: the ids were checked), other control characters, over-long and oddly shaped text.
HOSTILE_EXAMPLES = 25
#: Path parameters that hold a version or job id, and the shape every real one has.
ID_PARAMETERS = frozenset({"version_id", "job_id"})
ID_SHAPE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")
HOSTILE_TEXT: SearchStrategy[str] = st.one_of(
    st.tuples(st.text(max_size=8), st.text(max_size=8)).map(lambda parts: "\x00".join(parts)),
    st.text(alphabet=st.characters(max_codepoint=0x1F), min_size=1, max_size=4),
    st.integers(min_value=65, max_value=4096).map(lambda n: "A" * n),
    st.text(min_size=1, max_size=70),
    st.sampled_from(["\x00", "a\x00b", "\x7f", "-x", ".x", "a b", "%00", "x" * 10_000]),
)


#: The token of the fuzzed server in its token mode (its requests carry it).
FUZZ_TOKEN = "fuzz-token-Zk3q9vXwLr2mTb8Yc5Hn7Jp4Ds6Fa1"


def _with_token(app: ASGIApp, token: str) -> ASGIApp:
    """``app`` as a client holding ``token`` reaches it: every request carries the header."""

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]
            headers.append((b"authorization", f"Bearer {token}".encode()))
            scope = {**scope, "headers": headers}
        await app(scope, receive, send)

    return call


@pytest.fixture(params=[None, FUZZ_TOKEN], ids=["no-token", "token"])
def api_schema(ctx: AppContext, request: pytest.FixtureRequest) -> Iterator[BaseSchema]:
    """The schema of an app whose AAPL has an active model; trainings are only recorded.
    Twice: a server without a token, and one with a token whose client sends it (every
    route then runs its token check, its redaction rule and its real code)."""
    ctx.settings = ctx.settings.model_copy(update={"api_token": request.param})
    fast_training(ctx, TrainingTask("fixture-job", "AAPL", {}))
    assert get_active_model(ctx.db, "AAPL").is_active
    # Random in-range hyperparameters mostly ask for more than one job may cost (a 422, see
    # test_job_lifecycle); lifted here so the fuzzing reaches the accepted path too.
    ctx.settings = ctx.settings.model_copy(update={"max_job_cost": 1e6})
    started: list[TrainingTask] = []

    def record_only(context: AppContext, task: TrainingTask) -> None:
        started.append(task)

    app = create_app(context=ctx, run_training=record_only)
    served = _with_token(app, request.param) if request.param else app
    yield schemathesis.openapi.from_asgi("/openapi.json", served)
    shutdown_lifespans()  # stop the pool and the app schemathesis started


def check_response(case: Case, seen: Counter[tuple[str, int]]) -> int:
    """No 5xx (schemathesis' own check), and every JSON error says what is wrong; returns
    the status."""
    response = case.call_and_validate(checks=[not_a_server_error])
    seen[(case.operation.label, response.status_code)] += 1
    if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
        assert response.json().get("detail"), f"{case.method} {case.formatted_path}: no detail"
    return response.status_code


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


def _string_query_names(operation: APIOperation) -> list[str]:
    """Query parameters that take text (optional ones are ``anyOf: [string, null]``)."""
    names = []
    for parameter in operation.query:
        schema = parameter.definition.get("schema", {})
        kinds = [schema.get("type")] + [part.get("type") for part in schema.get("anyOf", [])]
        if "string" in kinds:
            names.append(parameter.name)
    return names


def hostile_cases(operation: APIOperation) -> SearchStrategy[Case] | None:
    """Cases with one path parameter or text query parameter set to hostile text; the other
    path parameters keep the schema's example (or AAPL). None: nothing to aim at."""
    examples = {
        p.name: (p.definition.get("examples") or ["AAPL"])[0] for p in operation.path_parameters
    }
    targets = [("path", name) for name in examples]
    targets += [("query", name) for name in _string_query_names(operation)]
    if not targets:
        return None

    def make(target: tuple[str, str], value: str) -> Case:
        location, name = target
        if location == "path":  # sent percent-encoded, as a browser would: the server sees
            # exactly ``value`` (unencoded, the HTTP client would strip or cut it)
            return operation.Case(path_parameters={**examples, name: quote(value, safe="")})
        return operation.Case(path_parameters=examples, query={name: value})

    return st.builds(make, st.sampled_from(targets), HOSTILE_TEXT)


def check_hostile_response(case: Case, seen: Counter[tuple[str, int]]) -> None:
    """A 4xx with a detail; an id that is not id-shaped is refused as such, never looked up."""
    status = check_response(case, seen)
    assert 400 <= status < 500, f"{case.method} {case.formatted_path}: {status}"
    for name in ID_PARAMETERS & set(case.path_parameters or {}):
        value = unquote(str(case.path_parameters[name]))
        if not ID_SHAPE.fullmatch(value) and "/" not in value:  # a "/" is another route
            assert status in (400, 422), f"{name}={value!r:.40} was looked up: {status}"


def test_hostile_ids_and_filters_are_4xx_before_any_query(api_schema: BaseSchema) -> None:
    """NUL bytes, control characters, over-long and badly shaped ids and filters are a 4xx
    with a detail, and a malformed version or job id is a 400/422, not a 404 (a lookup).

    Runs on PostgreSQL too (``make test-postgres``: it uses a database, so it is ``-m db``),
    where a NUL byte that reached a query was a 500.
    """
    failures: list[str] = []
    seen: Counter[tuple[str, int]] = Counter()
    for result in api_schema.get_all_operations():
        operation = result.ok()
        strategy = hostile_cases(operation)
        if strategy is None:
            continue

        @given(case=strategy)
        @settings(
            max_examples=HOSTILE_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Case) -> None:
            check_hostile_response(case, seen)

        try:
            fuzz()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    aimed_at = {label for label, _status in seen}
    for route in ("GET /api/v1/reports/{version_id}", "GET /api/v1/training/status/{job_id}"):
        assert route in aimed_at, sorted(aimed_at)
    assert "POST /api/v1/models/{version_id}/activate" in aimed_at, sorted(aimed_at)


def test_the_fuzzing_is_part_of_make_test_postgres() -> None:
    """``make test-postgres`` runs ``pytest -m db tests``; both fuzz tests must be selected by
    it (they are marked ``db`` because they use a database), so they also run on PostgreSQL."""
    root = Path(__file__).resolve().parents[1]
    script = (root / "scripts" / "test_postgres.py").read_text()
    assert '"-m", "db", "tests"' in script
    collected = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--collect-only",
            "-m",
            "db",
            str(Path(__file__)),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    for name in (
        "test_no_request_gets_a_server_error",
        "test_hostile_ids_and_filters_are_4xx_before_any_query",
    ):
        assert f"::{name}" in collected.stdout, collected.stdout + collected.stderr
