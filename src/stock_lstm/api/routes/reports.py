"""Training reports: the HTML the train notebook rendered for a model version."""

import logging
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, HTMLResponse

from stock_lstm.api.deps import ContextDep, ServerDetailsDep, id_path
from stock_lstm.api.redaction import redact
from stock_lstm.api.schemas import ErrorResponse
from stock_lstm.errors import ModelNotFoundError
from stock_lstm.models import registry
from stock_lstm.pipeline.reports import REPORT_CSP

#: Headers of a served report: the policy (reports rendered before it was written into
#: their <head> get it too), no MIME sniffing, and no framing or referrer leaks.
REPORT_HEADERS = {
    "Content-Security-Policy": f"{REPORT_CSP}; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

log = logging.getLogger(__name__)
router = APIRouter(prefix="/reports", tags=["reports"])


@router.get(
    "/{version_id}",
    response_class=FileResponse,
    responses={200: {"content": {"text/html": {}}}, 404: {"model": ErrorResponse}},
)
def get_report(
    version_id: Annotated[str, id_path("A model version.")],
    ctx: ContextDep,
    details: ServerDetailsDep,
) -> Response:
    """The executed train notebook of ``version_id`` as HTML (plots embedded).

    Only files under the reports folder are served, whatever the registry row says; a
    client that may not see server details gets it with the server's folders replaced
    (``api.redaction``).
    """
    try:
        record = registry.get_model(ctx.db, version_id)
    except ModelNotFoundError:
        raise ModelNotFoundError(
            f"no model version {version_id!r}: list versions with GET /api/v1/models"
        ) from None
    if not record.report_path:
        raise ModelNotFoundError(
            f"model version {version_id} has no report: it was trained outside the notebook "
            "runner; train through POST /api/v1/training/start to get one"
        )
    reports_dir = FilePath(ctx.settings.reports_dir).resolve()
    report = FilePath(record.report_path).resolve()
    if report.suffix != ".html" or not report.is_relative_to(reports_dir):
        # The folders are named in the log only: an unauthenticated GET must not learn them.
        log.warning("report of %s is %s, outside %s", version_id, report, reports_dir)
        raise ModelNotFoundError(
            f"the report of {version_id} is outside the server's reports folder "
            "(STOCK_LSTM_REPORTS_DIR changed?): open it from disk"
        )
    if not report.is_file():
        raise ModelNotFoundError(
            f"the report of {version_id} is not on disk yet (the run renders it right after "
            "training) or was deleted: retry in a few seconds, or retrain"
        )
    if details:
        return FileResponse(report, media_type="text/html", headers=REPORT_HEADERS)
    text = redact(report.read_text(encoding="utf-8", errors="replace"), ctx.settings)
    return HTMLResponse(text, headers=REPORT_HEADERS)
