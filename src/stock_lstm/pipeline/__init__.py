"""Notebook pipeline: papermill runs the parameterized notebooks per ticker into HTML reports."""
