"""``reports/index.html``, the list of runs, and one such page per ticker.

Why per-ticker pages: a nightly retrain of hundreds of tickers adds hundreds of runs a night,
and one table of every run stops being readable (and grows by megabytes). The index shows
the newest :data:`INDEX_LATEST_RUNS` runs and a table of tickers; each ticker's page
(``reports/<TICKER>/index.html``) lists all of its runs. Every page has the same sortable,
filterable table with tick-to-compare (one script, allowed by its hash and nothing else).
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from stock_lstm.evaluation.results import BacktestSummary, intervals_at
from stock_lstm.evaluation.verdicts import point_verdict
from stock_lstm.models.records import TrainingMetrics
from stock_lstm.pipeline.reports import REPORT_CSP, read_manifests

#: Runs the top index lists (the per-ticker pages list all of them).
INDEX_LATEST_RUNS = 200
INDEX_NAME = "index.html"


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "–"


def _metrics_cells(metrics: dict[str, Any] | None, backtest: BacktestSummary | None = None) -> str:
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
    elif backtest and backtest.horizons:
        row = backtest.horizons[0]
        mae, base = row.model.get("mae"), row.persistence.get("mae")
        p_value = row.dm_p_value
        online = intervals_at(backtest.probabilistic, 0.9).get("model")
        coverage = online.coverage if online else None
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
        f"{_gate_reason(gate.reason) if gate and gate.reason else ''}"
        "</td>"
    )


def _gate_reason(reason: str) -> str:
    """The gate's rule in the row (``validation rMAE at h=1 is 1.0036 > 1.0``), the whole
    reason on hover: the rest made every failed row a dozen lines tall."""
    rule = reason.split(": ", 1)[0]
    return f"<br><small title='{html.escape(reason)}'>{html.escape(rule)}</small>"


def _active_cell(version_id: Any, active: set[str] | None) -> str:
    if not version_id or active is None:
        return "–"
    return "<b>yes</b>" if version_id in active else "no"


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
    document.getElementById("page").href = table.dataset.compare +
      picked.map(name => name.replace("/", "-")).join("__") + ".html";
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
#compare {{ background: #f4f8ff; padding: .5rem .8rem; }} [hidden] {{ display: none !important; }}
td.status {{ max-width: 16rem; }}
#compare code {{ background: #fff; padding: .1rem .3rem; }}
</style></head><body>
<h1>{title}</h1>
{nav}
<p>One row per pipeline run, newest first. Test-set MAE of the model beside the persistence
forecast (tomorrow = today) on the same dates, and their ratio; the word beside it comes from
the Diebold-Mariano test of the two errors: "better" or "worse" only when p &lt; 0.05, else
"no difference". Backtest runs show their next-day scores over every origin. 90% coverage is
the share of closes inside the model's 90% interval (calibrated online; it should be near
0.90). The gate column gives the promotion gate's verdict and reason; active says whether it
is the model that serves the ticker now. A failed run names the stage and the error.</p>
<div class="tools">
<label>Filter <input id="filter" type="search" placeholder="e.g. AAPL failed, KO backtest"></label>
<span><span id="shown">{count}</span> of {count} runs shown{more} ·
click a column's title to sort</span>
</div>
<p>Tick two or more runs to compare them side by side (the first ticked is the reference).</p>
<div id="compare" class="tools" hidden>
<span>Run <code id="command"></code> <button id="copy" type="button">copy</button>
then open <a id="page" href="#">the comparison</a>.</span></div>
<table id="runs" data-compare="{compare_base}"><thead><tr><th>compare</th><th data-sort>ticker</th>
<th data-sort>run (UTC)</th><th data-sort>status</th><th>stages</th>
<th data-sort>model MAE</th><th data-sort>persistence MAE</th><th data-sort>ratio</th>
<th data-sort>90% coverage</th><th data-sort>gate</th>
<th data-sort>model version</th><th data-sort>active</th>
</tr></thead>
<tbody>
{rows}
</tbody></table>
{tickers}
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


def _run_row(manifest: dict[str, Any], page_dir: Path, active: set[str] | None) -> str:
    """One run's table row, its links relative to the page it is on."""
    run_dir: Path = manifest["_dir"]
    links = []
    for stage in manifest.get("stages", []):
        html_name = stage.get("html")
        label = html.escape(stage["stage"])
        if stage.get("status") == "failed":
            label += " ✗"
        if html_name:
            href = html.escape(os.path.relpath(run_dir / html_name, page_dir))
            links.append(f"<a href='{href}'>{label}</a>")
        else:
            links.append(label)
    status = html.escape(str(manifest.get("status", "?")))
    errors = [
        f"{stage['stage']}: {stage['error']}"
        for stage in manifest.get("stages", [])
        if stage.get("status") == "failed" and stage.get("error")
    ]
    reason = ""
    if errors:  # the first words in the row, the whole error on hover
        shown = errors[0] if len(errors[0]) <= 110 else errors[0][:107] + "..."
        reason = f"<br><small title='{html.escape(errors[0])}'>{html.escape(shown)}</small>"
    started = str(manifest.get("started_at", ""))[:16].replace("T", " ")
    run_id = html.escape(str(manifest.get("run_id") or run_dir.name))
    # The run's name for compare: a batch's run id holds every ticker of the batch.
    reference = html.escape(f"{run_dir.parent.name}/{run_dir.name}")
    return (
        "<tr>"
        f"<td><input type='checkbox' value='{reference}' aria-label='compare {reference}'></td>"
        f"<td>{html.escape(str(manifest.get('ticker', '?')))}</td>"
        f"<td class='when'>{html.escape(started)}<br><small>{run_id}</small></td>"
        f"<td class='status {status}'>{status}{reason}</td>"
        f"<td>{' · '.join(links)}</td>"
        f"{_metrics_cells(manifest.get('metrics'), BacktestSummary.read(run_dir / 'summary.json'))}"
        f"<td><small>{html.escape(str(manifest.get('version_id') or '–'))}</small></td>"
        f"<td>{_active_cell(manifest.get('version_id'), active)}</td>"
        "</tr>"
    )


