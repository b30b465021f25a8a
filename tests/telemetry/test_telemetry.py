"""OpenTelemetry spans and histograms of a conversation, read back with the SDK's in-memory
exporters (and over OTLP/HTTP from a receiver on 127.0.0.1): each stage span lasts exactly
what the DataFrame's latency column says, to the millisecond."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import frames, utterance
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.otlp_receiver import OtlpReceiver

import rtwidget as rt
from rtwidget.protocol import Conversation
from rtwidget.server import LocalServer
from rtwidget.telemetry.timeline import STAGES


class Sink:
    """An SDK tracer and meter provider that keep what they are given in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def histogram(self, name: str) -> list[Any]:
        points = []
        for resource in self.reader.get_metrics_data().resource_metrics:
            for scope in resource.scope_metrics:
                points += [p for m in scope.metrics if m.name == name
                           for p in m.data.data_points]
        return points


class FixedEar:
    """A speech-to-text engine for the server that hears the same words in every utterance."""

    def transcribe(self, pcm: bytes) -> str:
        return "hello there how are you today"


def get_weather(city: str) -> str:
    """Current weather in a city."""
    time.sleep(0.05)
    return f"sunny in {city}"


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, pd.DataFrame, Sink]]:
    """A recorded session watched live: a typed turn with a tool call, a spoken turn (server
    VAD and transcription) whose reply the page reports playing, and a last typed turn."""
    from conftest import RULES

    from rtwidget.server import ScriptedReplyEngine

    folder = tmp_path_factory.mktemp("telemetry") / "talk"
    sink = Sink()
    rt.tool(get_weather)
    try:
        with LocalServer(engine=ScriptedReplyEngine(rules=RULES),
                         transcriber=FixedEar()) as server, \
                rt.RealtimeSession("local", url=server.url, record=folder,
                                   output_modalities=["text"],
                                   transcription="pocketsphinx") as s:
            watch = rt.telemetry(sink.tracer_provider, sink.meter_provider).watch(s)
            s.ask("what is the weather in Paris")
            spoken = s.expect(lambda e: e["type"] == "response.done" and any(
                o.get("type") == "message" for o in e["response"]["output"]), timeout=30)
            heard = s.expect("conversation.item.input_audio_transcription.completed",
                             timeout=60)
            for frame in frames(utterance()):
                s.send_audio(frame)
            done = spoken.wait()
            heard.wait()
            reply = next(o for o in done["response"]["output"] if o["type"] == "message")
            s.note("rtwidget.playback_started", item_id=reply["id"], at=time.time())
            s.ask("Thanks")
            watch.stop()
            df = s.df
    finally:
        rt.tools.clear()
    yield folder, df, sink


def turn_spans(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {str(s.attributes["rtwidget.turn.item_id"]): s for s in spans
            if s.name == "rtwidget.turn"}


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None
            and s.parent.span_id == parent.context.span_id]


def ms(span: ReadableSpan) -> float:
    assert span.end_time is not None and span.start_time is not None
    return (span.end_time - span.start_time) / 1e6


def check_stages_equal_the_frame(df: pd.DataFrame, spans: list[ReadableSpan]) -> int:
    """Every stage span of every turn lasts what its latency column says (to the ms);
    returns how many stage spans were compared."""
    turns = turn_spans(spans)
    users = df[(df["role"] == "user") & (df["type"] == "message")]
    assert set(turns) == set(users["item_id"])
    compared = 0
    for row in users.itertuples(index=False):
        stages = {s.attributes["rtwidget.stage"]: s
                  for s in children(spans, turns[str(row.item_id)])
                  if s.name.startswith("rtwidget.stage.")}
        for stage, column in STAGES:
            value = getattr(row, column)
            if pd.isna(value):
                assert stage not in stages, (row.item_id, stage)
                continue
            assert abs(ms(stages[stage]) - value * 1000) < 1e-3, (row.item_id, stage)
            compared += 1
    return compared


def test_live_spans_and_histograms_agree_with_the_dataframe(talk: Any) -> None:
    _, df, sink = talk
    spans = sink.finished()
    compared = check_stages_equal_the_frame(df, spans)
    spoken = df[(df["role"] == "user") & df["vad_s"].notna()].iloc[0]
    assert not pd.isna(spoken["played_s"]) and not pd.isna(spoken["transcript_s"])
    assert compared == 6  # 3 turns x response; the spoken one its vad, transcript, played
    (session,) = [s for s in spans if s.name == "rtwidget.session"]
    assert session.attributes["gen_ai.provider.name"] == "local"
    assert session.attributes["rtwidget.transport"] == "websocket"
    assert all(s.parent.span_id == session.context.span_id
               for s in spans if s.name == "rtwidget.turn")
    tools = [s for s in spans if s.name == "execute_tool get_weather"]
    tool_s = df[df["type"] == "function_call"]["tool_s"].iloc[0]
    assert len(tools) == 1 and abs(ms(tools[0]) - tool_s * 1000) < 1e-3
    assert tools[0].attributes["gen_ai.operation.name"] == "execute_tool"
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert len(chats) == df["response_id"].dropna().nunique()
    assert all(s.attributes["gen_ai.usage.input_tokens"] > 0 for s in chats)
    assert all(s.attributes["rtwidget.cost_usd"] == 0.0 for s in chats)
    points = sink.histogram("rtwidget.turn.stage.duration")
    assert sum(p.count for p in points) == compared
    total = sum(ms(s) for s in spans if s.name.startswith("rtwidget.stage.")) / 1000
    assert sum(p.sum for p in points) == pytest.approx(total, abs=1e-6)
    tokens = sink.histogram("gen_ai.client.token.usage")
    assert {p.attributes["gen_ai.token.type"] for p in tokens} == {"input", "output"}


