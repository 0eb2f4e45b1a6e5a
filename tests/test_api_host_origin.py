"""A token-less (loopback) server answers only its own Host and refuses state changes from a
foreign Origin; bodies must be JSON; the Docker image needs a token (issue 14, item 9).

Reproduced on main: a page on another site sent ``POST /api/v1/models/{id}/activate`` with
``Content-Type: text/plain`` (no CORS preflight) and switched the active model; with DNS
rebinding the page's own host name resolves to 127.0.0.1 and every route is reachable.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import fast_training
from fastapi.testclient import TestClient

from stock_lstm.api import create_app
from stock_lstm.api.training_pool import TrainingTask
from stock_lstm.config import Settings
from stock_lstm.models.registry import activate_version, get_active_model, list_models
from stock_lstm.workflows import AppContext

ROOT = Path(__file__).resolve().parents[1]
LOCAL = "http://127.0.0.1:8000"


def _two_versions(ctx: AppContext) -> tuple[str, str]:
    """Train AAPL twice and activate the newer one. Returns (older, active) version ids."""
    fast_training(ctx, TrainingTask("job-a", "AAPL", {}))
    ctx.clock.advance(seconds=5)  # type: ignore[attr-defined]
    fast_training(ctx, TrainingTask("job-b", "AAPL", {}))
    newer, older = (record.version_id for record in list_models(ctx.db, "AAPL")[:2])
    activate_version(ctx.db, newer)
    return older, newer


@pytest.fixture
def local_client(ctx: AppContext) -> Iterator[TestClient]:
    """A client that talks to the server as http://127.0.0.1:8000 (the default bind)."""
    app = create_app(context=ctx, run_training=fast_training)
    with TestClient(app, base_url=LOCAL) as client:
        yield client


def test_cross_site_text_plain_activation_is_refused(
    local_client: TestClient, ctx: AppContext
) -> None:
    older, active = _two_versions(ctx)
    response = local_client.post(
        f"/api/v1/models/{older}/activate",
        content="x",
        headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
    )
    assert response.status_code == 403, response.text
    assert "Origin" in response.json()["detail"]
    assert get_active_model(ctx.db, "AAPL").version_id == active


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "http://localhost:3000", "http://127.0.0.1:8001"]
)
def test_state_changes_from_a_foreign_origin_are_403(
    local_client: TestClient, ctx: AppContext, origin: str
) -> None:
    older, active = _two_versions(ctx)
    response = local_client.post(f"/api/v1/models/{older}/activate", headers={"Origin": origin})
    assert response.status_code == 403, response.text
    deleted = local_client.delete("/api/v1/cache/AAPL", headers={"Origin": origin})
    assert deleted.status_code == 403
    assert get_active_model(ctx.db, "AAPL").version_id == active


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.nip.io:8000"])
def test_a_foreign_host_is_refused_on_every_route(local_client: TestClient, host: str) -> None:
    """DNS rebinding: the attacker's name points at 127.0.0.1, the Host header keeps the name."""
    for method, path in [
        ("GET", "/api/v1/models"),
        ("GET", "/health"),
        ("POST", "/api/v1/predict"),
    ]:
        response = local_client.request(
            method, path, headers={"Host": host}, json={"ticker": "AAPL", "days_ahead": 1}
        )
        assert response.status_code == 400, (method, path, response.text)
        assert "Host" in response.json()["detail"]


def test_a_loopback_host_on_another_port_is_refused(local_client: TestClient) -> None:
    assert local_client.get("/health", headers={"Host": "localhost:9999"}).status_code == 400


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST:8000"]
)
def test_the_servers_own_host_and_origin_are_served(
    local_client: TestClient, ctx: AppContext, host: str
) -> None:
    older, _active = _two_versions(ctx)
    assert local_client.get("/health", headers={"Host": host}).status_code == 200
    response = local_client.post(
        f"/api/v1/models/{older}/activate", headers={"Host": host, "Origin": f"http://{host}"}
    )
    assert response.status_code == 200, response.text
    assert get_active_model(ctx.db, "AAPL").version_id == older


