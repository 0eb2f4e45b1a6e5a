"""Runs whose process died: their ``run.json`` says ``running`` forever unless someone looks.

A run's manifest names the process that runs it (``owner_host``, ``owner_pid``). When that
process is gone (killed, the server restarted, the machine rebooted), the next start of the
API or of any command that opens the reports marks the run ``failed`` with the reason,
renders whatever notebook the run had written (papermill saves the executed copy as it goes,
so the cells that ran are there) and rebuilds the index: the run's folder then reads like any
other failed run instead of an eternal "running" with no HTML.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stock_lstm.models.jobs import process_is_alive
from stock_lstm.pipeline.reports import RUN_MANIFEST, render_html, write_manifest

log = logging.getLogger(__name__)


def interrupted_run_reason(pid: int, host: str) -> str:
    return f"interrupted: its process {pid} on {host} is gone; run it again"


def _stale(manifest: dict[str, Any], host: str, is_alive: Callable[[int], bool]) -> bool:
    if manifest.get("status") != "running" or manifest.get("owner_host") != host:
        return False  # finished, or run on another machine whose processes we cannot see
    pid = manifest.get("owner_pid")
    return isinstance(pid, int) and not is_alive(pid)


def _render_leftovers(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Render the notebooks the dead run wrote and add the interrupted stage to the list."""
    listed = {stage.get("notebook") for stage in manifest.get("stages", [])}
    for notebook in sorted(run_dir.glob("[0-9][0-9]_*.ipynb")):
        html: str | None = None
        try:
            html = render_html(notebook).name
        except Exception as exc:  # a half-written notebook may not parse
            log.warning("could not render %s: %s", notebook, exc)
        if notebook.name not in listed:
            stage = notebook.stem.split("_", 1)[1]
            manifest.setdefault("stages", []).append(
                {
                    "stage": stage,
                    "status": "failed",
                    "notebook": notebook.name,
                    "html": html,
                    "error": manifest["error"],
                    "seconds": None,
                }
            )


def reconcile_runs(
    reports_dir: Path,
    *,
    host: str | None = None,
    is_alive: Callable[[int], bool] = process_is_alive,
) -> list[Path]:
    """Mark the ``running`` runs whose process on this host is gone as failed; return their
    folders. Runs of live processes and of other hosts are left alone."""
    host = host or socket.gethostname()
    marked: list[Path] = []
    for path in Path(reports_dir).glob(f"*/*/{RUN_MANIFEST}"):
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(manifest, dict) or not _stale(manifest, host, is_alive):
            continue
        manifest["status"] = "failed"
        manifest["error"] = interrupted_run_reason(manifest["owner_pid"], host)
        _render_leftovers(path.parent, manifest)
        write_manifest(path.parent, manifest)
        marked.append(path.parent)
    return marked
