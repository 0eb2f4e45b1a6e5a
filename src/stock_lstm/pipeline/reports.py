"""Rendering executed notebooks to HTML and the ``reports/index.html`` list of runs."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

from stock_lstm.evaluation.verdicts import point_verdict
from stock_lstm.models.records import TrainingMetrics
from stock_lstm.pipeline.summaries import lead_with_summary

RUN_MANIFEST = "run.json"
#: nbconvert templates shipped with the package (``offline_lab``: no script from a CDN).
TEMPLATES_DIR = Path(__file__).parent / "templates"
#: What a report may load: its own inline styles and embedded (data:) figures, nothing else.
#: Reports need no script at all (the "show the code" switch is a CSS checkbox), so any
#: script that data smuggles into one (an ``<img onerror=...>`` column name) is blocked.
#: Sent as a header by the API and written into every report's <head> for reading from disk.
REPORT_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
    "base-uri 'none'; form-action 'none'"
)


def render_html(notebook_path: Path) -> Path:
    """Render an executed notebook to a self-contained HTML file beside it.

    Plots are embedded (base64 PNG); cells tagged ``summary`` (the notebook's answer, its
    last cell) come right after the title; prompts are hidden for a clean reading view; error
    outputs stay visible so a failed run shows the failing cell. Nothing is loaded from the
    network (see ``templates/offline_lab``): reports open on a machine without one.
    """
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(notebook_path, as_version=4)
    describe_figures(notebook)
    hide_machine_paths(notebook, notebook_path)
    stop_at_failure(notebook)
    how_to_last(notebook)
    lead_with_summary(notebook)  # the answer first (pipeline.summaries)
    exporter = HTMLExporter(
        template_name="offline_lab", extra_template_basedirs=[str(TEMPLATES_DIR)]
    )
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _resources = exporter.from_notebook_node(
        notebook, resources={"metadata": {"name": notebook_path.stem}, "report_csp": REPORT_CSP}
    )
    html_path = notebook_path.with_suffix(".html")
    tmp = html_path.with_suffix(".html.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, html_path)
    return html_path


#: Cells tagged so hold how to run a notebook: first in JupyterLab, last in a report.
HOW_TO_TAG = "how-to"


def how_to_last(notebook: Any) -> None:
    """Move the how-to cells to the end of a report: its reader came for the answer, and
    the commands that produced it are reference (in JupyterLab they stay on top)."""
    tagged = [c for c in notebook.cells if HOW_TO_TAG in c.get("metadata", {}).get("tags", [])]
    if tagged:
        notebook.cells = [c for c in notebook.cells if c not in tagged] + tagged


def stop_at_failure(notebook: Any) -> None:
    """A failed run's report ends at the failing cell, and says so first.

    Why: the cells after a failure never ran, so their section prose stood above nothing
    (a reader scrolled past headings promising plots that were not there). Now the title is
    followed by one sentence naming the error, then the cells up to the failing one.
    """
    import nbformat

    for position, cell in enumerate(notebook.cells):
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if not errors:
            continue
        error = errors[0]
        message = f"{error.get('ename', 'Error')}: {error.get('evalue', '')}".strip(": ")
        shown = message[:300].replace("`", "'")
        note = nbformat.v4.new_markdown_cell(
            "**The run stopped** at the last cell of this report, with "
            f"`{shown}`. The cells after it did not run; fix the "
            "cause and run again (`stock-lstm reports --prune` clears failed runs)."
        )
        note.metadata["tags"] = ["summary"]
        kept = [
            c for c in notebook.cells[: position + 1] if "summary" not in c.metadata.get("tags", [])
        ]
        notebook.cells = [*kept, note]
        return


def hide_machine_paths(notebook: Any, notebook_path: Path) -> None:
    """Show the runner's injected parameters (``report_path``, ``output_dir``) relative to
    the project: a report shared with a colleague need not reveal the machine's folders."""
    from stock_lstm.pipeline.notebook import find_project_root

    root = find_project_root(notebook_path.parent)
    if root is None:
        return
    prefix = str(root) + os.sep
    for cell in notebook.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = cell.source.replace(prefix, "")


