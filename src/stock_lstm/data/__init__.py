"""Prices in: sources (yfinance, CSV), the SQLite/SQL cache rule, and preprocessing."""
