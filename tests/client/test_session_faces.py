"""The blocking session (:class:`RealtimeSession`) and the async one (:class:`AsyncRealtimeSession`)
speak one vocabulary: the same name for the same thing on both faces, each method on both where
it makes sense, and the blocking face built on the async one's public methods alone. The
barge-in rule belongs to the session, so any front end (not only the widget) gets it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pandas as pd
from conftest import eventually

import rtwidget as rt
from rtwidget.server import LocalServer, ScriptedReplyEngine

SYNC = Path(__file__).resolve().parents[2] / "rtwidget" / "client" / "sync.py"

# only where a face's nature asks for it: the blocking face's thread (and ``aio``, the async
# face under it), the async face's loop
BLOCKING_ONLY = {"call", "call_soon", "call_later", "connect_in_background"}
ASYNC_ONLY = {"send_nowait", "send_raw", "encode", "request", "followed_up", "reply_text"}


def public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_both_faces_have_the_same_names_for_the_same_things() -> None:
    sync, aio = public(rt.RealtimeSession), public(rt.AsyncRealtimeSession)
    attributes = {"config", "conversation", "endpoint"}  # set per instance on the async face
    assert sync - aio - attributes == BLOCKING_ONLY
    assert aio - sync == ASYNC_ONLY


def test_the_blocking_face_uses_only_public_methods_of_the_async_one() -> None:
    assert re.findall(r"\.aio\._\w+", SYNC.read_text()) == []


def test_the_async_face_has_the_conversation_as_dataframes(server: LocalServer,
                                                           tmp_path: Path) -> None:
    async def talk() -> tuple[pd.DataFrame, pd.DataFrame, Path, list[rt.ErrorInfo]]:
        endpoint = rt.resolve("local", url=server.url)
        async with rt.AsyncRealtimeSession(endpoint, output_modalities=["text"]) as s:
            assert await s.ask("hello") == "You said: hello"
            done = s.expect("response.done")
            await s.say("again")
            await done
            assert s.recording is None and s.tools.definitions() == []
            return s.df, s.events, s.export(tmp_path / "talk.jsonl"), s.errors

    df, log, path, errors = asyncio.run(talk())
    assert list(df["text"]) == ["hello", "You said: hello", "again", "You said: again"]
    assert "response.done" in set(log["type"]) and errors == []
    assert list(rt.load_conversation(path)["text"]) == list(df["text"])


def test_a_front_end_that_stopped_playing_cuts_the_reply_where_it_was_heard(
        engine: ScriptedReplyEngine) -> None:
    with LocalServer(engine=engine, pace=0.02) as srv, \
            rt.RealtimeSession("local", url=srv.url) as s:
        s.say("tell me a long story")
        reply = eventually(lambda: next((i for i in s.conversation if i.role == "assistant"
                                         and i.audio_out_bytes >= 48 * 500), None))
        truncated = s.expect("conversation.item.truncated")
        assert s.playback_stopped(reply.id, 250) is True
        assert truncated.wait()["audio_end_ms"] == 250
        response = s.conversation.responses[reply.response_id]
        eventually(lambda: response.status == "cancelled")
        assert s.df.iloc[-1]["truncated_ms"] == 250
        assert s.playback_stopped("item_nobody_knows", 100) is False


def test_a_reply_played_to_its_end_is_not_cut(server: LocalServer) -> None:
    with rt.RealtimeSession("local", url=server.url) as s:
        s.ask("hello")
        reply = s.conversation.last_response()
        assert reply is not None
        item = s.conversation.get(reply.item_ids[-1])
        assert item is not None and item.audio_out_bytes > 0
        assert s.playback_stopped(item.id, item.audio_out_bytes // 48 + 500) is False
        assert s.playback_stopped(item.id, 10, cancel=False) is True  # heard only in part
