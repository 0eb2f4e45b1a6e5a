"""Networks and heads by name: the one table each new one is added to.

``TrainParams.network`` names the backbone class that training builds and ``output`` the
head; an artifact records the network's name beside its constructor's config, and loading
looks it up here (an artifact saved before networks had names is an LSTM). A new network is
one module with a :class:`~stock_lstm.models.base_network.NetworkForecaster` subclass (its
``encode``: a window to features; its constructor's own arguments are its options) plus one
line in ``NETWORK_CLASSES``; a new head is a :class:`~stock_lstm.models.heads.Head` subclass
plus one line in ``HEAD_CLASSES``.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from stock_lstm.errors import ArtifactError, InvalidParameterError

#: The classes are typed where they are used (``models.base_network.NetworkForecaster``,
#: ``models.heads.Head``): importing them here, even for type checking, would make the
#: registry and the classes it names import each other.
NetworkClass = type[Any]

#: name -> "module:Class". Strings, imported on first use, so listing the names (the
#: ``network`` parameter's choices, the CLI's, the API's schema) never imports torch.
NETWORK_CLASSES: dict[str, str] = {
    "lstm": "stock_lstm.models.lstm:LSTMForecaster",
    "gru": "stock_lstm.models.gru:GRUForecaster",
}
#: The ``output`` parameter's heads, the default first (same lazy form).
HEAD_CLASSES: dict[str, str] = {
    "student_t": "stock_lstm.models.heads:StudentTHead",
    "quantiles": "stock_lstm.models.heads:QuantileHead",
    "point": "stock_lstm.models.heads:PointHead",
}
#: The network of an artifact that names none (saved before networks had names).
LEGACY_NETWORK = "lstm"


def _import(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


@functools.cache
def _network_class(name: str, path: str) -> NetworkClass:
    return _import(path)  # type: ignore[no-any-return]


def network_class(name: str) -> NetworkClass:
    """The class registered as ``name`` (``KeyError`` for an unknown one)."""
    return _network_class(name, NETWORK_CLASSES[name])


def head_class(name: str) -> type[Any]:
    """The head registered as ``name``; ``InvalidParameterError`` names the choices."""
    if name not in HEAD_CLASSES:
        raise InvalidParameterError(f"unknown head {name!r}: choose from {', '.join(HEAD_CLASSES)}")
    return _import(HEAD_CLASSES[name])  # type: ignore[no-any-return]


def build_network(name: str, **config: Any) -> Any:
    """A new network of kind ``name`` (``TrainParams`` validated the name already)."""
    return network_class(name)(**config)


def network_for_artifact(payload: dict[str, Any]) -> NetworkClass:
    """The class an artifact's payload was saved from; ``ArtifactError`` for an unknown name
    (an artifact from a newer version of this code)."""
    name = payload.get("network", LEGACY_NETWORK)
    if name not in NETWORK_CLASSES:
        raise ArtifactError(
            f"the model file holds a {name!r} network, which this code does not know "
            f"(known: {', '.join(NETWORK_CLASSES)}): upgrade stock-lstm or retrain the ticker"
        )
    return network_class(name)
