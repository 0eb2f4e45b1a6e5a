"""``python -m stock_lstm.db revision -m MSG | check``: Alembic chores (``make migration``).

A ``__main__`` of the package rather than of ``migrate`` because ``stock_lstm.db`` imports
``migrate`` itself, and ``python -m`` on an already imported module runs it twice.
"""

from __future__ import annotations

import sys

from stock_lstm.db.migrate import main

if __name__ == "__main__":
    sys.exit(main())
