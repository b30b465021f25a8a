"""An engine of the local server that cannot do its part is never silent: the client gets an
``error`` naming the engine and the fix, the response ends as ``failed`` (a transcription as
``...transcription.failed``), the error shows in the widget and the DataFrame, and the next turn
works. At start, an engine that cannot run is not chosen."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import eventually, frames, utterance

import rtwidget as rt
from rtwidget.protocol.errors import EngineUnavailable
from rtwidget.server import LocalServer, ScriptedReplyEngine, ToneSynthesizer
from rtwidget.server.engines import ReplyChunk, ReplyContext, TextDelta


class BreakingVoice(ToneSynthesizer):
    """Tones, except for sentences with "boom" in them: those raise, as a broken engine would."""

    def synthesize(self, text: str, voice: str | None, speed: float) -> bytes:
        if "boom" in text.lower():
            raise RuntimeError("the voice broke on 'boom'")
        return super().synthesize(text, voice, speed)


class CrashingReplies:
    """Scripted replies, except that "crash" makes it fail after its first sentence and
    "silent" before its first word."""

    def __init__(self) -> None:
        self.scripted = ScriptedReplyEngine()

    async def reply(self, context: ReplyContext) -> AsyncIterator[ReplyChunk]:
        said = (context.last_user() or context.history[-1]).text
        if "silent" in said:
            raise MemoryError("no memory left for the model")
        if "crash" in said:
            yield TextDelta("Let me think. ", whole=True)
            raise RuntimeError("the model lost its mind")
        async for chunk in self.scripted.reply(context):
            yield chunk


class FlakyEar:
    """A transcriber whose first call raises; the calls after it hear "hello there"."""

    def __init__(self) -> None:
        self.calls = 0

    def transcribe(self, pcm: bytes) -> str:
        self.calls += 1
        if self.calls == 1:
            raise OSError("the decoder's model file is unreadable")
        return "hello there"


@contextmanager
def _chat(server: LocalServer, **config: Any) -> Iterator[rt.VoiceChat]:
    chat = rt.chat("local", url=server.url, **config)
    try:
        eventually(lambda: chat.status == "connected", what="the chat connecting")
        yield chat
    finally:
        chat.close()


def _turn(session: rt.RealtimeSession, text: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Say ``text``; the ``error`` event the reply brought (if any) and its ``response``."""
    errors: list[dict[str, Any]] = []
    off = session.on("error", errors.append)
    try:
        done = session.expect("response.done")
        session.say(text)
        response = done.wait()["response"]
    finally:
        off()
    return (errors[-1]["error"] if errors else None), response


def _reply_row(chat: rt.VoiceChat, response_id: str) -> Any:
    df = chat.df
    return df[df["response_id"] == response_id].iloc[0]


def test_a_synthesizer_that_raises_fails_the_reply_with_a_clear_error() -> None:
    with LocalServer(synthesizer=BreakingVoice()) as srv, _chat(srv) as chat:
        error, response = _turn(chat.session, "boom goes the dynamite")
        assert response["status"] == "failed"
        assert error is not None and error["code"] == "engine_failed"
        message = error["message"]
        assert "Text to speech (BreakingVoice) failed" in message
        assert "the voice broke on 'boom'" in message
        assert response["status_details"]["error"]["message"] == message
        # the widget shows it, and so does the DataFrame, on the reply's row
        eventually(lambda: "the voice broke" in chat.error, what="the widget's error")
        row = _reply_row(chat, response["id"])
        assert row["role"] == "assistant" and row["status"] == "incomplete"
        assert row["error"] == "reply failed: " + message
        # the next turn is spoken as usual
        error, response = _turn(chat.session, "hello again")
        assert error is None and response["status"] == "completed"
        assert chat.session.conversation.get(response["output"][0]["id"]).audio_out_bytes


@pytest.mark.skipif(shutil.which("flite") is None, reason="Flite is not installed")
def test_flite_without_soxr_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from rtwidget.server.text_to_speech import FliteSynthesizer

    with LocalServer(synthesizer=FliteSynthesizer()) as srv, rt.RealtimeSession(
            "local", url=srv.url) as s:
        monkeypatch.setitem(sys.modules, "soxr", None)  # as if the package were not installed
        error, response = _turn(s, "hello there")
        assert response["status"] == "failed" and error is not None
        assert error["code"] == "engine_unavailable"
        assert error["message"].startswith("Text to speech (Flite) cannot run: soxr is not")
        assert "pip install 'soxr'" in error["message"]
        assert s.conversation.errors[-1].message == error["message"]
        monkeypatch.undo()  # installed now: the same session speaks again
        error, response = _turn(s, "hello there")
        assert error is None and response["status"] == "completed"
        assert s.conversation.get(response["output"][0]["id"]).audio_out_bytes > 0


