"""Tool return values as the text a model reads: JSON where it fits, summaries where the value is
big (arrays, DataFrames), never an unbounded dump: at most ``MAX_NODES`` values of a nested
structure are looked at, so a huge one costs no more than a small one."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import itertools
import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

MAX_CHARS = 16_000
MAX_ITEMS = 50
HEAD_ROWS = 5
MAX_NODES = 20_000  # values looked at in one result; the text is cut at MAX_CHARS anyway


def _number(value: float) -> Any:
    return value if math.isfinite(value) else str(value)


def _array(arr: np.ndarray[Any, Any]) -> Any:
    if arr.size <= MAX_ITEMS and arr.ndim <= 2:
        return to_jsonable(arr.tolist())
    summary: dict[str, Any] = {"type": "ndarray", "shape": list(arr.shape),
                               "dtype": str(arr.dtype)}
    if arr.size and np.issubdtype(arr.dtype, np.number):
        finite = arr[np.isfinite(arr)] if np.issubdtype(arr.dtype, np.floating) else arr
        if finite.size:
            summary.update(min=_number(float(finite.min())), max=_number(float(finite.max())),
                           mean=_number(float(finite.mean())))
    summary["head"] = to_jsonable(arr.reshape(-1)[:10].tolist())
    return summary


def _frame(df: pd.DataFrame) -> Any:
    head = df.head(HEAD_ROWS)
    records = json.loads(head.to_json(orient="records", date_format="iso", default_handler=str))
    if len(df) <= HEAD_ROWS and len(df.columns) <= 20:
        return records
    return {"type": "DataFrame", "rows": len(df), "columns": [str(c) for c in df.columns][:50],
            "dtypes": {str(c): str(t) for c, t in list(df.dtypes.items())[:50]},
            "head": records}


def _series(s: pd.Series[Any]) -> Any:
    if len(s) <= MAX_ITEMS:
        return to_jsonable(s.to_dict())
    out: dict[str, Any] = {"type": "Series", "name": str(s.name), "length": len(s),
                           "dtype": str(s.dtype),
                           "head": to_jsonable(s.head(HEAD_ROWS).to_dict())}
    if pd.api.types.is_numeric_dtype(s):
        out["describe"] = to_jsonable(s.describe().to_dict())
    return out


def to_jsonable(value: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
    """A JSON-compatible version of ``value`` (summarising large arrays and frames; past
    ``MAX_NODES`` values, the rest of each container is counted, not converted)."""
    budget = [MAX_NODES] if budget is None else budget
    budget[0] -= 1
    if depth > 20:
        return repr(value)[:200]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return to_jsonable(fields, depth + 1, budget)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, depth + 1, budget)
    if isinstance(value, np.generic):
        return to_jsonable(value.item(), depth + 1, budget)
    if isinstance(value, np.ndarray):
        return _array(value)
    if isinstance(value, pd.DataFrame):
        return _frame(value)
    if isinstance(value, pd.Series):
        return _series(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, (dt.timedelta, pd.Timedelta)):
        return value.total_seconds()
    if isinstance(value, (PurePath, complex)):
        return str(value)
    if isinstance(value, bytes):
        return {"type": "bytes", "length": len(value)}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in itertools.islice(value.items(), MAX_ITEMS * 4):
            if budget[0] <= 0:
                break
            out[str(k)] = to_jsonable(v, depth + 1, budget)
        if len(value) > len(out):
            out["..."] = f"{len(value) - len(out)} more keys"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        out_list = []
        for v in itertools.islice(value, MAX_ITEMS * 4):
            if budget[0] <= 0:
                break
            out_list.append(to_jsonable(v, depth + 1, budget))
        if len(value) > len(out_list):
            out_list.append(f"... {len(value) - len(out_list)} more")
        return out_list
    return repr(value)[:2000]


def serialise_result(value: Any, limit: int = MAX_CHARS) -> str:
    """The ``function_call_output`` text for a tool's return value: strings as they are,
    everything else as compact JSON, cut to ``limit`` characters with a note saying so."""
    text = value if isinstance(value, str) else json.dumps(
        to_jsonable(value), ensure_ascii=False, separators=(",", ":"))
    if len(text) > limit:
        text = text[:limit] + f"... [cut: {len(text) - limit} more characters]"
    return text


def error_result(kind: str, message: str) -> str:
    """The ``function_call_output`` text for a failed call, so the model can tell the user."""
    return json.dumps({"error": message, "error_type": kind}, ensure_ascii=False)
