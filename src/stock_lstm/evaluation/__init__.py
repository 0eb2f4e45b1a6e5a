"""Scoring forecasts in price units and the naive baselines a model has to beat."""
