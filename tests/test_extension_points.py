"""Each extension point takes a toy one added as README's "where the next thing goes" says:
a non-recurrent network (a causal dilated convolution, a TCN) and a head, each one module in
a temporary folder plus one registry line, and they train, backtest, save and load."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stock_lstm.models import networks

TCN_MODULE = '''
"""A toy temporal convolutional network: causal dilated convolutions (Bai et al. 2018)."""

import torch
from torch import nn

from stock_lstm.models.base_network import NetworkForecaster


class TCNForecaster(NetworkForecaster):
    network = "tcn"
    backbone_attribute = "tcn"
    causal = True

    def __init__(
        self,
        n_features=1,
        channels=8,
        kernel_size=3,
        depth=2,
        horizon=1,
        quantiles=(),
        distribution="quantiles",
    ):
        layers = []
        for level in range(depth):
            layers.append(
                nn.Conv1d(
                    n_features if level == 0 else channels,
                    channels,
                    kernel_size,
                    dilation=2**level,
                )
            )
        super().__init__(
            nn.ModuleList(layers),
            features=channels,
            n_features=n_features,
            horizon=horizon,
            quantiles=quantiles,
            distribution=distribution,
        )
        # Each option kept under its own name: config() records it from there.
        self.channels, self.kernel_size, self.depth = channels, kernel_size, depth

    @classmethod
    def step_cost(cls, options):
        # Each level: a kernel_size x channels^2 convolution; the levels run in turn.
        work = options["depth"] * options["kernel_size"] * options["channels"] ** 2
        return float(work), float(options["depth"])

    def encode(self, x):
        h = x.transpose(1, 2)
        for conv in self.tcn:
            pad = (conv.kernel_size[0] - 1) * conv.dilation[0]
            h = torch.relu(conv(nn.functional.pad(h, (pad, 0))))  # left pad: causal
        return h.transpose(1, 2)
'''

LAPLACE_MODULE = '''
"""A toy Laplace head: location and scale per day, negative log-likelihood."""

import numpy as np
import torch
from scipy import stats

from stock_lstm.models.heads import Head


class LaplaceHead(Head):
    name = "laplace"
    loss_name = "Laplace negative log-likelihood"
    params_per_day = 2

    def transform(self, raw, horizon):
        raw = raw.view(*raw.shape[:-1], horizon, 2)
        return torch.cat([raw[..., :1], torch.nn.functional.softplus(raw[..., 1:]) + 1e-4], -1)

    def point(self, output):
        return output[..., 0]

    def quantile_values(self, output):
        values = output.double().numpy()
        return values[..., :1] + values[..., 1:] * stats.laplace.ppf(np.asarray(self.quantiles))

    def loss(self, output, target):
        laplace = torch.distributions.Laplace(output[..., 0], output[..., 1])
        return -laplace.log_prob(target).mean()
'''


@pytest.fixture
def toy_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The toy network and head in a temporary module, registered by one line each."""
    (tmp_path / "toy_extensions_tcn.py").write_text(textwrap.dedent(TCN_MODULE))
    (tmp_path / "toy_extensions_laplace.py").write_text(textwrap.dedent(LAPLACE_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(networks.NETWORK_CLASSES, "tcn", "toy_extensions_tcn:TCNForecaster")
    monkeypatch.setitem(networks.HEAD_CLASSES, "laplace", "toy_extensions_laplace:LaplaceHead")
    yield
    for name in ("toy_extensions_tcn", "toy_extensions_laplace"):
        sys.modules.pop(name, None)


def _prices(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    index = pd.bdate_range("2015-01-01", periods=n, name="date")
    return pd.DataFrame(
        {
            "open": close * (1 + rng.normal(0, 0.002, n)),
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "volume": rng.integers(1_000, 2_000, n).astype(float),
        },
        index=index,
    )


@pytest.mark.usefixtures("toy_modules")
def test_a_tcn_added_in_one_module_trains_backtests_and_reloads(tmp_path: Path) -> None:
    import torch

    from stock_lstm.data.preprocessing import prepare_data
    from stock_lstm.evaluation.backtest import BacktestConfig, walk_forward
    from stock_lstm.models.base_network import NetworkForecaster
    from stock_lstm.models.params import PARAM_CHOICES
    from stock_lstm.models.training import TrainParams, train_model

    assert "tcn" in PARAM_CHOICES["network"]  # the registry line is the choice
    params = TrainParams(network="tcn", epochs=2, sequence_length=20, horizon=3)
    prices = _prices()
    data = prepare_data(prices, sequence_length=20, target="log_return", horizon=3, inputs="ohlcv")
    result = train_model(data, params)
    model = result.model
    assert type(model).__name__ == "TCNForecaster" and isinstance(model, NetworkForecaster)
    assert model.config()["kernel_size"] == 3 and "hidden_size" not in model.config()
    assert type(model).options() == ("channels", "kernel_size", "depth")
    # A chunked pass (training's default) gives the same forecast as window by window: the
    # backbone is causal, as it declares.
    window = torch.tensor(data.X_train[:1], dtype=torch.float32)
    with torch.no_grad():
        steps = model.forward_steps(window, window.shape[1] - 1)[:, 0]
        np.testing.assert_allclose(steps.numpy(), model(window).numpy(), rtol=1e-5)
    # Rebuilt from its config (what an artifact stores), it forecasts the same.
    again = networks.build_network("tcn", **model.config())
    again.load_state_dict(model.state_dict())
    with torch.no_grad():
        np.testing.assert_allclose(again(window).numpy(), model(window).numpy())
    backtest = walk_forward(prices, params, BacktestConfig(horizon=2, origins=10, refit_every=5))
    assert backtest.summary.n_origins == 10 and backtest.summary.fits == 2
    assert backtest.summary.probabilistic["model"][0].at(0.9).coverage is not None


@pytest.mark.usefixtures("toy_modules")
def test_a_network_only_option_is_one_constructor_argument() -> None:
    from stock_lstm.models.training import TrainParams, new_network

    params = TrainParams(network="tcn", network_options={"kernel_size": 5})
    model = new_network(params, n_features=4, horizon=2)
    assert model.kernel_size == 5 and model.config()["kernel_size"] == 5
    assert "network_options" not in TrainParams().to_dict() or not TrainParams().network_options

    # The API's bound on a job reads the network's own cost: twice the kernel, twice the work.
    def cost(kernel_size: int) -> float:
        options = {"kernel_size": kernel_size, "channels": 128}
        return TrainParams(network="tcn", network_options=options).relative_cost

    assert cost(4) == pytest.approx(16.0) and cost(8) == pytest.approx(2 * cost(4))
    with pytest.raises(Exception, match="kernel_sise"):
        new_network(TrainParams(network="tcn", network_options={"kernel_sise": 5}), 4, 2)


@pytest.mark.usefixtures("toy_modules")
def test_a_head_added_in_one_module_is_an_output_choice_and_trains() -> None:
    from stock_lstm.data.preprocessing import prepare_data
    from stock_lstm.models.params import PARAM_CHOICES
    from stock_lstm.models.training import TrainParams, train_model

    assert "laplace" in PARAM_CHOICES["output"]
    params = TrainParams(output="laplace", epochs=2, sequence_length=20, horizon=2, hidden_size=8)
    data = prepare_data(
        _prices(), sequence_length=20, target="log_return", horizon=2, inputs="ohlcv"
    )
    model = train_model(data, params).model
    assert model.loss_name == "Laplace negative log-likelihood"
    assert model.config()["distribution"] == "laplace"
    import torch

    with torch.no_grad():
        output = model(torch.tensor(data.X_val[:4], dtype=torch.float32))
    quantiles = model.quantile_values(output)
    assert quantiles.shape == (4, 2, len(params.quantile_levels))
    assert (np.diff(quantiles, axis=-1) > 0).all()


SOURCE_MODULE = '''
"""A toy price source: synthetic prices, the spec's argument their seed (``synthetic:7``)."""

from stock_lstm.data.frames import normalize_ohlcv
from stock_lstm.data.synthetic import synthetic_prices


class SyntheticSource:
    supports_incremental = False

    def __init__(self, seed):
        self.seed = seed
        self.name = f"synthetic:{seed}"

    @classmethod
    def from_spec(cls, argument, *, history_years, clock):
        return cls(int(argument))

    def check_ticker(self, ticker):
        return None

    def fetch(self, ticker, start=None, end=None):
        return normalize_ohlcv(synthetic_prices(ticker, rows=300, seed=self.seed), ticker)
'''


def test_a_price_source_added_in_one_module_is_a_setting_and_fills_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stock_lstm import source_spec
    from stock_lstm.config import Settings
    from stock_lstm.workflows import AppContext, sync_ticker

    (tmp_path / "toy_extensions_source.py").write_text(textwrap.dedent(SOURCE_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    kind = source_spec.SourceKind("toy_extensions_source:SyntheticSource", "SEED", "a seed")
    monkeypatch.setitem(source_spec.SOURCE_KINDS, "synthetic", kind)  # the one line
    assert "'synthetic:SEED' (a seed)" in source_spec.accepted()
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'cache.db'}",
        source="Synthetic:7",
        models_dir=tmp_path / "models",
        reports_dir=tmp_path / "reports",
    )
    ctx = AppContext.create(settings)
    try:
        assert ctx.source.name == "synthetic:7"
        assert sync_ticker(ctx, "ZZZ").rows == 300
    finally:
        ctx.db.dispose()
        sys.modules.pop("toy_extensions_source", None)
