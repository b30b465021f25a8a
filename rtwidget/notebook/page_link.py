"""The voice chat widget's link to its page: the messages the page sends
(:mod:`rtwidget.notebook.messages`), the transport the two agree on, and what goes to the page.

Messages from the page arrive on whichever thread the kernel uses for comms; they are handed to
the session's own loop at once and never wait for the network (a voice change or push-to-talk
sends its ``session.update`` and lets the answer arrive later). Audio travels as binary comm
buffers both ways where the front end carries them intact, and as base64 in the message's JSON
where it does not (Colab's widget manager drops buffers): the page and the kernel find out with
a small round trip when the page starts. Reply audio, back-channel audio, flushes and
transcript rows go to the page from the session's loop thread; reply audio is held back from a
page that stops taking it (a frozen tab), so it does not pile up in the kernel.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from ..client import log_routing
from ..client.sync import RealtimeSession
from ..protocol.audio import BYTES_PER_SECOND, encode_audio
from ..protocol.items import Update
from . import messages
from .interrupts import Interrupts
from .push_to_talk import PushToTalk
from .rows import RowFeed
from .timings import BrowserTimings, LatencyProbe
from .transport import PROBE, audio_payload, backchannel_pcm
from .voice_picker import voice_picker

log = logging.getLogger("rtwidget.widget")

ACK_EVERY = 10  # mic frames between acknowledgements to the page
ROW_INTERVAL = 0.15  # seconds between two messages of transcript rows
MAX_UNACKED_AUDIO_BYTES = 30 * BYTES_PER_SECOND  # 30 s of audio the page has not confirmed
BACKCHANNEL_DELTA = "response.backchannel.audio.delta"  # Inworld's back-channel audio
SHOWN_TRAITS = ("status", "phase", "provider", "notice", "error", "transport", "ended")

Handler = Callable[[dict[str, Any], list[memoryview]], None]


class Page(Protocol):
    """What the link needs of its widget (a :class:`~rtwidget.VoiceChat`)."""

    session: RealtimeSession
    phase: str
    error: str
    transport: str
    ended: bool

    def send(self, content: dict[str, Any], buffers: list[Any] | None = None) -> None: ...

    def send_state(self, key: Any = None) -> None: ...


class PageLink:
    """One widget's page (see the module docstring). ``connect`` and ``disconnect`` are the
    widget's answers to the page's Connect and Disconnect buttons (run on a thread of their
    own); :attr:`handlers` holds the handler of each message the page sends."""

    def __init__(self, widget: Page, *, connect: Callable[[], None],
                 disconnect: Callable[[], None]) -> None:
        self._widget = widget
        self._connect, self._disconnect = connect, disconnect
        self.stats = {"frames_in": 0, "bytes_in": 0, "bad_frames": 0, "audio_out": 0,
                      "audio_dropped": 0, "truncations": 0, "backchannel_out": 0}
        self.front_ready = threading.Event()
        self.mic_on = False
        self.timings = BrowserTimings()
        self.interrupts = Interrupts(lambda: widget.session, widget.send, self.front_ready)
        self.probe = LatencyProbe(widget.send, self.front_ready,
                                  lambda kind, **f: widget.session.note(kind, **f))
        self._audio_sent = self._audio_acked = 0
        self._b64_down = False  # send audio to the page as base64 (its buffers do not arrive)
        self._rows = RowFeed()
        self._flush_pending = False
        self._voices: dict[str, Any] | None = None
        self._ptt = PushToTalk(self._update_soon,
                               lambda phase: self._on_loop(self._set_phase, phase))
        self.handlers: dict[str, Handler] = {
            messages.READY: self._on_ready, messages.TRANSPORT: self._on_transport,
            messages.MIC: self._on_mic, messages.MIC_AUDIO: self._on_mic_audio,
            messages.PTT: self._on_ptt, messages.TEXT: self._on_text,
            messages.INTERRUPT: self._on_interrupt,
            messages.PLAYBACK_STARTED: self._on_playback_started,
            messages.PLAYBACK_STOPPED: self._on_playback_stopped,
            messages.TURN_FLUSHED: self.interrupts.turn_flushed,
            messages.REPLY_AUDIO_ACK: self._on_reply_audio_ack, messages.VOICE: self._on_voice,
            messages.CONNECT: self._on_connect, messages.DISCONNECT: self._on_disconnect,
            messages.CLIENT_ERROR: self._on_client_error,
            messages.CANCEL_TOOL: self._on_cancel_tool,
            messages.MCP_APPROVAL: self._on_mcp_approval,
            messages.LATENCY_RESULT: lambda c, _: self.probe.answered(c),
        }
        self._updates: dict[str, Callable[[Update, dict[str, Any]], None]] = {
            "input_audio_buffer.speech_started": self._on_speech_started,
            "response.output_audio.done": self._on_audio_done,
            "response.done": self._on_response_done,
            "rtwidget.interrupted": self.interrupts.interrupted,
        }

    @property
    def session(self) -> RealtimeSession:
        """The widget's session now (a Connect after a Disconnect makes a new one)."""
        return self._widget.session

    def attach(self, session: RealtimeSession) -> list[Callable[[], None]]:
        """Listen to ``session`` for what goes to the page; returns the unsubscribers."""
        return [session.on_update(self._on_update), session.on_audio(self._on_audio),
                session.on(BACKCHANNEL_DELTA, self._on_backchannel)]

    def _on_loop(self, fn: Any, *args: Any) -> None:
        self.session.call_soon(fn, *args)

    def _on_loop_or_now(self, fn: Any) -> None:
        if not self.session.call_soon(fn):
            fn()

    def _set_phase(self, phase: str) -> None:
        if self._widget.phase != phase:
            self._widget.phase = phase

    def _set_error(self, text: str) -> None:
        self._widget.error = text

    # --- messages from the page (comm thread) ----------------------------------------------------

    def on_msg(self, _: Any, content: dict[str, Any], buffers: list[memoryview]) -> None:
        """The widget's handler of custom messages: each to its handler, a failure shown."""
        kind = content.get("type") if isinstance(content, dict) else None
        handler = self.handlers.get(kind) if isinstance(kind, str) else None
        if self._widget.ended and kind != messages.READY:
            return  # a closed chat is read-only: only a new page's hello gets an answer
        # whatever is logged here belongs to this chat, not to the cell the kernel ran last
        with log_routing.speaking_for(self.session._message):
            if handler is None:
                log.warning("widget: ignored a message of unknown type %r", kind)
                return
            try:
                handler(content, buffers)
            except Exception as exc:
                log.exception("widget: failed on a %r message", kind)
                self._on_loop(self._set_error, f"{type(exc).__name__}: {exc}")

    def _on_ready(self, content: dict[str, Any], buffers: list[memoryview]) -> None:
        """A new page (or a reload): its audio count starts at 0."""
        self._audio_sent = self._audio_acked = 0
        if "probe" in content:
            self._negotiate(buffers)
        self.front_ready.set()
        # changes sent while the page still loaded the widget's code were dropped: send again
        self._on_loop_or_now(lambda: self._widget.send_state(list(SHOWN_TRAITS)))
        self.schedule_rows(reset=True)
        self._on_loop(self._send_voices)

    def _on_text(self, content: dict[str, Any], _: list[memoryview]) -> None:
        text = str(content.get("text", "")).strip()
        if text:  # typed during a reply, it interrupts it (see RealtimeSession.say)
            self.session.say(text)

    def _on_interrupt(self, content: dict[str, Any], _: list[memoryview]) -> None:
        self.interrupts.cancel_reply()

    def _on_ptt(self, content: dict[str, Any], _: list[memoryview]) -> None:
        (self._ptt.press if content.get("on") else self._ptt.release)(self.session)

    def _on_mic(self, content: dict[str, Any], _: list[memoryview]) -> None:
        self.mic_on = bool(content.get("on"))
        if self.mic_on and not content.get("ptt"):
            self._ptt.hands_free()
        self._on_loop(self._set_phase, "listening" if self.mic_on else "idle")

    def _on_disconnect(self, content: dict[str, Any], _: list[memoryview]) -> None:
        threading.Thread(target=self._disconnect, name="rtwidget-disconnect",
                         daemon=True).start()

    def _on_connect(self, content: dict[str, Any], _: list[memoryview]) -> None:
        threading.Thread(target=self._connect, name="rtwidget-connect", daemon=True).start()

    def _on_cancel_tool(self, content: dict[str, Any], _: list[memoryview]) -> None:
        call_id = content.get("call_id")
        if isinstance(call_id, str):
            self.session.cancel_tool(call_id)

    def _on_mcp_approval(self, content: dict[str, Any], _: list[memoryview]) -> None:
        request_id = content.get("request_id")
        if isinstance(request_id, str):
            approvals = self.session.aio.mcp_approvals
            self._on_loop(approvals.answer, request_id, content.get("approve") is True)

    def _on_client_error(self, content: dict[str, Any], _: list[memoryview]) -> None:
        log.warning("widget: %s", content.get("message"))

    def _on_voice(self, content: dict[str, Any], _: list[memoryview]) -> None:
        name = str(content.get("voice", ""))
        if name:
            self._update_soon(voice=name)

    def _on_reply_audio_ack(self, content: dict[str, Any], _: list[memoryview]) -> None:
        if isinstance(content.get("bytes"), int):
            self._audio_acked = max(self._audio_acked, content["bytes"])

    def _update_soon(self, **config: Any) -> None:
        """A ``session.update`` sent now, its answer not waited for; a refusal shows."""

        def answered(future: Any) -> None:
            exc = None if future.cancelled() else future.exception()
            if exc is not None:
                self._on_loop(self._set_error, f"The server refused the change: {exc}")

        self.session.update_soon(**config).add_done_callback(answered)

    def _on_mic_audio(self, content: dict[str, Any], buffers: list[memoryview]) -> None:
        if not buffers and "b64" not in content:
            return
        try:
            pcm = audio_payload(content, buffers)
        except ValueError:
            self.stats["bad_frames"] += 1
            raise
        if not pcm or len(pcm) % 2:
            self.stats["bad_frames"] += 1
            return
        self.stats["frames_in"] += 1
        self.stats["bytes_in"] += len(pcm)
        sent_at = content.get("t")
        if isinstance(sent_at, (int, float)):
            self.timings.frame(sent_at)
        if self.session.connected:
            self.session.send_audio(pcm)
            self._ptt.frame(len(pcm))
        seq = content.get("seq")
        if isinstance(seq, int) and seq % ACK_EVERY == 0:
            self._widget.send({"type": messages.MIC_AUDIO_ACK, "seq": seq})

    def _on_playback_started(self, content: dict[str, Any], _: list[memoryview]) -> None:
        """The browser played the first sample of an item at ``t`` (its wall clock, ms)."""
        item_id, at_ms = str(content.get("item_id")), content.get("t")
        if not isinstance(at_ms, (int, float)):
            return
        self.timings.playback_started(item_id, at_ms, content.get("device_ms"))
        self.session.note("rtwidget.playback_started", item_id=item_id, at=at_ms / 1000)

    def _on_playback_stopped(self, content: dict[str, Any], _: list[memoryview]) -> None:
        """The browser stopped playing an item after ``audio_end_ms``: the session cuts the
        rest (see :meth:`RealtimeSession.playback_stopped`)."""
        item_id, audio_end_ms = str(content.get("item_id", "")), content.get("audio_end_ms")
        if not isinstance(audio_end_ms, (int, float)):
            return
        cancel = self.interrupts.cancels(content.get("reason"))
        if self.session.playback_stopped(item_id, audio_end_ms, cancel=cancel):
            self.stats["truncations"] += 1

    # --- the transport -------------------------------------------------------------------------

    def _negotiate(self, buffers: list[memoryview]) -> None:
        """A new page sent the probe with its ``ready``: tell it whether the probe arrived (so
        it knows how to send mic frames) and send one back for it to check. Until it answers,
        audio goes to it as base64, which every front end carries."""
        up = bool(buffers) and bytes(buffers[0]) == PROBE
        self._b64_down = True
        self._on_loop(setattr, self._widget, "transport", "")
        self._widget.send({"type": messages.TRANSPORT_CHECK, "up": up, "probe": list(PROBE)},
                          buffers=[PROBE])

    def _on_transport(self, content: dict[str, Any], _: list[memoryview]) -> None:
        self._b64_down = content.get("down") is not True
        self._on_loop(self._show_transport, content.get("up") is True)

    def _show_transport(self, up: bool) -> None:
        binary = up and not self._b64_down
        self._widget.transport = "binary" if binary else "base64"
        log.info("widget transport: mic frames %s, audio to the page %s",
                 "binary" if up else "base64", "base64" if self._b64_down else "binary")

    # --- to the page (the session's loop thread) -------------------------------------------------

    def _on_audio(self, item_id: str, pcm: bytes) -> None:
        if self.front_ready.is_set():
            if self._audio_sent - self._audio_acked > MAX_UNACKED_AUDIO_BYTES:
                self.stats["audio_dropped"] += 1  # the page stopped taking audio: don't pile up
                return
            self._audio_sent += len(pcm)
            self.interrupts.audio_out(len(pcm))
            self.stats["audio_out"] += 1
            self.timings.audio_sent(item_id)
            self._send_audio({"type": messages.REPLY_AUDIO, "item_id": item_id}, pcm)

    def _on_backchannel(self, event: dict[str, Any]) -> None:
        """Inworld's back-channel audio ("uh-huh" while the user speaks) goes to the page to be
        played beside the reply, not as one: it is no item, has no latency and is never cut."""
        pcm = backchannel_pcm(event)
        if pcm and self.front_ready.is_set():
            self.stats["backchannel_out"] += 1
            self._send_audio({"type": messages.BACKCHANNEL, "id": event.get("backchannel_id")},
                             pcm)

    def _send_audio(self, content: dict[str, Any], pcm: bytes) -> None:
        """Audio to the page, as a binary buffer or, where buffers do not arrive, base64."""
        if self._b64_down:
            self._widget.send({**content, "b64": encode_audio(pcm)})
        else:
            self._widget.send(content, buffers=[pcm])

    def _on_update(self, event: dict[str, Any], update: Update) -> None:
        handler = self._updates.get(update.type)
        if handler is not None:
            handler(update, event)
        if self._rows.mark(update):
            self.schedule_rows()

    def _on_speech_started(self, update: Update, event: dict[str, Any]) -> None:
        if self.front_ready.is_set():
            self._widget.send({"type": messages.FLUSH, "reason": "speech"})

    def _on_audio_done(self, update: Update, event: dict[str, Any]) -> None:
        if self.front_ready.is_set() and update.item is not None:
            self._widget.send({"type": messages.REPLY_AUDIO_DONE, "item_id": update.item.id})

    def _on_response_done(self, update: Update, event: dict[str, Any]) -> None:
        """A response is over: none of its items will get more audio. Providers do not all send
        ``response.output_audio.done`` for a cancelled reply, and the page keeps the mic closed
        while it still expects audio."""
        if not self.front_ready.is_set() or update.response is None:
            return
        for item_id in update.response.item_ids:
            item = self.session.conversation.get(item_id)
            if item is not None and item.audio_out_bytes:
                self._widget.send({"type": messages.REPLY_AUDIO_DONE, "item_id": item_id})

    def schedule_rows(self, reset: bool = False) -> None:
        """Send the transcript rows that changed, a moment from now (all of them now, with
        ``reset``)."""
        if reset:
            self._on_loop_or_now(lambda: self.flush_rows(reset=True))
            return
        if self._flush_pending:
            return
        self._flush_pending = True
        self.session.call_later(ROW_INTERVAL, self.flush_rows)

    def flush_rows(self, reset: bool = False) -> None:
        """Send the transcript rows that changed (all of them with ``reset``) now."""
        self._flush_pending = False
        if not self.front_ready.is_set():
            return
        message = self._rows.message(self.session.conversation, reset)
        if message is not None:
            self._widget.send(message)

    def load_voices(self) -> None:
        """Fetch the voice picker's choices (blocking: on a thread of its own), then send
        them to the page."""
        self._voices = voice_picker(self.session)
        self._on_loop(self._send_voices)

    def _send_voices(self) -> None:
        if self._voices is not None and self.front_ready.is_set():
            self._widget.send(self._voices)
