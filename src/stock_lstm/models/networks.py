"""Networks by name: the one table a new network is added to.

``TrainParams.network`` names the class that training builds; an artifact records that name
beside the constructor's config, and loading looks it up here (an artifact saved before
networks had names is an LSTM). A new network is one module with a
:class:`~stock_lstm.models.lstm.RecurrentForecaster` subclass (or any ``nn.Module`` with the
same methods: ``forward``, ``forward_steps``, ``point``, ``quantile_values``, ``loss``,
``config``) plus one line here.
"""

from __future__ import annotations

from typing import Any

from stock_lstm.errors import ArtifactError
from stock_lstm.models.gru import GRUForecaster
from stock_lstm.models.lstm import LSTMForecaster, RecurrentForecaster

NETWORKS: dict[str, type[RecurrentForecaster]] = {
    "lstm": LSTMForecaster,
    "gru": GRUForecaster,
}
#: The network of an artifact that names none (saved before networks had names).
LEGACY_NETWORK = "lstm"


def build_network(name: str, **config: Any) -> RecurrentForecaster:
    """A new network of kind ``name`` (``TrainParams`` validated the name already)."""
    return NETWORKS[name](**config)


def network_for_artifact(payload: dict[str, Any]) -> type[RecurrentForecaster]:
    """The class an artifact's payload was saved from; ``ArtifactError`` for an unknown name
    (an artifact from a newer version of this code)."""
    name = payload.get("network", LEGACY_NETWORK)
    if name not in NETWORKS:
        raise ArtifactError(
            f"the model file holds a {name!r} network, which this code does not know "
            f"(known: {', '.join(NETWORKS)}): upgrade stock-lstm or retrain the ticker"
        )
    return NETWORKS[name]