def describe_figures(notebook: Any) -> None:
    """Give every figure an alt text: the heading of the section it appears in (screen
    readers, and nbconvert no longer warns about images without one)."""
    heading = "Figure"
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            titles = [line.lstrip("#").strip() for line in cell.source.splitlines()]
            marked = [
                t
                for line, t in zip(cell.source.splitlines(), titles, strict=True)
                if line.startswith("#") and t
            ]
            if marked:
                heading = marked[-1]
            continue
        for output in cell.get("outputs", []):
            if "image/png" in output.get("data", {}):
                metadata = output.setdefault("metadata", {})
                metadata.setdefault("image/png", {})["alt"] = f"Figure: {heading}"


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> Path:
    path = run_dir / RUN_MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_manifests(reports_dir: Path) -> list[dict[str, Any]]:
    """Every run's manifest under ``reports_dir``, newest first (unreadable ones skipped)."""
    manifests = []
    for path in reports_dir.glob(f"*/*/{RUN_MANIFEST}"):
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        manifest["_dir"] = path.parent
        manifests.append(manifest)
    return sorted(manifests, key=lambda m: str(m.get("started_at", "")), reverse=True)


#: A run folder's name: ``<YYYYmmdd_HHMMSS>_<hex>`` (``-attemptN`` for a retried task).
RUN_DIR_NAME = re.compile(r"^\d{8}_\d{6}_[0-9a-f]{6}(-attempt\d+)?$")
#: A run folder without a manifest is left alone this long: its run may be starting.
ORPHAN_AGE_SECONDS = 3600


def prunable_runs(
    reports_dir: Path, protected: set[Path], *, now: float | None = None
) -> list[Path]:
    """Run folders ``stock-lstm reports --prune`` deletes: failed runs and, an hour after
    they were last touched, run folders without a manifest (a killed runner's leftovers).
    Never a folder in ``protected`` (those holding a registered model's report), never a
    running or successful run, never anything not named like a run (backtest folders)."""
    now = time.time() if now is None else now
    keep = {path.resolve() for path in protected}
    found = []
    for folder in sorted(reports_dir.glob("*/*")):
        if not folder.is_dir() or not RUN_DIR_NAME.match(folder.name):
            continue
        if folder.resolve() in keep:
            continue
        manifest_path = folder / RUN_MANIFEST
        if manifest_path.exists():
            try:
                status = json.loads(manifest_path.read_text(encoding="utf-8")).get("status")
            except (OSError, ValueError):
                continue
            if status == "failed":
                found.append(folder)
        elif now - folder.stat().st_mtime > ORPHAN_AGE_SECONDS:
            found.append(folder)
    return found


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "–"


def _metrics_cells(metrics: dict[str, Any] | None, backtest: dict[str, Any] | None = None) -> str:
    """Cells for a run's model (its test slice, from the manifest's metrics in their JSON
    form) or, for a backtest run, its h=1 scores."""
    recorded = TrainingMetrics.from_json(metrics) if metrics else None
    first = recorded.next_day if recorded else None
    gate = recorded.gate if recorded else None
    mae = base = coverage = p_value = None
    if first is not None:
        mae, base = first.model.get("mae"), first.persistence.get("mae")
        p_value = first.dm_p_value
        online = recorded.intervals_h1.get("model") if recorded else None
        coverage = online.coverage if online else None
    elif backtest and backtest.get("horizons"):
        # A backtest's summary.json (a plain document, not a training record).
        row = backtest["horizons"][0]
        mae, base = (row.get("model") or {}).get("mae"), (row.get("persistence") or {}).get("mae")
        p_value = row.get("dm_p_value")
        coverage = ((backtest.get("probabilistic") or {}).get("model") or [{}])[0]
        coverage = (coverage.get("0.9") or {}).get("coverage")
    if mae is None:
        return "<td>–</td>" * 5
    ratio = mae / base if base else None
    # The word and colour come from the Diebold-Mariano test, never from the ratio alone.
    tested = point_verdict(ratio, p_value)
    return (
        f"<td>{_fmt(mae)}</td><td>{_fmt(base)}</td>"
        f"<td class='{tested.css}' data-value='{_fmt(ratio, 6)}' "
        "title='Diebold-Mariano test of the two errors'>"
        f"{_fmt(ratio, 3)}<br><small>{html.escape(tested.short())}</small></td>"
        f"<td>{_fmt(coverage, 3)}</td>"
        f"<td>{html.escape(gate.status if gate else '–')}"
        f"{f'<br><small>{html.escape(gate.reason)}</small>' if gate and gate.reason else ''}"
        "</td>"
    )


