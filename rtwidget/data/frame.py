"""The conversation as a pandas DataFrame: one row per item, in conversation order.

Events update the :class:`~rtwidget.protocol.Conversation` in O(1); the DataFrame is built on
demand and cached until the conversation changes. :data:`COLUMNS` lists every column with its
dtype and meaning (the README's table comes from it).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..protocol.audio import duration_ms
from ..protocol.conversation import Conversation
from ..protocol.errors import InvalidInput
from ..protocol.items import Item, Response
from ..protocol.turns import TurnTimes, role_of, since, starts_turn
from .cost import COST_COLUMNS, Basis, basis, price_usage, turn_costs
from .prices import Prices
from .prices import prices as price_table
from .usage import USAGE_COLUMNS, split_usage

UTC_TIME = "datetime64[us, UTC]"

COLUMNS: dict[str, tuple[str, str]] = {
    "item_id": ("string", "the item's id (the server's, or the one the client chose)"),
    "position": ("Int64", "0-based place in the conversation"),
    "response_id": ("string", "the response that produced the item (assistant items)"),
    "role": ("string", "user, assistant, system, or tool for function call outputs"),
    "type": ("string", "message, function_call, function_call_output, or an MCP item "
             "(mcp_list_tools, mcp_call, mcp_approval_request, mcp_approval_response)"),
    "status": ("string", "in_progress, completed, incomplete"),
    "text": ("string", "the text, or the audio transcript"),
    "audio_in_s": ("float64", "seconds of user audio"),
    "audio_out_s": ("float64", "seconds of assistant audio heard (truncation applied)"),
    "truncated_ms": ("Int64", "where the assistant audio was cut (barge-in), if it was"),
    "tool_name": ("string", "the function called"),
    "arguments": ("string", "the call's arguments, JSON text"),
    "output": ("string", "the function's output as sent to the model"),
    "error": ("string", "what went wrong: tool errors, failed transcription, a failed reply "
              "(the server's error)"),
    "tool_s": ("float64", "seconds the tool ran"),
    "tool_status": ("string", "function calls the session ran: running, done, failed or "
                    "cancelled"),
    "tool_progress": ("string", "the newest progress a running tool reported"),
    "created_at": (UTC_TIME, "when the item appeared"),
    "completed_at": (UTC_TIME, "when it was complete"),
    "ttft_s": ("float64", "response created → first text/transcript/arguments delta"),
    "ttfa_s": ("float64", "response created → first audio delta"),
    "speech_end_at": (UTC_TIME, "user rows: end of the turn — when the last sample of speech "
                      "was sent (by the server VAD's end), else when the text was sent"),
    "vad_s": ("float64", "user rows: speech end → the server's speech_stopped received"),
    "transcript_s": ("float64", "user rows: speech end → the transcript of it received"),
    "response_s": ("float64", "user rows: turn end → first delta of any reply to it"),
    "audio_s": ("float64", "user rows: turn end → first reply audio received in the kernel"),
    "played_s": ("float64", "user rows: turn end → first reply sample played in the browser"),
    "input_tokens": ("Int64", "the response's input tokens (on its first item only)"),
    "output_tokens": ("Int64", "the response's output tokens (on its first item only)"),
    "total_tokens": ("Int64", "the response's total tokens (on its first item only)"),
    # usage split by kind and what it cost (rtwidget.data.usage, rtwidget.data.cost)
    **USAGE_COLUMNS,
    **COST_COLUMNS,
    # who spoke, from a diarising transcriber's segments
    "speakers": ("string", "user rows: the speakers of a diarised transcript, in the order they "
                 "first spoke, comma-separated"),
    "segments": ("string", "user rows: the diarised transcript as JSON text, a list of "
                 "{speaker, start_ms, end_ms, text} (ms from the start of the item's audio; "
                 "segments_frame() gives one row each)"),
    "image": ("string", "user rows with images: each image's type, size in pixels and bytes "
              "(\"png 640x480, 23 kB\"; several joined by \"; \"); the text is the caption"),
    # MCP tools the provider runs (a "type": "mcp" tool in the session)
    "mcp_server": ("string", "MCP rows (mcp_list_tools, mcp_call, mcp_approval_request): the "
                   "server's label; text holds a listing's tool names or an approval's answer"),
}
_CALLS = ("function_call", "mcp_call", "mcp_approval_request")

EVENT_COLUMNS: dict[str, tuple[str, str]] = {
    "direction": ("string", "in (server → client), out, or local (noted by the client: tool "
                  "results, playback starts, reconnects)"),
    "type": ("string", "the event type"),
    "at": (UTC_TIME, "when it was sent or received"),
    "size": ("Int64", "bytes on the wire"),
    "payload": ("object", "the event, audio replaced by its byte count"),
}

def _seconds(start: float | None, end: float | None) -> float:
    seconds = since(start, end)
    return np.nan if seconds is None else seconds


def _row(position: int, item: Item, response: Response | None, first_of_response: bool,
         call: Item | None, tool: Mapping[str, Any] | None, pricing: Basis) -> list[Any]:
    role = role_of(item)
    audio_out = duration_ms(item.audio_out_bytes) / 1000.0
    if item.truncated_ms is not None:
        audio_out = min(audio_out, item.truncated_ms / 1000.0)
    error = item.error
    if error is None and call is not None:
        error = call.error
    usage = response.usage if response is not None and first_of_response else {}
    seconds = tool.get("seconds") if tool is not None else None
    return [
        item.id,
        position,
        item.response_id,
        role,
        item.type,
        item.status,
        item.display_text if item.type in ("message", "mcp_approval_response") else
        ", ".join(item.tools) if item.tools is not None else None,
        item.audio_in_seconds,
        audio_out,
        item.truncated_ms,
        item.name if item.type in _CALLS else (call.name if call else None),
        item.arguments if item.type in _CALLS else None,
        item.output,
        error,
        float(seconds) if isinstance(seconds, (int, float)) else np.nan,
        tool.get("status") if tool is not None and item.type == "function_call" else None,
        _progress(tool) if tool is not None and item.type == "function_call" else None,
        item.created_at,
        item.completed_at,
        _seconds(response.created_at, response.first_text_at)
        if response is not None and first_of_response else np.nan,
        _seconds(response.created_at, response.first_audio_at)
        if response is not None and first_of_response else np.nan,
        None, np.nan, np.nan, np.nan, np.nan, np.nan,  # the turn's latency, filled in later
        usage.get("input_tokens"),
        usage.get("output_tokens"),
        usage.get("total_tokens"),
        *_priced(response.usage if response is not None and first_of_response else None,
                 pricing),
        ", ".join(item.speakers) if item.segments else None,
        json.dumps([s.as_dict() for s in item.segments]) if item.segments else None,
        "; ".join(i.label for i in item.images) if item.images else None,
        item.server_label,
    ]


def _progress(tool: Mapping[str, Any]) -> str | None:
    """``"downloading 40%"``: a tool's newest progress message and fraction."""
    message = str(tool.get("message") or "")
    fraction = tool.get("fraction")
    if isinstance(fraction, (int, float)):
        message = f"{message} {fraction:.0%}".strip()
    return message or None