def test_a_recording_exports_the_same_trace_after_the_fact(talk: Any) -> None:
    folder, _, _ = talk
    recording = rt.load_recording(folder)
    sink = Sink()
    turns = rt.telemetry.export(recording, sink.tracer_provider, sink.meter_provider)
    assert turns == 3
    spans = sink.finished()
    assert check_stages_equal_the_frame(recording.df, spans) == 6
    (session,) = [s for s in spans if s.name == "rtwidget.session"]
    assert session.attributes["rtwidget.provider"] == "local"


def test_an_export_reaches_an_otlp_http_collector(talk: Any) -> None:
    folder, df, _ = talk
    with OtlpReceiver() as collector:
        rt.telemetry.export(rt.load_recording(folder), endpoint=collector.url)
    names = [name for name, _, _ in collector.spans]
    assert names.count("rtwidget.session") == 1 and names.count("rtwidget.turn") == 3
    played = [(attrs, nanos) for name, attrs, nanos in collector.spans
              if name == "rtwidget.stage.first_played"]
    spoken = df[(df["role"] == "user") & df["played_s"].notna()].iloc[0]
    assert len(played) == 1 and abs(played[0][1] / 1e6 - spoken["played_s"] * 1000) < 1e-3
    assert {"rtwidget.turn.stage.duration", "gen_ai.client.token.usage",
            "gen_ai.client.operation.duration"} <= collector.metrics
    assert "/v1/traces" in collector.requests and "/v1/metrics" in collector.requests


def test_reconnects_and_barge_ins_have_their_spans_and_attributes() -> None:
    conv = Conversation()
    for event in [
        {"type": "session.created", "session": {"id": "sess_1", "model": "gpt-realtime-2"}},
        {"type": "conversation.item.added", "previous_item_id": None,
         "item": {"id": "item_u", "type": "message", "role": "user",
                  "content": [{"type": "input_text", "text": "Tell me a story"}]}},
        {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}},
        {"type": "response.output_item.added", "response_id": "resp_1", "output_index": 0,
         "item": {"id": "item_a", "type": "message", "role": "assistant",
                  "status": "in_progress", "content": []}},
        {"type": "conversation.item.truncated", "item_id": "item_a", "content_index": 0,
         "audio_end_ms": 1200},
        {"type": "response.done", "response": {"id": "resp_1", "status": "cancelled"}},
    ]:
        conv.apply(event)
    conv.note({"type": "rtwidget.connection_lost", "reason": "connection_lost",
               "detail": "the server went away"})
    conv.note({"type": "rtwidget.reconnecting", "attempt": 1})
    conv.note({"type": "rtwidget.reconnecting", "attempt": 2})
    conv.note({"type": "rtwidget.reconnected", "reconnects": 1})
    sink = Sink()
    assert rt.telemetry(sink.tracer_provider, sink.meter_provider).export(
        conv, provider="openai") == 1
    spans = sink.finished()
    (turn,) = [s for s in spans if s.name == "rtwidget.turn"]
    assert turn.attributes["rtwidget.barge_in"] is True
    assert turn.attributes["rtwidget.heard_ms"] == 1200
    (gap,) = [s for s in spans if s.name == "rtwidget.reconnect"]
    assert gap.attributes["rtwidget.reconnect.attempts"] == 2
    assert gap.attributes["rtwidget.reconnect.succeeded"] is True
    assert gap.attributes["rtwidget.reconnect.reason"] == "the server went away"
    (chat,) = [s for s in spans if s.name == "chat gpt-realtime-2"]
    assert chat.attributes["gen_ai.provider.name"] == "openai"
    assert chat.attributes["gen_ai.request.model"] == "gpt-realtime-2"


def test_telemetry_refuses_what_it_cannot_watch() -> None:
    with pytest.raises(TypeError, match="watches a session"):
        rt.telemetry(Sink().tracer_provider).watch(object())


def test_a_reconnect_is_traced_as_it_happens() -> None:
    sink = Sink()
    with LocalServer() as server, rt.RealtimeSession("local", url=server.url,
                                                     output_modalities=["text"]) as s:
        watch = rt.telemetry(sink.tracer_provider, sink.meter_provider).watch(s)
        s.ask("hello")
        reconnected = s.expect("rtwidget.reconnected", timeout=30)
        server.close_connections(1011)
        reconnected.wait()
        live = [span for span in sink.finished() if span.name == "rtwidget.reconnect"]
        s.ask("again")
        watch.stop()
    assert len(live) == 1  # before the session span ends
    gap = live[0]
    assert gap.attributes["rtwidget.reconnect.succeeded"] is True
    lost = [e for e in s.conversation.log if e.type == "rtwidget.connection_lost"]
    back = [e for e in s.conversation.log if e.type == "rtwidget.reconnected"]
    assert abs(ms(gap) - (back[0].at - lost[0].at) * 1000) < 1e-3
    assert [span.name for span in sink.finished()].count("rtwidget.turn") == 2
