"""Metadata a person reads in the UI: tables as tables, floats rounded, no NaN shown as a number.

Every asset builds its metadata through these, whichever driver materialized it (a live
partition run or the history run recording the batch driver's days).
"""

from __future__ import annotations

import math
from numbers import Real

import dagster as dg
import numpy as np
import pandas as pd

#: Decimal places of every float the UI shows.
PLACES = 4


def rounded(value) -> float | None:
    """A float rounded to PLACES, None for a missing or non-finite value."""
    if value is None:
        return None
    value = float(value)
    return round(value, PLACES) if math.isfinite(value) else None


def numbers(values: dict) -> dict:
    """Numeric entries rounded; missing ones left out (Dagster plots numeric metadata over partitions)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, (bool, np.bool_)):
            out[key] = bool(value)
        elif isinstance(value, (int, np.integer)):
            out[key] = int(value)
        elif isinstance(value, (Real, np.floating)):
            if (number := rounded(value)) is not None:
                out[key] = number
        elif value is not None:
            out[key] = value
    return out


def _column_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return "string"


def _cell(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return round(float(value), PLACES)
    if isinstance(value, pd.Timestamp):
        return str(value.date()) if value == value.normalize() else str(value)
    return value if isinstance(value, (int, str)) else str(value)


def table(frame: pd.DataFrame | None, columns: list[str] | None = None) -> dg.MetadataValue:
    """A frame as a Dagster table (typed columns, rounded floats); an empty frame is an empty table."""
    frame = pd.DataFrame() if frame is None else frame
    if columns is not None:
        frame = frame.reindex(columns=columns)
    schema = dg.TableSchema(columns=[dg.TableColumn(str(c), _column_type(frame[c])) for c in frame.columns])
    records = [dg.TableRecord({str(k): _cell(v) for k, v in row.items()})
               for row in frame.to_dict(orient="records")]
    return dg.MetadataValue.table(records, schema=schema)


def counts(series: pd.Series | None, label: str, count: str = "rows") -> dg.MetadataValue:
    """Value counts as a two-column table, most frequent first."""
    if series is None or not len(series):
        return table(pd.DataFrame({label: pd.Series(dtype=str), count: pd.Series(dtype=int)}))
    frame = series.value_counts().rename_axis(label).reset_index(name=count)
    frame[label] = frame[label].astype(str)
    return table(frame)
