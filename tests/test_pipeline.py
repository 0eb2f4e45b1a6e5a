"""The papermill runner on tiny throw-away notebooks: parameters, failures, reports, index."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from stock_lstm.config import Settings
from stock_lstm.errors import InvalidParameterError, InvalidTickerError, StockLSTMError
from stock_lstm.pipeline.reports import render_html
from stock_lstm.pipeline.run_index import build_index
from stock_lstm.pipeline.runner import (
    PipelineError,
    coerce_parameter,
    kernel_environment,
    run_pipeline,
)
from stock_lstm.pipeline.stages import STAGES, resolve_stages
from stock_lstm.workflows import AppContext

KERNELSPEC = {"name": "stock-lstm", "display_name": "Python (stock-lstm)", "language": "python"}


def write_notebook(path: Path, parameters: str, body: str) -> None:
    cell = new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    notebook = new_notebook(
        cells=[new_markdown_cell("# test"), cell, new_code_cell(body)],
        metadata={"kernelspec": KERNELSPEC},
    )
    nbformat.write(notebook, path)


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(
        folder / "01_sync.ipynb",
        'ticker = "AAPL"\nsource = None',
        "import os\nprint(ticker, os.environ['STOCK_LSTM_SOURCE'])",
    )
    write_notebook(
        folder / "03_train.ipynb",
        'ticker = "AAPL"\nepochs = 1\nreport_path = None\nfail = False',
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\n"
        "if fail:\n    raise ValueError('too little data for AAPL')\nprint(epochs * 2)",
    )
    write_notebook(folder / "04_predict.ipynb", 'ticker = "AAPL"\ndays = 5', "print(days)")
    return folder


def test_stage_names_expand_and_unknown_ones_are_refused() -> None:
    assert resolve_stages(["all"]) == ["sync", "eda", "train", "predict"]
    assert resolve_stages(["backtest"]) == ["backtest"] and "backtest" in STAGES
    assert resolve_stages(["predict", "train", "train"]) == ["train", "predict"]
    with pytest.raises(InvalidParameterError, match="unknown stage 'fit'"):
        resolve_stages(["fit"])


@pytest.mark.parametrize(
    ("text", "value"),
    [("5", 5), ("0.5", 0.5), ("true", True), ("None", None), ("csv:/x", "csv:/x")],
)
def test_parameter_values_are_coerced_like_papermill(text: str, value: object) -> None:
    assert coerce_parameter(text) == value


def test_successful_run_writes_notebooks_html_manifest_and_index(
    settings: Settings, notebooks: Path
) -> None:
    result = run_pipeline(
        ["train", "sync"],
        "aapl",
        settings,
        {"epochs": 21},
        notebooks_dir=notebooks,
        run_id="r1",
        progress=False,
    )
    run_dir = Path(settings.reports_dir).resolve() / "AAPL" / "r1"
    assert result.status == "ok" and [s.stage for s in result.stages] == ["sync", "train"]
    train_nb = nbformat.read(run_dir / "03_train.ipynb", as_version=4)
    outputs = "".join(o.get("text", "") for c in train_nb.cells for o in c.get("outputs", []))
    assert "42" in outputs
    injected = [c for c in train_nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert f'report_path = "{run_dir / "03_train.html"}"' in injected[0].source
    html = (run_dir / "03_train.html").read_text()
    assert "<img" in html and "data:image/png;base64" in html
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "ok" and manifest["ticker"] == "AAPL"
    index = (Path(settings.reports_dir) / "index.html").read_text()
    assert "03_train.html" in index and "AAPL" in index


def test_kernel_sees_the_runs_settings(settings: Settings, notebooks: Path) -> None:
    run_pipeline(["sync"], "AAPL", settings, notebooks_dir=notebooks, run_id="r", progress=False)
    executed = Path(settings.reports_dir) / "AAPL" / "r" / "01_sync.ipynb"
    assert settings.source in executed.read_text()
    assert kernel_environment(settings)["STOCK_LSTM_MODELS_DIR"].startswith("/")


def test_failing_notebook_is_kept_rendered_and_reported(
    settings: Settings, notebooks: Path
) -> None:
    with pytest.raises(PipelineError, match="stage train failed: ValueError: too little data"):
        run_pipeline(
            ["train", "predict"],
            "AAPL",
            settings,
            {"fail": True},
            notebooks_dir=notebooks,
            run_id="bad",
            progress=False,
        )
    run_dir = Path(settings.reports_dir) / "AAPL" / "bad"
    assert "too little data" in (run_dir / "03_train.html").read_text()
    assert not (run_dir / "04_predict.ipynb").exists()
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "failed"
    assert [s["status"] for s in manifest["stages"]] == ["failed"]
    assert "failed" in (Path(settings.reports_dir) / "index.html").read_text()


@pytest.mark.parametrize(
    ("stages", "params", "error", "match"),
    [
        (["train"], {"epoch": 3}, InvalidParameterError, "'epoch' is not declared"),
        (["sync"], {"epochs": 3}, InvalidParameterError, "'epochs' is not declared"),
        (["train"], {"report_path": "x"}, InvalidParameterError, "set by the runner"),
        (["eda"], {}, StockLSTMError, "02_eda.ipynb is missing"),
    ],
)
def test_bad_parameters_fail_before_anything_runs(
    settings: Settings,
    notebooks: Path,
    stages: list[str],
    params: dict,
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        run_pipeline(stages, "AAPL", settings, params, notebooks_dir=notebooks, progress=False)
    assert not Path(settings.reports_dir).exists()


def test_malformed_ticker_never_reaches_a_path(settings: Settings, notebooks: Path) -> None:
    with pytest.raises(InvalidTickerError):
        run_pipeline(["sync"], "../../etc", settings, notebooks_dir=notebooks)
    assert not Path(settings.reports_dir).exists()


def test_missing_kernel_says_make_setup(
    settings: Settings, notebooks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stock_lstm.pipeline.runner as runner

    monkeypatch.setattr(runner, "KERNEL_NAME", "no-such-kernel")
    original = runner.check_kernel
    monkeypatch.setattr(runner, "check_kernel", lambda: original("no-such-kernel"))
    with pytest.raises(StockLSTMError, match="make setup"):
        run_pipeline(["sync"], "AAPL", settings, notebooks_dir=notebooks)


def test_index_of_an_empty_reports_folder(tmp_path: Path) -> None:
    assert "no runs yet" in build_index(tmp_path / "reports").read_text()


@pytest.mark.parametrize(
    ("p_value", "shown", "css"),
    [
        (0.01, "0.976<br><small>better (p = 0.010)", "better"),
        (0.255, "0.976<br><small>no difference (p = 0.255)", "same"),  # was "0.994 better"
        (None, "0.976<br><small>no difference (not tested)", "same"),
    ],
)
def test_a_backtest_run_shows_its_scores_in_the_index(
    tmp_path: Path, p_value: float | None, shown: str, css: str
) -> None:
    import json

    run_dir = tmp_path / "reports" / "KO" / "20260101_000000_abcdef"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "ticker": "KO",
                "run_id": run_dir.name,
                "status": "ok",
                "started_at": "2026-01-01T00:00:00",
                "stages": [{"stage": "backtest", "status": "ok", "html": "05_backtest.html"}],
                "metrics": None,
                "version_id": None,
            }
        )
    )
    (run_dir / "summary.json").write_text(
        json.dumps(
            {
                "horizons": [
                    {
                        "horizon": 1,
                        "model": {"mae": 0.5},
                        "persistence": {"mae": 0.5125},
                        "dm_p_value": p_value,
                    }
                ],
                "probabilistic": {"model": [{"horizon": 1, "0.9": {"coverage": 0.8912}}]},
            }
        )
    )
    index = build_index(tmp_path / "reports").read_text()
    assert "<td>0.5000</td><td>0.5125</td>" in index
    assert f"<td class='{css}'" in index and shown in index and "<td>0.891</td>" in index


def test_a_rendered_report_loads_nothing_from_the_network(tmp_path: Path) -> None:
    import re

    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Title\n\nSome $x^2$ maths and a [link](https://x.org)."),
        nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", text="1")]),
        nbformat.v4.new_markdown_cell('## Errors "over" time'),
        nbformat.v4.new_code_cell(
            "plot()",
            outputs=[
                nbformat.v4.new_output(
                    "display_data",
                    data={
                        "image/png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
                        "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
                    },
                )
            ],
        ),
    ]
    path = tmp_path / "report.ipynb"
    nbformat.write(notebook, path)
    page = render_html(path).read_text()
    loaded = re.findall(r"<(?:script|link|img|iframe)[^>]+(?:src|href)=[\"']?(https?:)", page)
    imported = re.findall(r"@import\s+url\([\"']?https?:", page)
    assert loaded == [] and imported == []
    assert "Some" in page  # the page itself was rendered
    assert re.search(r"<img alt='Figure: Errors \"over\" time'", page)


def test_prune_removes_failed_and_stale_runs_but_never_a_registered_report(
    tmp_path: Path,
) -> None:
    import json
    import os

    from stock_lstm.pipeline.reports import prunable_runs

    reports = tmp_path / "reports"

    def run(name: str, status: str | None, ticker: str = "KO") -> Path:
        folder = reports / ticker / name
        folder.mkdir(parents=True)
        if status is not None:
            (folder / "run.json").write_text(json.dumps({"status": status}))
        return folder

    failed = run("20260101_000000_aaaaaa", "failed")
    failed_but_registered = run("20260101_000001_bbbbbb", "failed")
    ok = run("20260101_000002_cccccc", "ok")
    running = run("20260101_000003_dddddd", "running")
    stale = run("20260101_000004_eeeeee", None)
    fresh = run("20260101_000005_ffffff", None)
    backtest = run("backtest_20260101_000006", None)
    now = fresh.stat().st_mtime + 10
    for old in (stale, backtest):
        os.utime(old, (now - 7200, now - 7200))
    found = prunable_runs(reports, {failed_but_registered}, now=now)
    assert found == [failed, stale]
    assert ok.exists() and running.exists()


def test_the_index_says_which_runs_model_serves(tmp_path: Path, ctx: AppContext) -> None:
    import json

    from stock_lstm.models.registry import list_models
    from stock_lstm.models.training import TrainParams
    from stock_lstm.workflows import register_outcome, train_ticker

    params = TrainParams(epochs=1, hidden_size=4, num_layers=1, sequence_length=10, horizon=2)
    first = register_outcome(ctx, train_ticker(ctx, "AAPL", params), force=True)
    second = register_outcome(ctx, train_ticker(ctx, "AAPL", params), force=True)
    assert [r.version_id for r in list_models(ctx.db, "AAPL") if r.is_active] == [second.version_id]
    reports = tmp_path / "reports"
    for number, record in enumerate((first, second)):
        run_dir = reports / "AAPL" / f"2026010{number}_000000_abcdef"
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(
            json.dumps({"ticker": "AAPL", "status": "ok", "version_id": record.version_id})
        )
    page = build_index(reports, ctx.settings.database_url).read_text()
    assert f"<td><small>{second.version_id}</small></td><td><b>yes</b></td>" in page
    assert f"<td><small>{first.version_id}</small></td><td>no</td>" in page


def test_an_expected_error_shows_as_one_line_in_a_notebook(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from stock_lstm.pipeline.notebook import show_expected_errors_in_one_line

    shell = InteractiveShell.instance()
    try:
        show_expected_errors_in_one_line(shell)
        capsys.readouterr()
        expected = shell.run_cell(
            "from stock_lstm.errors import DataSourceError\n"
            "def load():\n    raise DataSourceError('no prices for AAPL: set source')\nload()"
        )
        shown = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
        assert not expected.success
        assert len(shown) == 1 and "DataSourceError" in shown[0]
        assert "no prices for AAPL: set source" in shown[0]
        shell.run_cell("def bug():\n    return 1 / 0\nbug()")
        assert len(capsys.readouterr().out.splitlines()) > 3  # a bug keeps its traceback
    finally:
        InteractiveShell.clear_instance()


# --- settings, sources and run ids are checked before a kernel starts (issue 14) ----------


def test_a_bad_setting_a_kernel_would_read_fails_before_the_kernel(
    settings: Settings, notebooks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel inherits this process's environment: a bad value there (one the caller's
    ``Settings`` object never read) is one line before anything runs."""
    from stock_lstm.errors import SettingsError

    monkeypatch.setenv("STOCK_LSTM_GATE_THRESHOLD", "x")
    with pytest.raises(SettingsError, match=r"^STOCK_LSTM_GATE_THRESHOLD='x' is not accepted"):
        run_pipeline(["sync"], "AAPL", settings, notebooks_dir=notebooks, progress=False)
    assert not Path(settings.reports_dir).exists()


