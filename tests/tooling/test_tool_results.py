"""Tool return values as text for the model."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pandas as pd
from pydantic import BaseModel

from rtwidget.tooling.results import error_result, serialise_result


@dataclasses.dataclass
class Reading:
    sensor: str
    value: float


class Forecast(BaseModel):
    city: str
    days: list[int]


def test_strings_pass_through_and_structures_become_json() -> None:
    assert serialise_result("plain words") == "plain words"
    assert json.loads(serialise_result({"a": [1, 2], "b": None})) == {"a": [1, 2], "b": None}
    assert json.loads(serialise_result(Reading("t1", 2.5))) == {"sensor": "t1", "value": 2.5}
    assert json.loads(serialise_result(Forecast(city="Oslo", days=[1]))) == {
        "city": "Oslo", "days": [1]}
    assert serialise_result(None) == "null"
    assert json.loads(serialise_result(dt.date(2026, 1, 2))) == "2026-01-02"


def test_numpy_scalars_and_small_arrays_are_plain_numbers() -> None:
    assert serialise_result(np.float32(1.5)) == "1.5"
    assert serialise_result(np.int64(7)) == "7"
    assert json.loads(serialise_result(np.arange(4))) == [0, 1, 2, 3]
    assert json.loads(serialise_result(float("nan"))) == "nan"


def test_big_arrays_and_frames_are_summarised_not_dumped() -> None:
    big = json.loads(serialise_result(np.arange(1_000_000, dtype=np.float64)))
    assert big["shape"] == [1_000_000] and big["max"] == 999_999 and len(big["head"]) == 10
    df = pd.DataFrame({"x": range(10_000), "when": pd.date_range("2026-01-01", periods=10_000,
                                                                  freq="min")})
    text = serialise_result(df)
    summary = json.loads(text)
    assert summary["rows"] == 10_000 and summary["columns"] == ["x", "when"]
    assert len(summary["head"]) == 5 and len(text) < 1000
    series = json.loads(serialise_result(pd.Series(range(500), name="n")))
    assert series["length"] == 500 and series["describe"]["max"] == 499


def test_long_output_is_cut_with_a_note() -> None:
    text = serialise_result("x" * 50_000, limit=1000)
    assert len(text) < 1100 and text.endswith("[cut: 49000 more characters]")


def test_error_results_name_the_kind() -> None:
    assert json.loads(error_result("timeout", "too slow")) == {"error": "too slow",
                                                               "error_type": "timeout"}