def _priced(usage: Mapping[str, Any] | None, pricing: Basis) -> list[Any]:
    """A response's split usage, its cost and the cost's basis (all empty off its first row;
    the turn's cost is filled in later)."""
    if usage is None:
        return [None] * len(USAGE_COLUMNS) + [np.nan, np.nan, None]
    split = split_usage(usage)
    cost, note = price_usage(split, pricing)
    return [*split.values(), np.nan if cost is None else cost, np.nan, note]


_TURN_AT = list(COLUMNS).index("speech_end_at")


def _fill_turn(row: list[Any], user: Item, turn: TurnTimes) -> None:
    end = user.turn_ended_at
    spoken = user.speech_stopped_at is not None
    row[_TURN_AT:_TURN_AT + 6] = [
        end,
        _seconds(end, user.speech_stopped_at) if spoken else np.nan,
        _seconds(end, user.transcript_done_at) if spoken else np.nan,
        _seconds(end, turn.response),
        _seconds(end, turn.audio),
        _seconds(end, turn.played),
    ]


def _typed(rows: list[Any], columns: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(rows, columns=list(columns))
    return coerce(df, columns)


def coerce(df: pd.DataFrame, columns: Mapping[str, tuple[str, str]] = COLUMNS) -> pd.DataFrame:
    """Give ``df`` the documented dtypes (used after loading an export too)."""
    out = df.copy() if not df.empty else pd.DataFrame({c: [] for c in columns})
    for name, (dtype, _) in columns.items():
        if name not in out:
            out[name] = None
        col = out[name]
        if dtype == UTC_TIME:
            if pd.api.types.is_numeric_dtype(col):
                stamps = pd.to_datetime(col, unit="s", utc=True)
            else:
                stamps = pd.to_datetime(col, utc=True, format="ISO8601")
            out[name] = stamps.astype(pd.api.types.pandas_dtype(UTC_TIME))
        elif dtype == "object":
            out[name] = col.astype(object)
        else:
            if dtype == "Int64":
                col = pd.to_numeric(col, errors="coerce")
            out[name] = col.astype(pd.api.types.pandas_dtype(dtype))
    return out[list(columns)]


def conversation_frame(conversation: Conversation, include_deleted: bool = False,
                       provider: str | None = None, model: str | None = None,
                       prices: Prices | None = None) -> pd.DataFrame:
    """The conversation as a DataFrame with the :data:`COLUMNS` (see the module docstring).

    A user message and the items after it, up to the next user message, are one turn; the
    user's row carries the turn's latency, each stage timed from the end of the user's turn.
    Responses are priced for ``provider``'s ``model`` (by default the model the server named
    in ``session.created``) with ``prices`` (``rt.prices``); both are kept in ``df.attrs``.
    """
    model = model or str(conversation.session.get("model") or "") or None
    pricing = basis(provider, model, prices)
    items = conversation.all_items() if include_deleted else list(conversation)
    seen_responses: set[str] = set()
    rows: list[list[Any]] = []
    turn_row: list[Any] | None = None
    user: Item | None = None
    turn = TurnTimes()
    for position, item in enumerate(items):
        response = conversation.responses.get(item.response_id) if item.response_id else None
        first = response is not None and response.id not in seen_responses
        if response is not None:
            seen_responses.add(response.id)
        call = conversation.by_call_id(item.call_id) if item.call_id and \
            item.type == "function_call_output" else None
        tool = conversation.tool_outcomes.get(item.call_id) if item.call_id else None
        row = _row(position, item, response, first, call, tool, pricing)
        rows.append(row)
        if starts_turn(item):
            if turn_row is not None and user is not None:
                _fill_turn(turn_row, user, turn)
            turn_row, user, turn = row, item, TurnTimes()
        elif user is not None:
            turn.saw(item, response)
    if turn_row is not None and user is not None:
        _fill_turn(turn_row, user, turn)
    df = _typed(rows, COLUMNS)
    df["turn_cost_usd"] = turn_costs(df)
    df.attrs.update(provider=provider, model=pricing.model)
    return df


SEGMENT_COLUMNS: dict[str, tuple[str, str]] = {
    "item_id": ("string", "the user item the segment belongs to"),
    "position": ("Int64", "the item's place in the conversation"),
    "speaker": ("string", "the transcriber's label for who spoke"),
    "start_ms": ("Int64", "where the segment starts, ms from the start of the item's audio"),
    "end_ms": ("Int64", "where it ends"),
    "text": ("string", "what was said"),
}


def segments_frame(conversation: Conversation) -> pd.DataFrame:
    """One row per diarised segment of the user's audio (:data:`SEGMENT_COLUMNS`), in
    conversation order: who said what, and when, across the whole talk."""
    rows = [(item.id, position, s.speaker, s.start_ms, s.end_ms, s.text)
            for position, item in enumerate(conversation) for s in item.segments]
    return _typed(rows, SEGMENT_COLUMNS)


def events_frame(conversation: Conversation) -> pd.DataFrame:
    """The event log as a DataFrame (:data:`EVENT_COLUMNS`); audio is summarised, not kept."""
    rows = [(e.direction, e.type, e.at, e.size, e.payload) for e in conversation.log]
    return _typed(rows, EVENT_COLUMNS)


class FrameCache:
    """Builds the DataFrame only when the conversation changed since the last build."""

    def __init__(self, conversation: Conversation,
                 provider: Callable[[], str | None] | None = None) -> None:
        self.conversation = conversation
        self.provider = provider or (lambda: None)
        self._version: tuple[int, int] = (-1, -1)
        self._frame: pd.DataFrame | None = None
        self._lock = threading.Lock()
        self.builds = 0

    def get(self) -> pd.DataFrame:
        """The current DataFrame (a copy, safe to modify)."""
        with self._lock:
            version = (self.conversation.version, price_table.version)
            if self._frame is None or version != self._version:
                self._frame = conversation_frame(self.conversation, provider=self.provider())
                self._version = version
                self.builds += 1
            return self._frame.copy()


def export(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a conversation DataFrame to ``.parquet`` or ``.json`` (JSON Lines for ``.jsonl``)."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".parquet":
        df.to_parquet(target, index=False)
    elif suffix in (".json", ".jsonl"):
        df.to_json(target, orient="records", date_format="iso", lines=suffix == ".jsonl",
                   date_unit="us")
    else:
        raise InvalidInput(f"export to .parquet, .json or .jsonl, not {suffix or 'no suffix'!r}")
    return target


def load_conversation(path: str | Path) -> pd.DataFrame:
    """Read back a conversation written by :func:`export`, with the documented dtypes."""
    source = Path(path)
    suffix = source.suffix.lower()
    if suffix == ".parquet":
        df = pd.read_parquet(source)
    elif suffix in (".json", ".jsonl"):
        records = [json.loads(line) for line in source.read_text().splitlines() if line.strip()] \
            if suffix == ".jsonl" else json.loads(source.read_text() or "[]")
        df = pd.DataFrame.from_records(records)
    else:
        raise InvalidInput(f"load a .parquet, .json or .jsonl file, not {suffix!r}")
    return coerce(df, COLUMNS)


READABLE = ("role", "text", "tool_name", "error", "response_s", "played_s")
"""The columns a person reads as the talk goes on: who, what was said, the tool called and
what went wrong, and how long after the end of the turn the reply began and was heard."""


class LiveView:
    """A DataFrame display that redraws in place as the conversation changes, at most
    ``max_rate`` times a second however fast events arrive. Call :meth:`stop` to freeze it.
    ``columns`` are :data:`READABLE` by default, ``"all"`` for every column, or a list."""

    def __init__(self, frames: FrameCache, subscribe: Callable[[Callable[[Any], None]],
                 Callable[[], None]], rows: int = 20, max_rate: float = 4.0,
                 display: Callable[..., Any] | None = None,
                 columns: Sequence[str] | str | None = None) -> None:
        from IPython.display import display as ipy_display

        self.frames = frames
        self.rows = rows
        self.columns = (list(COLUMNS) if columns == "all" else
                        list(READABLE) if columns is None else
                        [columns] if isinstance(columns, str) else list(columns))
        unknown = [c for c in self.columns if c not in COLUMNS]
        if unknown:
            raise InvalidInput(f"no such column: {', '.join(unknown)}; see rtwidget.COLUMNS")
        self.interval = 1.0 / max_rate
        self.redraws = 0
        self._last = 0.0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        show = display or ipy_display
        self._handle = show(self._view(), display_id=True)
        self._off = subscribe(self._changed)

    def _view(self) -> pd.DataFrame:
        return self.frames.get()[self.columns].tail(self.rows)

    def _changed(self, _: Any = None) -> None:
        with self._lock:
            if self._timer is not None:
                return
            wait = max(0.0, self._last + self.interval - time.monotonic())
            self._timer = threading.Timer(wait, self._redraw)
            self._timer.name, self._timer.daemon = "rtwidget-live-view", True
            self._timer.start()

    def _redraw(self) -> None:
        with self._lock:
            self._timer = None
            self._last = time.monotonic()
        self.redraws += 1
        if self._handle is not None:
            self._handle.update(self._view())

    def stop(self) -> None:
        """Stop redrawing (the last state stays on screen)."""
        self._off()
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
