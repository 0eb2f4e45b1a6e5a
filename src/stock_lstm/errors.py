"""One exception family for everything a user can get wrong or a source can fail at.

Every message says what is wrong *and* what to do next; the CLI prints it as one line and
exits 2, the API turns it into a 4xx with the message as ``detail``.
"""

from __future__ import annotations


class StockLSTMError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    #: HTTP status the API maps this error to.
    http_status: int = 400


class InvalidTickerError(StockLSTMError):
    """A ticker symbol that is empty, too long or has characters a symbol never has."""

    http_status = 422


class InvalidParameterError(StockLSTMError):
    """A hyperparameter or option outside its allowed range."""

    http_status = 422


class DataSourceError(StockLSTMError):
    """The price source returned nothing usable (unknown ticker, unreachable, bad file)."""

    http_status = 404


class NotEnoughDataError(StockLSTMError):
    """Too little price history for the requested sequence length and split."""

    http_status = 422


class ModelNotFoundError(StockLSTMError):
    """No (active) model for a ticker, or an unknown version id."""

    http_status = 404


class ArtifactError(StockLSTMError):
    """A model or scaler file is missing, truncated, replaced or unreadable."""

    http_status = 409


class JobNotFoundError(StockLSTMError):
    """An unknown training job id."""

    http_status = 404


class ConflictError(StockLSTMError):
    """The action clashes with work already under way (e.g. a ticker already training)."""

    http_status = 409


class DatabaseSchemaError(StockLSTMError):
    """The database's schema cannot be brought to the migrations' head without a person."""

    http_status = 503


class ClusterError(StockLSTMError):
    """Work cannot go to the Dask cluster as configured: the scheduler is unreachable, or the
    database or folders are ones its workers cannot share (SQLite, relative paths)."""

    http_status = 503


class DatabaseBusyError(StockLSTMError):
    """Another process kept the SQLite database locked for longer than we are willing to wait."""

    http_status = 503


class DatabaseUnavailableError(StockLSTMError):
    """The database server cannot be reached (down, restarting, wrong host or port): worth
    retrying; the API answers 503 with ``Retry-After`` and recovers once it is back."""

    http_status = 503
    retry_after_seconds = 5


class DatabaseFileError(StockLSTMError):
    """The database file is damaged or is not a database: a person must restore or move it."""

    http_status = 503


class JobCancelledError(ConflictError):
    """The training job was cancelled (``POST .../cancel``): the training stops at its next
    epoch and registers nothing."""


class SettingsError(StockLSTMError):
    """A ``STOCK_LSTM_*`` setting (or the flag overriding it) holds a value outside its bound:
    nothing can run correctly until a person fixes the environment or ``.env``."""

    http_status = 503
