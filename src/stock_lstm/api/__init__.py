"""The HTTP API: ``create_app`` builds it, ``serve`` runs it with uvicorn."""

from __future__ import annotations

from stock_lstm.api.app import create_app

__all__ = ["create_app"]