def _tickers_table(by_ticker: dict[str, list[dict[str, Any]]]) -> str:
    """Every ticker, its number of runs and its newest one, linking to its own page."""
    rows = []
    for ticker in sorted(by_ticker):
        runs = by_ticker[ticker]
        newest = runs[0]
        status = html.escape(str(newest.get("status", "?")))
        when = html.escape(str(newest.get("started_at", ""))[:16].replace("T", " "))
        href = html.escape(f"{ticker}/{INDEX_NAME}")
        rows.append(
            f"<tr><td><a href='{href}'>{html.escape(ticker)}</a></td><td>{len(runs)}</td>"
            f"<td class='when'>{when}</td><td class='{status}'>{status}</td></tr>"
        )
    return (
        f"<h2>Tickers ({len(by_ticker)})</h2><p>Each ticker's page lists all of its runs.</p>"
        "<table><thead><tr><th>ticker</th><th>runs</th><th>newest run (UTC)</th>"
        f"<th>its status</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _write_page(path: Path, **fields: Any) -> None:
    body = _PAGE.format(csp=INDEX_CSP, script=INDEX_SCRIPT, **fields)
    # A temporary name of its own: workers of a --tickers run rebuild the index at once.
    tmp = path.with_name(f".index.{os.getpid()}.{uuid.uuid4().hex[:8]}.html.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, path)


def build_index(
    reports_dir: Path, database_url: str | None = None, *, ticker_folder: str | None = None
) -> Path:
    """Rewrite ``reports_dir/index.html`` (the newest runs and every ticker) and each
    ticker's ``index.html`` (all its runs) from the run manifests; with ``database_url`` the
    active column says which runs' models serve now.

    ``ticker_folder``: only that ticker's page, from its own runs' manifests; returns its
    path. Why: a batch task calls this after its run, and reading every run's manifest there
    made each of a nightly batch's thousands of tasks pay for all the runs kept (about 1 ms a
    run); the batch rebuilds the whole index once, at its end.
    """
    active = active_version_ids(database_url)
    reports_dir.mkdir(parents=True, exist_ok=True)
    manifests = read_manifests(reports_dir, ticker_folder or "*")
    by_ticker: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for manifest in manifests:
        by_ticker[manifest["_dir"].parent.name].append(manifest)
    empty = "<tr><td colspan='12'>no runs yet</td></tr>"
    for ticker, runs in by_ticker.items():
        page_dir = reports_dir / ticker
        _write_page(
            page_dir / INDEX_NAME,
            title=f"stock-lstm runs of {html.escape(ticker)}",
            nav="<p><a href='../index.html'>← every ticker</a></p>",
            rows="\n".join(_run_row(m, page_dir, active) for m in runs),
            count=len(runs),
            more="",
            compare_base="../compare/",
            tickers="",
        )
    if ticker_folder is not None:
        return reports_dir / ticker_folder / INDEX_NAME
    newest = manifests[:INDEX_LATEST_RUNS]
    index = reports_dir / INDEX_NAME
    more = (
        f" (the newest {len(newest)} of {len(manifests)}: the tickers below link to all)"
        if len(manifests) > len(newest)
        else ""
    )
    _write_page(
        index,
        title="stock-lstm runs",
        nav="",
        rows="\n".join(_run_row(m, reports_dir, active) for m in newest) or empty,
        count=len(newest),
        more=more,
        compare_base="compare/",
        tickers=_tickers_table(by_ticker) if by_ticker else "",
    )
    return index
