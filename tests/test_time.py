"""The one time rule (battleground._time) and that every surface reads the same input as the same instant."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from battleground._time import TimeInputError, parse_instant
from battleground.errors import BattlegroundError

KST = dt.timezone(dt.timedelta(hours=9))


def test_aware_values_become_naive_utc_and_naive_values_are_utc() -> None:
    want = dt.datetime(2022, 3, 1, 3, 0)
    assert parse_instant("2022-03-01T12:00+09:00", "start") == want
    assert parse_instant(dt.datetime(2022, 3, 1, 12, 0, tzinfo=KST), "start") == want
    assert parse_instant(pd.Timestamp("2022-03-01T12:00", tz="Asia/Seoul"), "start") == want
    assert parse_instant("2022-03-01T03:00", "start") == want
    assert parse_instant(dt.datetime(2022, 3, 1, 3, 0), "start") == want
    assert parse_instant(pd.Timestamp("2022-03-01T03:00"), "start") == want
    assert parse_instant(None, "start") is None


def test_a_bare_date_is_midnight_but_through_the_day_as_an_end_bound() -> None:
    for value in ("2022-03-01", " 2022-03-01 ", dt.date(2022, 3, 1)):
        assert parse_instant(value, "start") == dt.datetime(2022, 3, 1)
        assert parse_instant(value, "end", end=True) == dt.datetime(2022, 3, 2)
    # A datetime (even at midnight) is an instant, never widened.
    assert parse_instant("2022-03-01T00:00", "end", end=True) == dt.datetime(2022, 3, 1)
    assert parse_instant(dt.datetime(2022, 3, 1), "end", end=True) == dt.datetime(2022, 3, 1)


@pytest.mark.parametrize("value", ["yesterday", "2022-13-01", "2022-03-01T25:00", "", 20220301, 1.5])
def test_bad_values_name_the_field_the_value_and_the_fix(value: object) -> None:
    with pytest.raises(TimeInputError) as info:
        parse_instant(value, "start_dt")
    assert isinstance(info.value, BattlegroundError) and isinstance(info.value, ValueError)
    assert info.value.field == "start_dt"
    assert str(info.value).startswith("start_dt must be") and repr(value) in str(info.value)


@pytest.mark.parametrize("value", ["9999-12-31", dt.date.max, dt.datetime.max, "1899-12-31", "0001-01-01T00:00+01:00"])
def test_far_future_and_far_past_values_are_a_clear_error_not_an_overflow(value: object) -> None:
    with pytest.raises(TimeInputError, match="end must be a year between 1900 and 9998"):
        parse_instant(value, "end", end=True)
    assert parse_instant("9998-12-31", "end", end=True) == dt.datetime(9999, 1, 1)


# ------------------------------------------------------------------ every surface, the same instant
SAME = [
    ("2022-03-01T12:00+09:00", dt.datetime(2022, 3, 1, 3, 0)),
    ("2022-03-01T03:00", dt.datetime(2022, 3, 1, 3, 0)),
]


@pytest.mark.parametrize(("value", "want"), SAME)
def test_registry_reads_the_same_instant(tmp_path: Path, value: str, want: dt.datetime) -> None:
    from battleground.experiment.register import Registry, RegistryError

    registry = Registry(tmp_path)
    assert registry.create_experiment("t", start_at=value).start_at == want
    with pytest.raises(RegistryError, match="start_at must be an ISO date"):
        registry.create_experiment("u", start_at="soon")


@pytest.mark.parametrize(("value", "want"), [*SAME, ("2022-03-01", dt.datetime(2022, 3, 2))])
def test_monitor_reads_the_same_instant(value: str, want: dt.datetime) -> None:
    from battleground.experiment.monitoring import _to_datetime
    from battleground.stats import StatsInputError

    assert _to_datetime(value, "end_dt", end=True) == want
    with pytest.raises(StatsInputError, match="end_dt must be an ISO date"):
        _to_datetime("soon", "end_dt", end=True)


@pytest.mark.parametrize(("value", "want"), [*SAME, ("2022-03-01", dt.datetime(2022, 3, 2))])
def test_web_window_reads_the_same_instant(value: str, want: dt.datetime) -> None:
    from battleground.web._views import WindowError, parse_window

    assert parse_window(None, value) == (None, want)
    assert parse_window("", " ") == (None, None)
    with pytest.raises(WindowError) as info:
        parse_window("soon", None)
    assert info.value.field == "start" and isinstance(info.value, TimeInputError)


def test_the_cli_window_reaches_the_monitor_rule(tmp_path: Path) -> None:
    """`battleground experiment results --end 2022-03-01` hands the string to Monitor, whose rule it is."""
    from typer.testing import CliRunner

    from battleground.cli import app
    from battleground.experiment.register import Registry
    from battleground.settings import Settings

    env = {"BATTLEGROUND_HOME": str(tmp_path), "BATTLEGROUND_DATABASE_URL": "", "COLUMNS": "200"}
    Registry(Settings.from_env(env)).create_experiment("cli-window")
    result = CliRunner().invoke(app, ["experiment", "status", "cli-window", "--end", "9999-12-31"], env=env)
    assert result.exit_code != 0
    assert "end_dt must be a year between 1900 and 9998, got '9999-12-31'" in result.output
