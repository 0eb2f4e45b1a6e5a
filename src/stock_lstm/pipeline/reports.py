"""Rendering executed notebooks to HTML, run manifests, and which run folders may be pruned
(the index of runs is ``pipeline.run_index``)."""

from __future__ import annotations

import glob
import json
import os
import re
import time
from pathlib import Path
from typing import Any

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


#: The banner papermill puts above a failed notebook ("An Exception was encountered at
#: 'In [5]'"), a link into code a report hides: its own sentence replaces it.
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"


def stop_at_failure(notebook: Any) -> None:
    """A failed run's report ends at the failing cell, and says so first.

    Why: the cells after a failure never ran, so their section prose stood above nothing
    (a reader scrolled past headings promising plots that were not there). Now the title is
    followed by one sentence naming the error, then the cells up to the failing one.
    """
    import nbformat

    cells = [
        c
        for c in notebook.cells
        if PAPERMILL_ERROR_TAG not in c.get("metadata", {}).get("tags", [])
    ]
    for position, cell in enumerate(cells):
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if not errors:
            continue
        error = errors[0]
        message = f"{error.get('ename', 'Error')}: {error.get('evalue', '')}".strip(": ")
        shown = message[:300].replace("`", "'")
        count = cell.get("execution_count")
        where = f"cell [{count}], the last one below" if count else "the last cell below"
        note = nbformat.v4.new_markdown_cell(
            f"**The run stopped** at {where}, with `{shown}`. The cells after it did not run; "
            "fix the cause and run again (`stock-lstm reports --prune` clears failed runs)."
        )
        note.metadata["tags"] = ["summary"]
        kept = [c for c in cells[: position + 1] if "summary" not in c.metadata.get("tags", [])]
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


def read_manifests(reports_dir: Path, folder: str = "*") -> list[dict[str, Any]]:
    """Every run's manifest under ``reports_dir`` (only ticker folder ``folder`` if given),
    newest first (unreadable ones skipped)."""
    manifests = []
    pattern = "*" if folder == "*" else glob.escape(folder)
    for path in reports_dir.glob(f"{pattern}/*/{RUN_MANIFEST}"):
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
