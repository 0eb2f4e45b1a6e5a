"""One source grammar (``stock_lstm.source_spec``) for the settings, the source factory and
the cluster: they used to disagree on case ("CSV:dir" passed the factory, failed the
settings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stock_lstm.cluster import shared_source
from stock_lstm.config import Settings
from stock_lstm.data.sources import CsvSource, YahooSource, source_from_spec
from stock_lstm.errors import InvalidParameterError
from stock_lstm.source_spec import SourceSpec, parse_source


@pytest.mark.parametrize("spec", ["yahoo", "YAHOO", " yahoo "])
def test_yahoo_in_any_case(spec: str) -> None:
    assert parse_source(spec) == SourceSpec() and str(parse_source(spec)) == "yahoo"
    assert isinstance(source_from_spec(spec), YahooSource)


@pytest.mark.parametrize("prefix", ["csv:", "CSV:", "Csv: "])
def test_a_csv_folder_is_read_the_same_everywhere(prefix: str, tmp_path: Path) -> None:
    spec = f"{prefix}{tmp_path}"
    assert parse_source(spec).folder == tmp_path
    assert Settings(source=spec).source == spec  # the settings accept what the factory does
    source = source_from_spec(spec)
    assert isinstance(source, CsvSource) and source.directory == tmp_path
    assert shared_source(spec, None) == f"csv:{tmp_path}"


@pytest.mark.parametrize("spec", ["", "csv:", "csv:   ", "ftp:somewhere", "yahoo2"])
def test_the_same_refusal_from_the_settings_and_the_factory(spec: str) -> None:
    with pytest.raises(ValueError, match="is not recognised: use 'yahoo' or 'csv:DIR'"):
        parse_source(spec)
    with pytest.raises(InvalidParameterError, match="is not recognised"):
        source_from_spec(spec)
    with pytest.raises(ValidationError, match="is not recognised"):
        Settings(source=spec)