def test_requests_without_an_origin_are_served(local_client: TestClient, ctx: AppContext) -> None:
    """curl, scripts and the CLI send no Origin: they are not a browser page."""
    older, _active = _two_versions(ctx)
    assert local_client.post(f"/api/v1/models/{older}/activate").status_code == 200


def test_configured_allowed_hosts_are_served(settings: Settings, ctx: AppContext) -> None:
    ctx.settings.allowed_hosts = ("stock.internal", "other.internal:8080")
    app = create_app(context=ctx, run_training=fast_training)
    with TestClient(app, base_url=LOCAL) as client:
        assert client.get("/health", headers={"Host": "stock.internal:1234"}).status_code == 200
        assert client.get("/health", headers={"Host": "other.internal:8080"}).status_code == 200
        assert client.get("/health", headers={"Host": "other.internal:9"}).status_code == 400


def test_with_a_token_the_host_and_origin_checks_still_apply(ctx: AppContext) -> None:
    """A token protects state; the Host check protects reads against DNS rebinding (a page
    whose own name resolves to the server would read every GET): both apply. A proxy's name
    is served once it is listed in STOCK_LSTM_ALLOWED_HOSTS."""
    ctx.settings.api_token = "secret"
    older, _active = _two_versions(ctx)
    app = create_app(context=ctx, run_training=fast_training)
    rebound = {"Host": "evil.example"}
    with TestClient(app, base_url=LOCAL) as client:
        assert client.get("/api/v1/models", headers=rebound).status_code == 400
        assert client.get(f"/api/v1/reports/{older}", headers=rebound).status_code == 400
    ctx.settings.allowed_hosts = ("api.example.org",)
    app = create_app(context=ctx, run_training=fast_training)
    with TestClient(app, base_url=LOCAL) as client:
        proxy = {"Host": "api.example.org"}
        assert client.get("/health", headers=proxy).status_code == 200
        foreign = client.post(
            f"/api/v1/models/{older}/activate",
            headers={**proxy, "Origin": "https://evil.example", "Authorization": "Bearer secret"},
        )
        assert foreign.status_code == 403
        tokenless = client.post(f"/api/v1/models/{older}/activate", headers=proxy)
        assert tokenless.status_code == 401


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_non_json_bodies_are_415_and_write_nothing(
    local_client: TestClient, ctx: AppContext, content_type: str
) -> None:
    response = local_client.post(
        "/api/v1/training/start",
        content=json.dumps({"ticker": "AAPL"}),
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["detail"]
    assert local_client.get("/api/v1/training/jobs").json()["jobs"] == []


# --- the Docker image -----------------------------------------------------------------------


def _dockerfile_command() -> list[str]:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    match = re.search(r"^CMD (\[.*\])\s*$", text, re.MULTILINE)
    assert match, "the Dockerfile has no exec-form CMD"
    return json.loads(match.group(1))


def test_the_docker_image_never_starts_without_a_token() -> None:
    command = _dockerfile_command()
    assert "--insecure" not in " ".join(command), command
    assert command[:2] == ["sh", "-c"], command
    # Run the image's command here, with stock-lstm from this venv and no token: it must
    # refuse at once, in one line that names the variable.
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCK_LSTM_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "STOCK_LSTM_API_TOKEN" in lines[0], done.stderr
    assert done.stdout == ""


def test_docker_compose_requires_a_token() -> None:
    compose = (ROOT / "docker" / "docker-compose.yml").read_text()
    assert "STOCK_LSTM_API_TOKEN: ${STOCK_LSTM_API_TOKEN:?" in compose


def test_allowed_hosts_are_a_comma_separated_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCK_LSTM_ALLOWED_HOSTS", "Stock.Internal, other.internal:8080")
    assert Settings().allowed_hosts == ("stock.internal", "other.internal:8080")
    for hosts in ((), ("a.example", "b.example:1")):  # as a worker's kernel receives them
        monkeypatch.setenv("STOCK_LSTM_ALLOWED_HOSTS", str(list(hosts)))
        assert Settings().allowed_hosts == hosts
    monkeypatch.setenv("STOCK_LSTM_ALLOWED_HOSTS", "http://evil/")
    with pytest.raises(ValueError, match="allowed_hosts"):
        Settings()