def test_a_flite_command_that_fails_says_what_it_wrote(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from rtwidget.server.text_to_speech import FliteSynthesizer

    fake = tmp_path / "flite"  # lists its voices, then fails as a broken install would
    fake.write_text('#!/bin/sh\nif [ "$1" = -lv ]; then echo "Voices available: slt"; exit 0; '
                    'fi\necho "flite: unable to load voice slt" >&2\nexit 3\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    with LocalServer(synthesizer=FliteSynthesizer(use_command=True)) as srv, \
            rt.RealtimeSession("local", url=srv.url) as s:
        error, response = _turn(s, "hello there")
        assert response["status"] == "failed" and error is not None
        assert error["message"] == ("Text to speech (Flite) failed: the command flite exited "
                                    "with status 3: flite: unable to load voice slt")
        s.update(output_modalities=["text"])  # the session goes on
        assert s.ask("still there?") == "You said: still there?"


def test_a_reply_engine_that_raises_mid_reply_fails_the_response() -> None:
    server = LocalServer(engine=CrashingReplies())
    with server as srv, _chat(srv, output_modalities=["text"]) as chat:
        error, response = _turn(chat.session, "please crash now")
        assert response["status"] == "failed" and error is not None
        assert error["message"] == ("Replies (CrashingReplies) failed: RuntimeError: the "
                                    "model lost its mind")
        assert error["event_id"] is not None  # the response.create that started it
        row = _reply_row(chat, response["id"])
        assert row["text"] == "Let me think. " and row["error"].endswith("lost its mind")
        eventually(lambda: "lost its mind" in chat.error, what="the widget's error")
        # an engine that fails before its first word: the error goes on the turn's row
        error, response = _turn(chat.session, "stay silent")
        assert response["status"] == "failed" and response["output"] == []
        assert error is not None and "MemoryError: no memory left" in error["message"]
        df = chat.df
        asked = df[df["text"] == "stay silent"].iloc[0]
        assert asked["error"] == "reply failed: " + error["message"]
        assert chat.session.ask("are you there?") == "You said: are you there?"
        # ask() waits for a reply, so a reply that fails raises, saying why
        with pytest.raises(rt.ServerError, match=r"the reply failed: .*lost its mind"):
            chat.session.ask("crash, please")
        assert chat.session.ask("and now?") == "You said: and now?"


def test_a_transcriber_that_raises_fails_the_transcription_and_the_next_turn_works() -> None:
    ear = FlakyEar()
    with LocalServer(transcriber=ear) as srv, rt.RealtimeSession(
            "local", url=srv.url, transcription="pocketsphinx", output_modalities=["text"]) as s:
        errors: list[dict[str, Any]] = []
        s.on("error", lambda ev: errors.append(ev["error"]))
        failed = s.expect("conversation.item.input_audio_transcription.failed")
        done = s.expect("response.done")
        for frame in frames(utterance(seed=1)):
            s.send_audio(frame)
        event = failed.wait()
        assert event["error"]["code"] == "engine_failed"
        assert event["error"]["message"] == ("Speech to text (FlakyEar) failed: OSError: the "
                                             "decoder's model file is unreadable")
        assert done.wait()["response"]["status"] == "completed"  # it says it heard no words
        assert errors and errors[0]["message"] == event["error"]["message"]
        user = s.conversation.get(event["item_id"])
        assert user is not None and user.error == "transcription failed: " + errors[0]["message"]
        # the next spoken turn is heard and answered
        heard = s.expect("conversation.item.input_audio_transcription.completed")
        done = s.expect("response.done")
        for frame in frames(utterance(seed=2)):
            s.send_audio(frame)
        assert heard.wait()["transcript"] == "hello there"
        response = done.wait()["response"]
        assert response["status"] == "completed"
        assert response["output"][0]["content"][0]["text"] == "You said: hello there"
        assert len(errors) == 1


def test_the_fault_events_validate_against_the_openai_models() -> None:
    from openai.types.realtime import RealtimeServerEvent
    from pydantic import TypeAdapter
    from test_provider_fidelity import _unknown_fields

    adapter: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
    seen: list[dict[str, Any]] = []
    with LocalServer(synthesizer=BreakingVoice(), transcriber=FlakyEar()) as srv, \
            rt.RealtimeSession("local", url=srv.url, transcription="pocketsphinx") as s:
        s.on("*", seen.append)
        answered = s.expect("response.done")  # the turn with no words gets its reply
        for frame in frames(utterance(seed=3)):
            s.send_audio(frame)
        answered.wait()
        _turn(s, "boom")
    kinds = [e["type"] for e in seen]
    assert kinds.count("error") == 2 and "conversation.item.input_audio_transcription.failed" \
        in kinds
    faults = [e for e in seen if e["type"] in ("error", "response.done") or
              e["type"].endswith(".failed")]
    for event in faults:
        assert _unknown_fields(adapter.validate_python(event)) == [], event


def test_what_an_engine_said_is_told_in_a_sentence() -> None:
    from rtwidget.server.faults import fault, what_it_said

    assert what_it_said(subprocess.TimeoutExpired(["/usr/bin/flite", "-f", "x"], 60)) == (
        "the command flite did not finish within 60 s")
    assert what_it_said(subprocess.CalledProcessError(2, "espeak-ng")) == (
        "the command espeak-ng exited with status 2 and wrote nothing")
    missing = fault("speech to text", FlakyEar(), ModuleNotFoundError(
        "No module named 'whisper.audio'", name="whisper.audio"))
    assert missing.code == "engine_unavailable" and str(missing).startswith(
        "Speech to text (FlakyEar) cannot run: the Python module 'whisper.audio' is not "
        "installed; install the package that provides it (often pip install whisper;")
    assert fault("replies", CrashingReplies(), ValueError()).error() == {
        "type": "server_error", "code": "engine_failed",
        "message": "Replies (CrashingReplies) failed: ValueError"}


def test_an_engine_error_is_not_taken_for_the_answer_to_a_pending_request() -> None:
    from rtwidget.protocol.conversation import Conversation
    from rtwidget.protocol.requests import PendingRequests

    conversation = Conversation()
    conversation.record_sent({"type": "session.update", "event_id": "e1"}, 10)
    pending = PendingRequests(conversation)
    answer = pending.answered_by("e1", "session.update", lambda ev: False)
    engine = {"type": "error", "error": {"type": "server_error", "code": "engine_failed",
                                         "message": "Speech to text (x) failed", "event_id": None}}
    refusal = {"type": "error", "error": {"type": "invalid_request_error", "code": "bad",
                                          "message": "no", "event_id": None}}
    assert not answer(engine) and answer(refusal)


# --- what is chosen at start -----------------------------------------------------------------


@pytest.fixture
def no_reply_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """best_available() without loading a reply model (not what these tests are about)."""
    from rtwidget.server import llm

    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise EngineUnavailable("not loaded in this test", "a model", "nothing")

    monkeypatch.setattr(llm, "LlamaReplyEngine", unavailable)


@pytest.mark.skipif(shutil.which("flite") is None or importlib.util.find_spec(
    "espeakng_loader") is None, reason="Flite or eSpeak NG is not installed")
def test_best_available_does_not_choose_flite_when_it_cannot_run(
        monkeypatch: pytest.MonkeyPatch, no_reply_model: None) -> None:
    from rtwidget.server.defaults import best_available
    from rtwidget.server.text_to_speech import FliteSynthesizer

    def broken(self: Any, text: str, voice: str | None, speed: float) -> bytes:
        raise subprocess.CalledProcessError(1, ["flite"], stderr=b"cannot open audio device")

    monkeypatch.setattr(FliteSynthesizer, "synthesize", broken)
    found = best_available(profile="fast")
    assert [type(e).__name__ for e in found.synthesizer.engines] == ["EspeakSynthesizer"]
    assert found.missing[1] == ("text to speech (Flite): the command flite exited with status "
                                "1: cannot open audio device")
    assert "eSpeak NG" in found.describe() and "not used: " in found.describe()
    assert "Flite (the command flite exited with status 1" in found.describe()


def test_best_available_without_soxr_chooses_what_can_run(
        monkeypatch: pytest.MonkeyPatch, no_reply_model: None) -> None:
    from rtwidget.server.defaults import best_available

    monkeypatch.setitem(sys.modules, "soxr", None)
    found = best_available(profile="fast")
    assert isinstance(found.synthesizer, ToneSynthesizer)
    assert found.transcriber is None and found.vad == "energy"
    line = found.describe()
    assert line.startswith("scripted replies, tones (no speech engine), no speech-to-text, "
                           "energy VAD; not used: ")
    assert "(needs pip install 'soxr')" in line
    speech = [m for m in found.missing if m.startswith("text to speech")]
    if shutil.which("flite") is not None:
        assert speech[0].startswith("text to speech (Flite): soxr is not available")


@pytest.mark.skipif(shutil.which("flite") is None, reason="Flite is not installed")
def test_the_start_up_line_says_why_flite_is_not_used() -> None:
    code = ("import sys; sys.modules['soxr'] = None\n"
            "from rtwidget.server.__main__ import main\n"
            "main(['--port', '0'])\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        proc.terminate()
        _, log = proc.communicate(timeout=30)
    assert "rtwidget local Realtime server on ws://127.0.0.1:" in line, log
    assert "tones (no speech engine)" in line and "Flite" in line
    assert "needs pip install 'soxr'" in line
    assert "text to speech (Flite): soxr is not available" in log
