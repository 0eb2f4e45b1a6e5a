"""Data reaches reports as text, never as markup; reports run no script (issue 14, item 11).

Reproduced on main: a price file whose column header was ``<img src=x onerror=...>`` made the
sync report (and the predict report, through the forecast's warnings) run that script: the
source's error names the columns it found, and the notebooks showed it with
``display(Markdown(f"**WARNING: {warning}**"))``.
"""

from __future__ import annotations

import ast
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from api_helpers import fast_training
from fastapi.testclient import TestClient
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from stock_lstm.api import create_app
from stock_lstm.api.training_pool import TrainingTask
from stock_lstm.config import Settings
from stock_lstm.models.registry import get_active_model
from stock_lstm.pipeline.notebook import escape_markdown
from stock_lstm.pipeline.reports import render_html
from stock_lstm.pipeline.runner import run_pipeline
from stock_lstm.workflows import AppContext, sync_ticker

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
HOSTILE_HEADER = "<img src=x onerror=alert(1)>"
#: Markup a warning could carry, and the tags it must not become.
HOSTILE_TEXTS = [
    (HOSTILE_HEADER, "<img"),
    ("<script>alert(1)</script>", "<script"),
    ("**bold**", "<strong>bold"),
    ("[click](javascript:alert(1))", "<a"),
    ("https://evil.example/x", "<a"),
    ("`code`", "<code"),
    ("# heading", "<h1"),
    ("a\n\n<iframe src=x>", "<iframe"),
]


@pytest.mark.parametrize(("text", "tag"), HOSTILE_TEXTS)
def test_escaped_markdown_renders_as_written(text: str, tag: str) -> None:
    """Through nbconvert's own Markdown renderer (the one that makes the HTML report)."""
    rendered = markdown2html_mistune(f"**WARNING: {escape_markdown(text)}**")
    assert rendered.count("<strong>") == 1 and tag not in rendered.replace("<strong>W", "W")
    visible = re.sub(r"<[^>]+>", "", rendered).replace("&lt;", "<").replace("&gt;", ">")
    assert " ".join(text.split()) in visible.replace("&amp;", "&")


def _shown_fields(source: str) -> Iterator[ast.FormattedValue]:
    """The ``{...}`` fields of f-strings that end up in ``Markdown(...)``: inside the call, or
    assigned to a name the call uses (``warning = ... f"..."``)."""
    tree = ast.parse(source)
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Markdown"
    ]
    names = {arg.id for call in calls for arg in ast.walk(call) if isinstance(arg, ast.Name)}
    assigned = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id in names for t in node.targets)
    ]
    for root in [*calls, *assigned]:
        yield from (node for node in ast.walk(root) if isinstance(node, ast.FormattedValue))


def _is_safe(field: ast.FormattedValue) -> bool:
    """Escaped with ``escape_markdown``, or a number by its format spec (``{x:.3f}``)."""
    value = field.value
    if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "escape_markdown":
        return True
    if field.format_spec is None:
        return False
    parts = field.format_spec.values  # type: ignore[attr-defined]
    spec = "".join(str(p.value) for p in parts if isinstance(p, ast.Constant))
    return bool(re.fullmatch(r"[,.\d]*[dfegn%]", spec))


@pytest.mark.parametrize("notebook", sorted(p.name for p in NOTEBOOKS_DIR.glob("0*.ipynb")))
def test_notebooks_escape_every_value_they_show_as_markdown(notebook: str) -> None:
    """A value formatted into Markdown goes through ``escape_markdown`` (numbers formatted
    with a numeric format spec are safe as they are)."""
    unescaped = [
        ast.unparse(field.value)
        for cell in nbformat.read(NOTEBOOKS_DIR / notebook, as_version=4).cells
        if cell.cell_type == "code"
        for field in _shown_fields(cell.source)
        if not _is_safe(field)
    ]
    assert not unescaped, f"{notebook}: shown as Markdown without escape_markdown: {unescaped}"


# --- the real sync report -------------------------------------------------------------------


def _price_folder_copy(tmp_path: Path, price_dir: Path) -> Path:
    """A folder with AAPL's generated prices that the test may rewrite."""
    folder = tmp_path / "hostile-prices"
    folder.mkdir()
    shutil.copy(price_dir / "AAPL.csv", folder / "AAPL.csv")
    return folder


def test_a_hostile_column_name_stays_text_in_the_sync_report(
    settings: Settings, price_dir: Path, tmp_path: Path
) -> None:
    folder = _price_folder_copy(tmp_path, price_dir)
    settings.source = f"csv:{folder}"
    settings.cache_expiry_hours = 1e-9  # the next sync asks the source again
    ctx = AppContext.create(settings)
    try:
        sync_ticker(ctx, "AAPL")  # rows in the cache, so a failing source leaves them stale
    finally:
        ctx.db.dispose()
    lines = (folder / "AAPL.csv").read_text().splitlines()
    lines[0] = lines[0].replace("Close", HOSTILE_HEADER)  # the source now fails, naming it
    (folder / "AAPL.csv").write_text("\n".join(lines) + "\n")

    result = run_pipeline(["sync"], "AAPL", settings, run_id="hostile", progress=False)
    assert result.status == "ok"
    page = (Path(settings.reports_dir) / "AAPL" / "hostile" / "01_sync.html").read_text()
    assert "no Close column" in page  # the warning is shown...
    assert "&lt;img src=x onerror=alert" in page  # ...as text
    assert "<img src=x" not in page and '<img src="x"' not in page


# --- the policy -----------------------------------------------------------------------------


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context=ctx, run_training=fast_training)) as test_client:
        yield test_client


def test_served_reports_carry_a_content_security_policy(
    client: TestClient, ctx: AppContext
) -> None:
    fast_training(ctx, TrainingTask("job-csp", "AAPL", {}))
    version_id = get_active_model(ctx.db, "AAPL").version_id
    response = client.get(f"/api/v1/reports/{version_id}")
    assert response.status_code == 200
    policy = {
        directive.split()[0]: directive.split()[1:]
        for directive in response.headers["content-security-policy"].split(";")
        if directive.strip()
    }
    assert policy["default-src"] == ["'none'"]
    assert "script-src" not in policy  # falls back to 'none': no script at all
    assert policy["img-src"] == ["data:"] and policy["style-src"] == ["'unsafe-inline'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_rendered_reports_declare_the_policy_in_their_head(tmp_path: Path) -> None:
    """Opened from disk there is no header: the policy is in the page itself, before any
    output."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "x",
            outputs=[
                nbformat.v4.new_output(
                    "display_data", data={"text/markdown": f"**{HOSTILE_HEADER}**"}
                )
            ],
        )
    ]
    path = tmp_path / "report.ipynb"
    nbformat.write(notebook, path)
    page = render_html(path).read_text()
    head = page[: page.index("</head>")]
    meta = re.search(r"<meta[^>]*http-equiv=\"Content-Security-Policy\"[^>]*>", head)
    assert meta, head[:500]
    content = re.search(r'content="([^"]+)"', meta.group(0))
    assert content and "default-src 'none'" in content.group(1).replace("&#39;", "'")
    assert page.index("Content-Security-Policy") < page.index("<style")