def test_a_bad_setting_in_the_kernels_dotenv_fails_before_the_kernel(
    settings: Settings, notebooks: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``setup_notebook`` moves the kernel to the project root and reads its ``.env``, which
    the command (started in a sub-folder) did not read."""
    from stock_lstm.errors import SettingsError

    root = tmp_path / "checkout"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "stock-lstm"\n')
    (root / ".env").write_text("STOCK_LSTM_INTERVAL_LEVEL=0.5\n")
    monkeypatch.chdir(root / "notebooks")
    monkeypatch.delenv("STOCK_LSTM_INTERVAL_LEVEL", raising=False)
    with pytest.raises(SettingsError, match=r"STOCK_LSTM_INTERVAL_LEVEL='0\.5'"):
        run_pipeline(["sync"], "AAPL", settings, notebooks_dir=notebooks, progress=False)
    assert not Path(settings.reports_dir).exists()


def test_a_missing_csv_folder_in_a_source_parameter_fails_before_the_kernel(
    settings: Settings, notebooks: Path, tmp_path: Path
) -> None:
    from stock_lstm.errors import DataSourceError

    with pytest.raises(DataSourceError, match="nowhere does not exist"):
        run_pipeline(
            ["sync"],
            "AAPL",
            settings,
            {"source": f"csv:{tmp_path / 'nowhere'}"},
            notebooks_dir=notebooks,
            progress=False,
        )
    assert not Path(settings.reports_dir).exists()


@pytest.mark.parametrize(
    "run_id",
    ["../../x", "../x", "..", ".", "a/b", "ABSOLUTE", ".hidden", "a b", "x" * 101, "a\x00b"],
)
def test_a_run_id_that_is_not_a_plain_folder_name_is_refused(
    settings: Settings, notebooks: Path, tmp_path: Path, run_id: str
) -> None:
    if run_id == "ABSOLUTE":  # inside the test's folder, should the run id ever be obeyed
        run_id = str(tmp_path / "absolute")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(InvalidParameterError, match="run id"):
        run_pipeline(
            ["sync"], "AAPL", settings, notebooks_dir=notebooks, run_id=run_id, progress=False
        )
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_run_folder_must_resolve_inside_the_reports_folder(tmp_path: Path) -> None:
    """A symlinked ticker folder would carry a well-formed run id elsewhere."""
    from stock_lstm.pipeline.runner import run_folder

    reports, outside = tmp_path / "reports", tmp_path / "outside"
    reports.mkdir()
    outside.mkdir()
    (reports / "AAPL").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidParameterError, match="outside the reports folder"):
        run_folder(reports, "AAPL", "r1")
    assert run_folder(reports, "MSFT", "20260105_120000_ab12cd-attempt2") == (
        reports.resolve() / "MSFT" / "20260105_120000_ab12cd-attempt2"
    )


def test_a_report_leads_with_its_answer() -> None:
    """03's verdict sat 2,700 px down: the cells tagged ``summary`` (the notebook's last,
    since they need its results) come right after the title in the rendered report."""
    import nbformat

    from stock_lstm.pipeline.summaries import lead_with_summary

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("setup()"),
        nbformat.v4.new_code_cell("train()"),
        nbformat.v4.new_code_cell("answer()", metadata={"tags": ["summary"]}),
    ]
    lead_with_summary(notebook)
    assert [cell.source for cell in notebook.cells] == ["# Title", "answer()", "setup()", "train()"]


def test_the_forecast_answer_says_when_it_is_not_this_runs_model() -> None:
    from datetime import UTC, date, datetime
    from types import SimpleNamespace

    from stock_lstm.models.records import GateDecision
    from stock_lstm.pipeline.summaries import forecast_answer

    point = SimpleNamespace(date=date(2020, 1, 6), close=51.234, lower=49.5, upper=53.25)
    forecast = SimpleNamespace(
        predictions=[point, point],
        last_date=date(2020, 1, 2),
        last_close=51.0,
        interval_level=0.9,
        version_id="KO_1",
        combined_with=["har_range", "har_range"],
    )
    record = SimpleNamespace(ticker="KO", first_date="2010", last_date="2020")
    gate = GateDecision(status="failed", reason="validation rMAE 1.01 > 1.0")
    trained = SimpleNamespace(version_id="KO_2", metrics=SimpleNamespace(gate=gate))
    soon = datetime(2020, 1, 3, tzinfo=UTC)
    text = forecast_answer(forecast, record, trained, now=soon)
    assert text.startswith("KO on 2020-01-06: 51.23, 90% interval 49.50 to 53.25")
    assert "Not this run's model: this run trained KO_2" in text and "1.01 > 1.0" in text
    assert "averages the model's with HAR on the range (" in text and "days old" not in text
    same = SimpleNamespace(version_id="KO_1", metrics=SimpleNamespace(gate=gate))
    assert "It is the model this run trained." in forecast_answer(forecast, record, same, now=soon)
    later = datetime(2026, 12, 7, tzinfo=UTC)
    assert "The last close is 2,531 days old" in forecast_answer(forecast, record, now=later)


def test_the_sync_and_eda_answers_say_what_the_tables_below_show() -> None:
    from datetime import UTC, date, datetime
    from types import SimpleNamespace

    import numpy as np
    import pandas as pd

    from stock_lstm.evaluation import eda
    from stock_lstm.pipeline.summaries import eda_answer, sync_answer

    result = SimpleNamespace(
        ticker="KO", from_cache=False, downloaded_rows=2937, source="csv", incremental=False,
        dropped_rows=2, stale=False,
    )  # fmt: skip
    status = SimpleNamespace(rows=2937, first_date=date(2008, 1, 2), last_date=date(2019, 8, 30))
    text = sync_answer(result, status, now=datetime(2019, 9, 2, tzinfo=UTC))
    assert text == (
        "KO: 2,937 daily rows cached, 2008-01-02 to 2019-08-30; 2,937 rows written from csv. "
        "2 rows dropped (see below)."
    )
    returns = pd.Series(np.random.default_rng(0).standard_t(4, 3000) / 100)
    answer = eda_answer(
        eda.return_summary(returns),
        eda.autocorrelation(returns, 20, band="robust"),
        eda.autocorrelation(returns**2, 20),
        pd.DataFrame(),
    )
    assert re.match(
        r"3,000 daily log-returns: standard deviation 1\.\d\d%, excess kurtosis", answer
    )
    assert "fat tails" in answer and "of 20 return lags" in answer and "No calendar gaps" in answer


def test_tables_for_people_show_no_raw_python_values(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from stock_lstm.pipeline.notebook import readable

    assert readable(True) == "yes" and readable(False) == "no"
    assert readable(None) == readable({}) == readable([]) == readable("") == "–"
    stamp = datetime(2026, 12, 7, 6, 30, 11, 767531, tzinfo=UTC)
    assert readable(stamp) == "2026-12-07 06:30 UTC"
    assert readable(560518000.0) == "560,518,000" and readable(0.123456789) == "0.1235"
    assert readable(str(Path.cwd() / "reports" / "x.html")) == "reports/x.html"
    assert readable({"no close": 3}) == "no close: 3"


def test_a_failed_report_ends_at_the_failing_cell_and_says_so_first(tmp_path: Path) -> None:
    import nbformat

    notebook = nbformat.v4.new_notebook()
    summary = nbformat.v4.new_code_cell("answer()")
    summary.metadata["tags"] = ["summary"]
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_markdown_cell("## Training\n\nTrains the network."),
        nbformat.v4.new_code_cell(
            "train()",
            outputs=[
                nbformat.v4.new_output(
                    "error", ename="ValueError", evalue="too little data", traceback=[]
                )
            ],
        ),
        nbformat.v4.new_markdown_cell("## Loss curves\n\nThe dashed line is the best epoch."),
        nbformat.v4.new_code_cell("plot()"),
        summary,
    ]
    path = tmp_path / "03_train.ipynb"
    nbformat.write(notebook, path)
    page = render_html(path).read_text()
    stopped = page.index("The run stopped")
    assert page.index("Title") < stopped < page.index("Trains the network.")
    assert "ValueError: too little data" in page[stopped : stopped + 400]
    assert "Loss curves" not in page and "answer()" not in page


def test_report_tables_have_human_headers_rounded_numbers_and_dashes() -> None:
    import re

    import numpy as np
    import pandas as pd

    from stock_lstm.pipeline.notebook import for_reading, header, key_values

    assert header("dm_p_value") == "DM p-value" and header("first_target") == "first target"
    frame = pd.DataFrame(
        {
            "close": [49.370000123, 50.5],
            "volume": [560518000.0, 1000.0],
            "dm_p_value": [0.1, np.nan],
        },
        index=pd.Index([1, 5], name="horizon"),
    )
    cells = re.findall(r">([^<>]+)</t[dh]>", for_reading(frame, digits=2).to_html())
    assert {"close", "volume", "DM p-value", "49.37", "560,518,000", "0.10", "–"} <= set(cells)
    assert "nan" not in cells and "49.370000" not in " ".join(cells)
    shown = key_values({"drop_reasons": {}, "from_cache": True, "warning": None}, "KO").to_html()
    assert re.findall(r">([^<>]+)</t[dh]>", shown)[2:] == [
        "drop reasons",
        "–",
        "from cache",
        "yes",
        "warning",
        "–",
    ]
    assert "text-align: left" in shown
