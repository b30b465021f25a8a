"""The voice chat widget: the browser's mic and speaker, bound to a :class:`RealtimeSession`.

Audio travels as binary comm buffers both ways where the front end carries them intact, and
as base64 in the message's JSON where it does not (Colab's widget manager drops buffers): the
page and the kernel find out with a small round trip when the page starts. Messages from the
browser arrive on whichever thread the kernel uses for comms; they are handed to the session's
own loop at once and never wait for the network (a voice change or push-to-talk sends its
``session.update`` and lets the answer arrive later). Everything the widget sends and every
trait it changes after start-up comes from the session's loop thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import pandas as pd
import traitlets

from ..client import log_routing
from ..client.local_process import local_server
from ..client.recorder import next_free_folder
from ..client.sync import RealtimeSession
from ..data.frame import LiveView
from ..protocol import events
from ..protocol.audio import BYTES_PER_MS, encode_audio
from ..protocol.items import Update
from . import messages
from .interrupts import Interrupts
from .notices import Notices
from .push_to_talk import PushToTalk
from .rows import RowFeed
from .timings import BrowserTimings, LatencyProbe
from .transport import PROBE, audio_payload, backchannel_pcm
from .voice_picker import voice_picker

log = logging.getLogger("rtwidget.widget")

STATIC = Path(__file__).parent / "static"
ACK_EVERY = 10
ROW_INTERVAL = 0.15
MAX_UNACKED_AUDIO_BYTES = 30 * 48_000  # 30 s of audio the page has not confirmed
BACKCHANNEL_DELTA = "response.backchannel.audio.delta"  # Inworld's back-channel audio
SHOWN_TRAITS = ("status", "phase", "provider", "notice", "error", "transport", "ended")
LOCAL_NOTICE = ("No INWORLD_API_KEY or OPENAI_API_KEY in the environment: talking to the "
                "embedded local server.")


class VoiceChat(anywidget.AnyWidget):
    """A voice chat cell: start the mic and talk, type, watch the transcript and tool calls.

    Create it with :func:`rtwidget.chat` or ``%rtchat``. ``chat.df`` is the conversation as a
    DataFrame, ``chat.say(text)`` adds a typed turn from code, ``chat.session`` is the
    :class:`RealtimeSession` underneath.
    """

    _esm = STATIC / "widget.js"
    _css = STATIC / "widget.css"

    status = traitlets.Unicode("connecting").tag(sync=True)
    phase = traitlets.Unicode("idle").tag(sync=True)
    provider = traitlets.Unicode("").tag(sync=True)
    notice = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    #: how audio travels between page and kernel: "binary" (comm buffers), "base64" (in the
    #: JSON, where the front end drops buffers), or "" until the page has said which works
    transport = traitlets.Unicode("").tag(sync=True)
    #: the chat was closed (``close()``): the page keeps it, read-only, with its transcript
    ended = traitlets.Bool(False).tag(sync=True)

    def __init__(self, session: RealtimeSession, *, connect: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._notices = Notices(self)
        self._lifecycle, self._closed = threading.Lock(), False  # Connect, Disconnect, close
        self.stats = {"frames_in": 0, "bytes_in": 0, "bad_frames": 0, "audio_out": 0,
                      "audio_dropped": 0, "truncations": 0, "backchannel_out": 0}
        self._audio_sent = self._audio_acked = 0
        self._front_ready = threading.Event()
        self._rows = RowFeed()
        self._flush_pending = False
        self._mic_on = False
        self._b64_down = False  # send audio to the page as base64 (its buffers do not arrive)
        self._ptt = PushToTalk(self._update_soon,
                               lambda phase: self._call_on_loop(self._set_phase, phase))
        self._voices: dict[str, Any] | None = None
        self._timings = BrowserTimings()
        self._interrupts = Interrupts(lambda: self.session, self.send, self._front_ready)
        self._offs: list[Any] = []
        self._probe = LatencyProbe(self.send, self._front_ready,
                                   lambda kind, **f: self.session.note(kind, **f))
        self._messages: dict[str, Callable[[dict[str, Any], list[memoryview]], None]] = {
            messages.READY: self._on_ready, messages.TRANSPORT: self._on_transport,
            messages.MIC: self._on_mic, messages.MIC_AUDIO: self._on_mic_frame,
            messages.PTT: self._on_ptt, messages.TEXT: self._on_text,
            messages.INTERRUPT: self._on_interrupt,
            messages.PLAYBACK_STARTED: self._on_playback_started,
            messages.PLAYBACK_STOPPED: self._on_played,
            messages.TURN_FLUSHED: self._interrupts.turn_flushed,
            messages.REPLY_AUDIO_ACK: self._on_audio_ack, messages.VOICE: self._on_voice,
            messages.CONNECT: self._on_connect, messages.DISCONNECT: self._on_disconnect,
            messages.CLIENT_ERROR: self._on_client_error,
            messages.LATENCY_RESULT: lambda c, _: self._probe.answered(c),
        }
        self._updates: dict[str, Callable[[Update, dict[str, Any]], None]] = {
            "input_audio_buffer.speech_started": self._on_speech_started,
            "input_audio_buffer.speech_stopped": self._thinking,
            "response.created": self._thinking,
            "response.output_audio.delta": self._speaking,
            "response.output_text.delta": self._speaking,
            "response.output_audio.done": self._on_audio_done,
            "response.done": self._on_response_done,
            "session.created": lambda *_: self._show_provider(),
            "session.updated": lambda *_: self._show_provider(),
            "rtwidget.reconnecting": lambda *_: setattr(self, "status", "reconnecting"),
            "rtwidget.reconnected": self._notices.server_news,
            "rtwidget.server_crashed": self._notices.server_news,
            "rtwidget.closed": self._on_closed,
            "rtwidget.interrupted": self._interrupts.interrupted,
            "error": self._on_error,
            "rtwidget.message": self._notices.message,  # never printed into a cell
        }
        self.on_msg(self._on_msg)
        self._bind(session)
        if connect:
            self._connect()

    # --- the session ---------------------------------------------------------------------------

    def _bind(self, session: RealtimeSession) -> None:
        for off in self._offs:
            off()
        self.session = session
        self._offs = [session.on_update(self._on_update), session.on_audio(self._on_audio),
                      session.on(BACKCHANNEL_DELTA, self._on_backchannel)]
        endpoint = session.endpoint
        self.provider = endpoint.describe() if endpoint.url else f"{endpoint.provider} (starting)"
        self.notice = LOCAL_NOTICE if endpoint.provider == "local" and not endpoint.url else ""

    def _connect(self) -> None:
        self.status = "connecting"
        self.error = ""
        future = self.session.connect_in_background()

        def done(f: Any) -> None:
            exc = f.exception()
            if exc is not None:
                self.status = "closed"
                self.error = f"Could not connect: {exc}"
            else:
                self.status = "connected"
                self._show_provider()
                threading.Thread(target=self._load_voices, name="rtwidget-voices",
                                 daemon=True).start()
                if self.notice == LOCAL_NOTICE:
                    self.notice = f"{LOCAL_NOTICE} ({local_server().description})"
                self._schedule_rows(reset=True)

        future.add_done_callback(done)

    def _load_voices(self) -> None:
        self._voices = voice_picker(self.session)
        self._call_on_loop(self._send_voices)

    def _send_voices(self) -> None:
        if self._voices is not None and self._front_ready.is_set():
            self.send(self._voices)

    def _show_provider(self) -> None:
        model = self.session.conversation.session.get("model") or self.session.config.get("model")
        described = self.session.endpoint.describe()
        self.provider = f"{described} · {model}" if model else described

    # --- messages from the browser (comm thread) -------------------------------------------------

    def _on_msg(self, _: Any, content: dict[str, Any], buffers: list[memoryview]) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        handler = self._messages.get(kind) if isinstance(kind, str) else None
        if self.ended and kind != messages.READY:
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
                self._call_on_loop(self._set_error, f"{type(exc).__name__}: {exc}")

    def _on_ready(self, content: dict[str, Any], buffers: list[memoryview]) -> None:
        """A new page (or a reload): its audio count starts at 0."""
        self._audio_sent = self._audio_acked = 0
        if "probe" in content:
            self._negotiate(buffers)
        self._front_ready.set()
        # changes sent while the page still loaded the widget's code were dropped: send again
        self._call_on_loop_or_now(lambda: self.send_state(list(SHOWN_TRAITS)))
        self._schedule_rows(reset=True)
        self._call_on_loop(self._send_voices)

    def _on_text(self, content: dict[str, Any], _: list[memoryview]) -> None:
        text = str(content.get("text", "")).strip()
        if text:  # typed during a reply, it interrupts it (see RealtimeSession.say)
            self.session.say(text)

    def _on_interrupt(self, content: dict[str, Any], _: list[memoryview]) -> None:
        self._interrupts.cancel_reply()

    def _on_transport(self, content: dict[str, Any], _: list[memoryview]) -> None:
        self._b64_down = content.get("down") is not True
        self._call_on_loop(self._show_transport, content.get("up") is True)

    def _on_ptt(self, content: dict[str, Any], _: list[memoryview]) -> None:
        (self._ptt.press if content.get("on") else self._ptt.release)(self.session)

    def _on_mic(self, content: dict[str, Any], _: list[memoryview]) -> None:
        self._mic_on = bool(content.get("on"))
        if self._mic_on and not content.get("ptt"):
            self._ptt.hands_free()
        self._call_on_loop(self._set_phase, "listening" if self._mic_on else "idle")

    def _on_disconnect(self, content: dict[str, Any], _: list[memoryview]) -> None:
        threading.Thread(target=self._disconnect, name="rtwidget-disconnect",
                         daemon=True).start()

    def _on_connect(self, content: dict[str, Any], _: list[memoryview]) -> None:
        threading.Thread(target=self._reconnect, name="rtwidget-connect",
                         daemon=True).start()

    def _on_client_error(self, content: dict[str, Any], _: list[memoryview]) -> None:
        log.warning("widget: %s", content.get("message"))

    def _on_voice(self, content: dict[str, Any], _: list[memoryview]) -> None:
        name = str(content.get("voice", ""))
        if name:
            self._update_soon(voice=name)

    def _on_audio_ack(self, content: dict[str, Any], _: list[memoryview]) -> None:
        if isinstance(content.get("bytes"), int):
            self._audio_acked = max(self._audio_acked, content["bytes"])

    def _update_soon(self, **config: Any) -> None:
        """A ``session.update`` sent now, its answer not waited for; a refusal shows."""

        def answered(future: Any) -> None:
            exc = None if future.cancelled() else future.exception()
            if exc is not None:
                self._call_on_loop(self._set_error, f"The server refused the change: {exc}")

        self.session.update_soon(**config).add_done_callback(answered)

    def _negotiate(self, buffers: list[memoryview]) -> None:
        """A new page sent the probe with its ``ready``: tell it whether the probe arrived (so
        it knows how to send mic frames) and send one back for it to check. Until it answers,
        audio goes to it as base64, which every front end carries."""
        up = bool(buffers) and bytes(buffers[0]) == PROBE
        self._b64_down = True
        self._call_on_loop(setattr, self, "transport", "")
        self.send({"type": messages.TRANSPORT_CHECK, "up": up, "probe": list(PROBE)},
                  buffers=[PROBE])

    def _show_transport(self, up: bool) -> None:
        binary = up and not self._b64_down
        self.transport = "binary" if binary else "base64"
        log.info("widget transport: mic frames %s, audio to the page %s",
                 "binary" if up else "base64", "base64" if self._b64_down else "binary")

    def _on_mic_frame(self, content: dict[str, Any], buffers: list[memoryview]) -> None:
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
            self._timings.frame(sent_at)
        if self.session.connected:
            self.session.send_audio(pcm)
            self._ptt.frame(len(pcm))
        seq = content.get("seq")
        if isinstance(seq, int) and seq % ACK_EVERY == 0:
            self.send({"type": messages.MIC_AUDIO_ACK, "seq": seq})

    def _on_playback_started(self, content: dict[str, Any], _: list[memoryview]) -> None:
        """The browser played the first sample of an item at ``t`` (its wall clock, ms)."""
        item_id, at_ms = str(content.get("item_id")), content.get("t")
        if not isinstance(at_ms, (int, float)):
            return
        self._timings.playback_started(item_id, at_ms, content.get("device_ms"))
        self.session.note("rtwidget.playback_started", item_id=item_id, at=at_ms / 1000)

    def _on_played(self, content: dict[str, Any], _: list[memoryview]) -> None:
        """The browser stopped playing an item after ``audio_end_ms``: cut the rest."""
        item_id, audio_end_ms = str(content.get("item_id", "")), content.get("audio_end_ms")
        item = self.session.conversation.get(item_id)
        if item is None or not isinstance(audio_end_ms, (int, float)):
            return
        received_ms = item.audio_out_bytes // BYTES_PER_MS
        end_ms = int(max(0, min(audio_end_ms, received_ms)))
        self._interrupts.cancel_reply(content.get("reason"))  # once, if not by a typed turn
        if item_id in self.session.aio.items_before_connect:
            return  # its audio came over a connection since lost: this server has it as text
        if end_ms < received_ms or item.status == "in_progress":
            self.stats["truncations"] += 1
            self.session.send(events.item_truncate(item_id, end_ms))

    def _disconnect(self) -> None:
        with self._lifecycle:
            self.session.close()
        self._call_on_loop_or_now(lambda: setattr(self, "status", "closed"))

    def _reconnect(self) -> None:
        """A new session where the old one was: same endpoint, conversation and options (tools,
        whether to run them, recording, keepalive, the configuration as last confirmed). Only
        when the old one has ended: a second Connect (a double click, a stale page) while it
        is connected or connecting changes nothing."""
        with self._lifecycle:
            old = self.session
            if not old.aio.closed or self._closed:
                return
            options = old.options
            if isinstance(options.record, (str, Path)):  # that folder holds the last session
                options = options.replace(record=next_free_folder(Path(options.record)))
            fresh = RealtimeSession(endpoint=old.endpoint, options=options,
                                    conversation=old.conversation, connect=False)
            self._bind(fresh)
            self._connect()

    # --- events from the session (its loop thread) ----------------------------------------------

    def _call_on_loop(self, fn: Any, *args: Any) -> None:
        self.session.call_soon(fn, *args)

    def _call_on_loop_or_now(self, fn: Any) -> None:
        if not self.session.call_soon(fn):
            fn()

    def _set_phase(self, phase: str) -> None:
        if self.phase != phase:
            self.phase = phase

    def _set_error(self, text: str) -> None:
        self.error = text

    def _on_audio(self, item_id: str, pcm: bytes) -> None:
        if self._front_ready.is_set():
            if self._audio_sent - self._audio_acked > MAX_UNACKED_AUDIO_BYTES:
                self.stats["audio_dropped"] += 1  # the page stopped taking audio: don't pile up
                return
            self._audio_sent += len(pcm)
            self._interrupts.audio_out(len(pcm))
            self.stats["audio_out"] += 1
            self._timings.audio_sent(item_id)
            self._send_audio({"type": messages.REPLY_AUDIO, "item_id": item_id}, pcm)

    def _on_backchannel(self, event: dict[str, Any]) -> None:
        """Inworld's back-channel audio ("uh-huh" while the user speaks) goes to the page to be
        played beside the reply, not as one: it is no item, has no latency and is never cut."""
        pcm = backchannel_pcm(event)
        if pcm and self._front_ready.is_set():
            self.stats["backchannel_out"] += 1
            self._send_audio({"type": messages.BACKCHANNEL, "id": event.get("backchannel_id")},
                             pcm)

    def _send_audio(self, content: dict[str, Any], pcm: bytes) -> None:
        """Audio to the page, as a binary buffer or, where buffers do not arrive, base64."""
        if self._b64_down:
            self.send({**content, "b64": encode_audio(pcm)})
        else:
            self.send(content, buffers=[pcm])

    def _on_update(self, event: dict[str, Any], update: Update) -> None:
        handler = self._updates.get(update.type)
        if handler is not None:
            handler(update, event)
        if self._rows.mark(update):
            self._schedule_rows()

    def _on_speech_started(self, update: Update, event: dict[str, Any]) -> None:
        self._set_phase("hearing you")
        if self._front_ready.is_set():
            self.send({"type": messages.FLUSH, "reason": "speech"})

    def _thinking(self, update: Update, event: dict[str, Any]) -> None:
        self._set_phase("thinking")

    def _speaking(self, update: Update, event: dict[str, Any]) -> None:
        self._set_phase("speaking")

    def _on_audio_done(self, update: Update, event: dict[str, Any]) -> None:
        if self._front_ready.is_set() and update.item is not None:
            self.send({"type": messages.REPLY_AUDIO_DONE, "item_id": update.item.id})

    def _on_response_done(self, update: Update, event: dict[str, Any]) -> None:
        """A response is over: none of its items will get more audio. Providers do not all send
        ``response.output_audio.done`` for a cancelled reply, and the page keeps the mic closed
        while it still expects audio."""
        self._set_phase("listening" if self._mic_on else "idle")
        if not self._front_ready.is_set() or update.response is None:
            return
        for item_id in update.response.item_ids:
            item = self.session.conversation.get(item_id)
            if item is not None and item.audio_out_bytes:
                self.send({"type": messages.REPLY_AUDIO_DONE, "item_id": item_id})

    def _on_closed(self, update: Update, event: dict[str, Any]) -> None:
        self.status = "closed"
        self.error = str(event.get("reason", ""))

    def _on_error(self, update: Update, event: dict[str, Any]) -> None:
        if self._interrupts.shown(event):  # (not a cancel that raced the reply's end)
            self.error = str(update.error) if update.error else "the server reported an error"

    def _schedule_rows(self, reset: bool = False) -> None:
        if reset:
            self._call_on_loop_or_now(lambda: self._flush_rows(reset=True))
            return
        if self._flush_pending:
            return
        self._flush_pending = True
        self.session.call_later(ROW_INTERVAL, self._flush_rows)

    def _flush_rows(self, reset: bool = False) -> None:
        self._flush_pending = False
        if not self._front_ready.is_set():
            return
        message = self._rows.message(self.session.conversation, reset)
        if message is not None:
            self.send(message)

    # --- the API users touch ------------------------------------------------------------------

    def latency(self) -> dict[str, float]:
        """Medians, in ms, of the browser path, measured with the browser's and the kernel's
        wall clocks (same machine, or synchronised clocks): ``frame_ms`` from a mic frame
        leaving the browser to the kernel taking it, ``playback_start_ms`` from the kernel
        sending an item's first audio to the browser playing its first sample (an item waits
        while earlier audio still plays, so ``first_playback_start_ms``, with an idle player,
        is the path itself); ``device_out_ms``, the output latency the browser reports; and
        ``device_roundtrip_ms`` from :meth:`probe_latency`."""
        return self._timings.medians(self.probe.get("roundtrip_ms", float("nan")))

    def probe_latency(self, timeout: float = 15.0) -> dict[str, Any]:
        """Measure the browser's own audio round trip (the Latency test button does the same):
        the page plays a short chirp and listens for it on the mic. Returns ``heard``, and when
        heard ``roundtrip_ms`` (output + input latency of this device), plus what the browser
        reports (``output_ms``, ``input_ms``) or an ``error``. Needs speakers the mic can
        hear."""
        return self._probe.run(timeout)

    @property
    def probe(self) -> dict[str, Any]:
        """The last latency test's result (see :meth:`probe_latency`)."""
        return self._probe.result

    @property
    def df(self) -> pd.DataFrame:
        """The conversation as a DataFrame (see ``rtwidget.COLUMNS``)."""
        return self.session.df

    @property
    def events(self) -> pd.DataFrame:
        """The raw event log as a DataFrame."""
        return self.session.events

    def say(self, text: str, *, respond: bool = True, interrupt: bool = True) -> str:
        """A typed turn from code, as from the text box (see :meth:`RealtimeSession.say`)."""
        return self.session.say(text, respond=respond, interrupt=interrupt)

    def ask(self, text: str, timeout: float = 60.0) -> str:
        """A typed turn that waits for the reply's text; a reply in progress ends first."""
        return self.session.ask(text, timeout)

    def live(self, rows: int = 20, max_rate: float = 4.0, columns: Any = None) -> LiveView:
        """A DataFrame view redrawn in place as the talk goes on (see ``session.live``)."""
        return self.session.live(rows, max_rate, columns)

    def close(self) -> None:
        """End the session. The widget stays on the page, read-only, saying it is closed, with
        the transcript (and ``chat.df``) as they were."""
        with self._lifecycle:
            self._closed = True
            for off in self._offs:
                off()
            self._offs = []
            self.session.close()
        self._flush_rows()  # the last rows, from here: the session's loop has stopped
        self.phase, self.status, self.ended = "idle", "closed", True

    def __repr__(self) -> str:
        return f"<VoiceChat {self.session!r}>"