def _active_cell(version_id: Any, active: set[str] | None) -> str:
    if not version_id or active is None:
        return "–"
    return "<b>yes</b>" if version_id in active else "no"


def _backtest_summary(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "summary.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    except (OSError, ValueError):
        return None


#: The index's only script: sort by a column, filter rows, and tick runs to get the
#: ``make compare`` command (a page opened from disk cannot run it itself). Allowed by
#: its hash in the index's policy, so nothing else (no inline handler, no injected script) runs.
INDEX_SCRIPT = """
(() => {
  const table = document.getElementById("runs");
  const rows = () => Array.from(table.tBodies[0].rows);
  const shown = document.getElementById("shown");
  const count = () => { shown.textContent = rows().filter(r => !r.hidden).length; };
  document.getElementById("filter").addEventListener("input", event => {
    const words = event.target.value.toLowerCase().split(/\\s+/).filter(Boolean);
    for (const row of rows()) {
      const text = row.textContent.toLowerCase();
      row.hidden = !words.every(word => text.includes(word));
    }
    count();
  });
  const key = (row, column) => {
    const cell = row.cells[column];
    const value = cell.dataset.value ?? cell.textContent.trim();
    const number = Number(value);
    return value !== "" && Number.isFinite(number) ? number : value;
  };
  for (const th of table.tHead.querySelectorAll("th[data-sort]")) {
    th.tabIndex = 0;
    const sort = () => {
      const up = th.getAttribute("aria-sort") !== "ascending";
      for (const other of table.tHead.querySelectorAll("th")) other.removeAttribute("aria-sort");
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      const column = th.cellIndex;
      const sorted = rows().sort((a, b) => {
        const x = key(a, column), y = key(b, column);
        if (x === "–" || y === "–") return (x === "–") - (y === "–");
        const order = typeof x === "number" && typeof y === "number"
          ? x - y : String(x).localeCompare(String(y));
        return up ? order : -order;
      });
      table.tBodies[0].append(...sorted);
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", event => { if (event.key === "Enter") sort(); });
  }
  const picked = [];
  const bar = document.getElementById("compare");
  table.addEventListener("change", event => {
    const box = event.target;
    if (box.type !== "checkbox") return;
    const at = picked.indexOf(box.value);
    if (box.checked && at < 0) picked.push(box.value);
    if (!box.checked && at >= 0) picked.splice(at, 1);
    bar.hidden = picked.length < 2;
    document.getElementById("command").textContent =
      'make compare RUNS="' + picked.join(" ") + '"';
    document.getElementById("page").href = "compare/" + picked.join("__") + ".html";
  });
  document.getElementById("copy").addEventListener("click", () => {
    navigator.clipboard?.writeText(document.getElementById("command").textContent);
  });
  count();
})();
"""
INDEX_CSP = (
    REPORT_CSP
    + "; script-src 'sha256-"
    + base64.b64encode(hashlib.sha256(INDEX_SCRIPT.encode()).digest()).decode()
    + "'"
)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>stock-lstm runs</title>
<meta http-equiv="Content-Security-Policy" content="{csp}">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .4rem .5rem; text-align: left; }}
table {{ font-size: .95rem; }}
th {{ background: #f4f4f4; }} td.better {{ color: #1a7f37; }} td.worse {{ color: #b35900; }}
td.same {{ color: #555; }}
th[data-sort] {{ cursor: pointer; }} th[data-sort]::after {{ content: " ↕"; color: #999; }}
th[aria-sort=ascending]::after {{ content: " ↑"; color: #222; }}
th[aria-sort=descending]::after {{ content: " ↓"; color: #222; }}
.failed {{ color: #c62828; font-weight: bold; }} .ok {{ color: #1a7f37; }}
td.when {{ white-space: nowrap; }} small {{ color: #555; font-weight: normal; }}
.tools {{ display: flex; gap: 1.5rem; align-items: center; margin: 1rem 0; flex-wrap: wrap; }}
#filter {{ padding: .35rem .5rem; width: 22rem; font: inherit; }}
#compare {{ background: #f4f8ff; padding: .5rem .8rem; }}
#compare code {{ background: #fff; padding: .1rem .3rem; }}
</style></head><body>
<h1>stock-lstm runs</h1>
<p>One row per pipeline run, newest first. Test-set MAE of the model beside the persistence
forecast (tomorrow = today) on the same dates, and their ratio; the word beside it comes from
the Diebold-Mariano test of the two errors: "better" or "worse" only when p &lt; 0.05, else
"no difference". Backtest runs show their next-day scores over every origin. 90% coverage is
the share of closes inside the model's 90% interval (calibrated online; it should be near
0.90). The gate column gives the promotion gate's verdict and reason; active says whether it
is the model that serves the ticker now. A failed run names the stage and the error.</p>
<div class="tools">
<label>Filter <input id="filter" type="search" placeholder="e.g. AAPL failed, KO backtest"></label>
<span><span id="shown">{count}</span> of {count} runs shown · click a column's title to sort</span>
</div>
<p>Tick two or more runs to compare them side by side (the first ticked is the reference).</p>
<div id="compare" class="tools" hidden>
<span>Run <code id="command"></code> <button id="copy" type="button">copy</button>
then open <a id="page" href="#">the comparison</a>.</span></div>
<table id="runs"><thead><tr><th>compare</th><th data-sort>ticker</th>
<th data-sort>run (UTC)</th><th data-sort>status</th><th>stages</th>
<th data-sort>model MAE</th><th data-sort>persistence MAE</th><th data-sort>ratio</th>
<th data-sort>90% coverage</th><th data-sort>gate</th>
<th data-sort>model version</th><th data-sort>active</th>
</tr></thead>
<tbody>
{rows}
</tbody></table>
<script>{script}</script>
</body></html>
"""


def active_version_ids(database_url: str | None) -> set[str] | None:
    """The versions that serve now (None if the registry cannot be read: the index then
    leaves the active column empty rather than failing a finished run)."""
    if not database_url:
        return None
    from stock_lstm.db import Database
    from stock_lstm.errors import StockLSTMError
    from stock_lstm.models import registry

    try:
        db = Database(database_url)
    except StockLSTMError:
        return None
    try:
        return registry.active_version_ids(db)
    except Exception:  # a busy or damaged database must not fail the index
        return None
    finally:
        db.dispose()


def build_index(reports_dir: Path, database_url: str | None = None) -> Path:
    """Rewrite ``reports_dir/index.html`` from the run manifests; with ``database_url`` the
    active column says which runs' models serve now."""
    active = active_version_ids(database_url)
    reports_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for manifest in read_manifests(reports_dir):
        run_dir: Path = manifest["_dir"]
        links = []
        for stage in manifest.get("stages", []):
            html_name = stage.get("html")
            label = html.escape(stage["stage"])
            if stage.get("status") == "failed":
                label += " ✗"
            if html_name:
                href = html.escape(os.path.relpath(run_dir / html_name, reports_dir))
                links.append(f"<a href='{href}'>{label}</a>")
            else:
                links.append(label)
        status = html.escape(str(manifest.get("status", "?")))
        errors = [
            f"{stage['stage']}: {stage['error']}"
            for stage in manifest.get("stages", [])
            if stage.get("status") == "failed" and stage.get("error")
        ]
        reason = f"<br><small>{html.escape(errors[0][:200])}</small>" if errors else ""
        started = str(manifest.get("started_at", ""))[:16].replace("T", " ")
        run_id = html.escape(str(manifest.get("run_id") or run_dir.name))
        rows.append(
            "<tr>"
            f"<td><input type='checkbox' value='{run_id}' aria-label='compare {run_id}'></td>"
            f"<td>{html.escape(str(manifest.get('ticker', '?')))}</td>"
            f"<td class='when'>{html.escape(started)}<br><small>{run_id}</small></td>"
            f"<td class='{status}'>{status}{reason}</td>"
            f"<td>{' · '.join(links)}</td>"
            f"{_metrics_cells(manifest.get('metrics'), _backtest_summary(run_dir))}"
            f"<td>{html.escape(str(manifest.get('version_id') or '–'))}</td>"
            f"<td>{_active_cell(manifest.get('version_id'), active)}</td>"
            "</tr>"
        )
    index = reports_dir / "index.html"
    body = _PAGE.format(
        rows="\n".join(rows) or "<tr><td colspan='12'>no runs yet</td></tr>",
        count=len(rows),
        csp=INDEX_CSP,
        script=INDEX_SCRIPT,
    )
    # A temporary name of its own: workers of a --tickers run rebuild the index at once.
    tmp = index.with_name(f".index.{os.getpid()}.{uuid.uuid4().hex[:8]}.html.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, index)
    return index
