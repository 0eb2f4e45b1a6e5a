"""The network, its training loop, artifacts, the model registry and forecasting."""
