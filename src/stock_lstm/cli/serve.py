"""The HTTP API's command: ``serve``."""

from __future__ import annotations

import argparse

from stock_lstm.cli.common import _settings_from, _source_option


def add_serve(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``serve``: run the HTTP API."""
    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="run the HTTP API (OpenAPI docs at /docs, metrics at /metrics)",
        description="Serve training jobs, predictions, the registry and the cache over HTTP. "
        "When STOCK_LSTM_API_TOKEN is set, state-changing endpoints need "
        "'Authorization: Bearer <token>'; a non-loopback --host needs a token or --insecure.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (8000)")
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without STOCK_LSTM_API_TOKEN",
    )
    _source_option(serve)
    serve.set_defaults(handler=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from stock_lstm.api.serve import serve

    settings = _settings_from(args)
    if settings.dask_scheduler:
        from stock_lstm.cluster import worker_settings

        worker_settings(settings)  # one error line now, not a failed start-up later
    serve(args.host, args.port, insecure=args.insecure, settings=settings)
    return 0
