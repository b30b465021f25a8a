"""Where each turn's time goes: a per-turn table and a stacked-bar chart.

Every stage is timed from the end of the user's turn (``speech_end_at``: the moment the last
sample of their speech left the client, or a typed message was sent) and they follow each
other: the server's VAD noticing the end, the transcript arriving, the first delta of the
reply, its first audio reaching the kernel, the browser playing it — then the device's own
output latency, as the browser reports it (measure the whole round trip with the widget's
latency probe).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

STAGES: tuple[tuple[str, str, str], ...] = (
    ("vad_ms", "vad_s", "VAD noticed the end"),
    ("transcript_ms", "transcript_s", "transcript"),
    ("reply_ms", "response_s", "first reply delta"),
    ("audio_ms", "audio_s", "first audio in the kernel"),
    ("playback_ms", "played_s", "playing in the browser"),
)
"""(column, DataFrame column it comes from, what it means)."""


def _na(value: Any) -> bool:
    return bool(pd.isna(value))


def _frame(source: Any) -> pd.DataFrame:
    return source if isinstance(source, pd.DataFrame) else source.df


def _device_ms(source: Any) -> float | None:
    latency = getattr(source, "latency", None)
    if callable(latency):
        value = latency().get("device_out_ms")
        if isinstance(value, float) and math.isfinite(value):
            return value
    return None


def turn_latency(source: Any, device_out_ms: float | None = None) -> pd.DataFrame:
    """One row per user turn: its ``kind`` (``spoken``: streamed audio the server's VAD cut;
    ``audio item``: a pre-recorded audio message; ``typed``), what the user said and, in ms,
    how long each stage added (see :data:`STAGES`; a stage that did not happen, or came before
    the one it follows, adds 0),
    the device's output latency and the ``total_ms`` until the reply could be heard.

    ``source`` is a conversation DataFrame or anything with ``df`` (a session, the widget, a
    recording, a replay); from the widget, ``device_out_ms`` defaults to what the browser
    reports."""
    df = _frame(source)
    if device_out_ms is None:
        device_out_ms = _device_ms(source)
    turns = df[(df["role"] == "user") & (df["type"] == "message")]
    rows = []
    for row in turns.itertuples(index=False):
        audio_in = 0.0 if _na(row.audio_in_s) else float(row.audio_in_s)  # type: ignore[arg-type]
        kind = "spoken" if not _na(row.vad_s) else "audio item" if audio_in > 0 else "typed"
        out: dict[str, Any] = {"position": row.position, "kind": kind,
                               "text": row.text, "speech_end_at": row.speech_end_at}
        reached = 0.0
        for column, source_column, _ in STAGES:
            seconds = getattr(row, source_column)
            if _na(seconds):
                out[column] = np.nan
                continue
            out[column] = max(0.0, seconds * 1000 - reached)
            reached = max(reached, seconds * 1000)
        heard = not _na(row.played_s)
        out["device_ms"] = device_out_ms if heard and device_out_ms is not None else np.nan
        device = 0.0 if _na(out["device_ms"]) else out["device_ms"]
        out["total_ms"] = reached + device if reached else np.nan
        rows.append(out)
    columns = ["position", "kind", "text", "speech_end_at", *(s[0] for s in STAGES),
               "device_ms", "total_ms"]
    return pd.DataFrame(rows, columns=columns).astype(
        {c: "float64" for c in columns[4:]} | {"position": "Int64"})


def plot_latency(source: Any, ax: Any = None, device_out_ms: float | None = None) -> Any:
    """A stacked horizontal bar per user turn showing where its time went (matplotlib);
    returns the Axes. ``source`` as for :func:`turn_latency`."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib comes with rtwidget[lab]
        raise ImportError("plot_latency draws with matplotlib: pip install matplotlib") from exc
    table = turn_latency(source, device_out_ms)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, max(2.5, 0.8 + 0.5 * len(table))))
    labels = [f"{int(p)}: {str(t or '')[:32]}"
              for p, t in zip(table["position"], table["text"], strict=True)]
    left = np.zeros(len(table))
    segments = [*STAGES, ("device_ms", "", "device output")]
    colours = plt.get_cmap("viridis")(np.linspace(0.1, 0.9, len(segments)))
    for (column, _, meaning), colour in zip(segments, colours, strict=True):
        width = table[column].fillna(0.0).to_numpy()
        if not width.any():
            continue
        ax.barh(labels, width, left=left, label=meaning, color=colour)
        left += width
    ax.invert_yaxis()
    ax.set_xlabel("ms after the end of the user's turn")
    ax.set_title("Where each turn's time went")
    if len(table):
        # beside the bars, not over them (the notebook's inline figures keep what is outside)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                  frameon=False)
    return ax
