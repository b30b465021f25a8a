"""Spans and histograms with OpenTelemetry, from a conversation's :mod:`.timeline`.

A session span holds one span per turn (its stages — ``vad``, ``transcription``,
``response``, ``first_audio``, ``first_played`` — each from the end of the user's turn, one
``chat`` span per model response and one ``execute_tool`` span per tool call) and one span per
reconnect. GenAI semantic-convention names are used where they fit; the rest are ``rtwidget.*``
(see ``docs/cost-and-telemetry.md``). The OpenTelemetry API is imported here only, so
``import rtwidget`` works without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ..data.cost import basis, price_usage
from ..data.usage import split_usage
from ..protocol.conversation import Conversation
from .timeline import ConnectionGap, Turn, reconnects, span_of_session, turns

SCOPE = "rtwidget"


def ns(seconds: float) -> int:
    """Unix seconds as the nanoseconds OpenTelemetry takes."""
    return round(seconds * 1e9)


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


class Emitter:
    """Writes one conversation's spans and metrics to a tracer and meter provider (the global
    ones when ``None``); ``provider`` and ``model`` name what it ran on, ``transport`` how."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None, *,
                 provider: str | None = None, model: str | None = None,
                 transport: str = "websocket") -> None:
        self.tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(SCOPE)
        self.stage_hist = meter.create_histogram(
            "rtwidget.turn.stage.duration", unit="s",
            description="From the end of the user's turn to each stage of the reply")
        self.op_hist = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s",
            description="GenAI operation duration (one model response)")
        self.token_hist = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}",
            description="Input and output tokens per model response")
        self.cost_hist = meter.create_histogram(
            "rtwidget.response.cost", unit="USD", description="What each response cost")
        self.provider, self.model, self.transport = provider, model, transport
        self.session_span: Span | None = None

    def common(self) -> dict[str, Any]:
        """The attributes every span and metric carries."""
        return _clean({"gen_ai.provider.name": self.provider, "gen_ai.system": self.provider,
                       "gen_ai.request.model": self.model, "rtwidget.provider": self.provider,
                       "rtwidget.model": self.model, "rtwidget.transport": self.transport})

    # --- the session ---------------------------------------------------------------------

    def open_session(self, conversation: Conversation, start: float) -> Span:
        """Start the session span (ended by :meth:`close_session`)."""
        self.model = self.model or str(conversation.session.get("model") or "") or None
        self.session_span = self.tracer.start_span(
            "rtwidget.session", start_time=ns(start), kind=SpanKind.CLIENT,
            attributes=_clean({**self.common(),
                               "gen_ai.conversation.id": conversation.session_id}))
        return self.session_span

    def close_session(self, conversation: Conversation, end: float) -> None:
        span = self.session_span
        if span is None:
            return
        done = turns(conversation)
        span.set_attribute("rtwidget.turns", len(done))
        span.set_attribute("rtwidget.errors", len(conversation.errors))
        span.end(end_time=ns(end))
        self.session_span = None

    def _ctx(self, parent: Span | None) -> Any:
        return trace.set_span_in_context(parent) if parent is not None else \
            otel_context.Context()

    # --- one turn --------------------------------------------------------------------------

    def turn(self, turn: Turn) -> None:
        """Emit one finished turn, its children and its metrics."""
        base = self.common()
        span = self.tracer.start_span(
            "rtwidget.turn", context=self._ctx(self.session_span), start_time=ns(turn.start),
            attributes=_clean({**base, "rtwidget.turn.index": turn.index,
                               "rtwidget.turn.item_id": turn.user.id,
                               "rtwidget.turn.kind": "spoken" if turn.user.speech_stopped_at
                               is not None else "typed",
                               "rtwidget.barge_in": turn.heard_ms is not None,
                               "rtwidget.heard_ms": turn.heard_ms}))
        ctx = trace.set_span_in_context(span)
        for stage in turn.stages:
            child = self.tracer.start_span(f"rtwidget.stage.{stage.name}", context=ctx,
                                           start_time=ns(stage.start),
                                           attributes={**base, "rtwidget.stage": stage.name})
            child.end(end_time=ns(stage.end))
            self.stage_hist.record((ns(stage.end) - ns(stage.start)) / 1e9,
                                   {**base, "rtwidget.stage": stage.name})
        total = 0.0
        priced = bool(turn.responses)
        for response in turn.responses:
            usd = self._response(response, ctx, base)
            if usd is None:
                priced = False
            else:
                total += usd
        for run in turn.tools:
            tool = self.tracer.start_span(
                f"execute_tool {run.item.name}", context=ctx, start_time=ns(run.start),
                attributes=_clean({**base, "gen_ai.operation.name": "execute_tool",
                                   "gen_ai.tool.name": run.item.name,
                                   "gen_ai.tool.call.id": run.item.call_id}))
            if run.error:
                tool.set_status(Status(StatusCode.ERROR, run.error[:200]))
            tool.end(end_time=ns(run.end))
        if priced:
            span.set_attribute("rtwidget.cost_usd", total)
        span.end(end_time=ns(turn.end))

    def _response(self, response: Any, ctx: Any, base: dict[str, Any]) -> float | None:
        split = split_usage(response.usage)
        usd, _ = price_usage(split, basis(self.provider, self.model))
        usage = response.usage if isinstance(response.usage, dict) else {}
        attributes = _clean({
            **base, "gen_ai.operation.name": "chat", "gen_ai.response.id": response.id,
            "gen_ai.usage.input_tokens": usage.get("input_tokens"),
            "gen_ai.usage.output_tokens": usage.get("output_tokens"),
            "gen_ai.usage.cache_read.input_tokens": split["input_cached_tokens"],
            **{f"rtwidget.usage.{k}": v for k, v in split.items()},
            "rtwidget.response.status": response.status, "rtwidget.cost_usd": usd})
        end = response.done_at if response.done_at is not None else response.created_at
        span = self.tracer.start_span(f"chat {self.model or ''}".strip(), context=ctx,
                                      start_time=ns(response.created_at),
                                      kind=SpanKind.CLIENT, attributes=attributes)
        if response.status == "failed":
            failure = response.failure()
            span.set_status(Status(StatusCode.ERROR, failure.message if failure else None))
        span.end(end_time=ns(end))
        self.op_hist.record(max(0.0, end - response.created_at),
                            {**base, "gen_ai.operation.name": "chat"})
        for kind, key in (("input", "input_tokens"), ("output", "output_tokens")):
            if isinstance(usage.get(key), int):
                self.token_hist.record(usage[key], {**base, "gen_ai.token.type": kind,
                                                    "gen_ai.operation.name": "chat"})
        if usd is not None:
            self.cost_hist.record(usd, base)
        return usd

    def reconnect(self, gap: ConnectionGap) -> None:
        """Emit one reconnect span: from the connection lost to its return."""
        span = self.tracer.start_span(
            "rtwidget.reconnect", context=self._ctx(self.session_span),
            start_time=ns(gap.lost_at),
            attributes=_clean({**self.common(), "rtwidget.reconnect.reason": gap.reason[:200],
                               "rtwidget.reconnect.attempts": gap.attempts,
                               "rtwidget.reconnect.succeeded": gap.back_at is not None}))
        if gap.back_at is None:
            span.set_status(Status(StatusCode.ERROR, "the connection did not come back"))
        span.end(end_time=ns(gap.back_at if gap.back_at is not None else gap.lost_at))


def export_conversation(conversation: Conversation, emitter: Emitter) -> int:
    """Emit a whole conversation after the fact; returns how many turns."""
    start, end = span_of_session(conversation)
    done = turns(conversation)
    emitter.open_session(conversation, start)
    for turn in done:
        emitter.turn(turn)
    for gap in reconnects(conversation):
        emitter.reconnect(gap)
    emitter.close_session(conversation, max([end, *(t.end for t in done)]))
    return len(done)
