"""Networks by name: the one table a new network is added to.

``TrainParams.network`` names the class that training builds; an artifact records that name
beside the constructor's config, and loading looks it up here (an artifact saved before
networks had names is an LSTM). A new network is one module with a
:class:`~stock_lstm.models.lstm.RecurrentForecaster` subclass (or any ``nn.Module`` with the
same methods: ``forward``, ``forward_steps``, ``point``, ``quantile_values``, ``loss``,
``config``) plus one line here.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any

from stock_lstm.errors import ArtifactError

if TYPE_CHECKING:
    from stock_lstm.models.lstm import RecurrentForecaster

#: name -> "module:Class". Strings, imported on first use, so listing the names (the
#: ``network`` parameter's choices, the CLI's, the API's schema) never imports torch.
NETWORK_CLASSES: dict[str, str] = {
    "lstm": "stock_lstm.models.lstm:LSTMForecaster",
    "gru": "stock_lstm.models.gru:GRUForecaster",
}
#: The network of an artifact that names none (saved before networks had names).
LEGACY_NETWORK = "lstm"


@functools.cache
def network_class(name: str) -> type[RecurrentForecaster]:
    """The class registered as ``name`` (``KeyError`` for an unknown one)."""
    module, _, attribute = NETWORK_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]


def build_network(name: str, **config: Any) -> RecurrentForecaster:
    """A new network of kind ``name`` (``TrainParams`` validated the name already)."""
    return network_class(name)(**config)


def network_for_artifact(payload: dict[str, Any]) -> type[RecurrentForecaster]:
    """The class an artifact's payload was saved from; ``ArtifactError`` for an unknown name
    (an artifact from a newer version of this code)."""
    name = payload.get("network", LEGACY_NETWORK)
    if name not in NETWORK_CLASSES:
        raise ArtifactError(
            f"the model file holds a {name!r} network, which this code does not know "
            f"(known: {', '.join(NETWORK_CLASSES)}): upgrade stock-lstm or retrain the ticker"
        )
    return network_class(name)
