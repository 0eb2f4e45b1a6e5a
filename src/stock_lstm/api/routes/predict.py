"""Forecasts with each ticker's active model, one ticker or a batch."""

import logging
import time

from fastapi import APIRouter

from stock_lstm.api.deps import ContextDep, MetricsDep, ServerDetailsDep, no_active_model
from stock_lstm.api.redaction import client_detail
from stock_lstm.api.schemas import (
    BatchError,
    BatchItem,
    BatchPredictRequest,
    BatchPredictResponse,
    ErrorResponse,
    ForecastResponse,
    PredictRequest,
)
from stock_lstm.errors import ModelNotFoundError, StockLSTMError
from stock_lstm.models.forecasting import Forecast
from stock_lstm.monitoring.metrics import ApiMetrics
from stock_lstm.tickers import validate_ticker
from stock_lstm.workflows import AppContext, predict_ticker

log = logging.getLogger(__name__)

router = APIRouter(prefix="/predict", tags=["predict"])


def forecast_one(ctx: AppContext, metrics: ApiMetrics, raw_ticker: str, days: int) -> Forecast:
    """``predict_ticker`` with the API's 404 hint, counted in the prediction metrics.

    The active model is looked up on every call, so an activation is seen by the next
    request; loaded networks are reused from ``ctx.model_cache`` by version id.
    """
    began = time.perf_counter()
    outcome, ticker_label = "error", None
    try:
        ticker = validate_ticker(raw_ticker)
        try:
            forecast = predict_ticker(ctx, ticker, days, on_sync=metrics.observe_sync)
        except ModelNotFoundError:
            raise no_active_model(ticker) from None
        outcome, ticker_label = "ok", forecast.ticker
        return forecast
    except ModelNotFoundError:
        outcome = "not_found"
        raise
    except StockLSTMError:
        outcome = "rejected"
        raise
    finally:
        metrics.observe_prediction(ticker_label, outcome, time.perf_counter() - began)


@router.post(
    "",
    responses={
        404: {"model": ErrorResponse, "description": "No active model: train one first."},
        409: {"model": ErrorResponse, "description": "The model's files are damaged."},
        422: {"model": ErrorResponse},
    },
)
def predict(body: PredictRequest, ctx: ContextDep, metrics: MetricsDep) -> ForecastResponse:
    """Forecast ``days_ahead`` trading days after the last cached close."""
    return ForecastResponse.model_validate(forecast_one(ctx, metrics, body.ticker, body.days_ahead))


@router.post("/batch", responses={422: {"model": ErrorResponse}})
def predict_batch(
    body: BatchPredictRequest, ctx: ContextDep, metrics: MetricsDep, details: ServerDetailsDep
) -> BatchPredictResponse:
    """Forecast several tickers; each answers on its own (``ok`` with a forecast or an error
    with the status a single prediction would have had)."""
    results: list[BatchItem] = []
    for raw in body.tickers:
        try:
            forecast = forecast_one(ctx, metrics, raw, body.days_ahead)
        except StockLSTMError as exc:
            detail = client_detail(exc, show_details=details, settings=ctx.settings)
            error = BatchError(status=exc.http_status, detail=detail)
            results.append(BatchItem(ticker=raw, ok=False, error=error))
        except Exception:
            log.exception("batch prediction of %r failed", raw)
            error = BatchError(
                status=500, detail=f"internal error while predicting {raw!r}: see the server log"
            )
            results.append(BatchItem(ticker=raw, ok=False, error=error))
        else:
            item = BatchItem(
                ticker=forecast.ticker, ok=True, forecast=ForecastResponse.model_validate(forecast)
            )
            results.append(item)
    return BatchPredictResponse(results=results)
