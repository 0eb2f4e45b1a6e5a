"""``make bench``: measurements of the package on real prices, never timed tests.

A folder beside ``src/`` rather than a ``stock_lstm.bench`` subpackage because a benchmark is
a development tool: it needs the repository layout (``../shared/data/prices``), the ``wrk``
binary, subprocesses of ``stock-lstm`` and a reference trainer written the way tutorials are.
None of that belongs in the installed package, and the package never imports it.

``python -m bench.run`` runs every figure, each ``bench.<figure>`` module in its own fresh
process, writes ``bench/results.json`` and prints a markdown table.
"""
