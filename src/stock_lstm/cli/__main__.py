"""``python -m stock_lstm.cli``: the same as the ``stock-lstm`` console script."""

import sys

from stock_lstm.cli import main

sys.exit(main())
