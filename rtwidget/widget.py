"""The voice chat widget: the browser's mic and speaker, bound to a :class:`RealtimeSession`.

Audio travels as binary comm buffers both ways where the front end carries them intact, and
as base64 in the message's JSON where it does not (Colab's widget manager drops buffers): the
page and the kernel find out with a small round trip when the page starts. Messages from the
browser arrive on whichever thread the kernel uses for comms; they are handed to the session's
own loop at once. Everything the widget sends and every trait it changes after start-up comes
from the session's loop thread.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import anywidget
import pandas as pd
import traitlets

from .frame import LiveView
from .protocol import events
from .protocol.audio import AudioFormatError, decode_audio, encode_audio
from .providers import Endpoint, resolve, transcription_model
from .session import RealtimeSession

log = logging.getLogger("rtwidget.widget")

STATIC = Path(__file__).parent / "static"
ACK_EVERY = 10
ROW_INTERVAL = 0.15
MAX_UNACKED_AUDIO_BYTES = 30 * 48_000  # 30 s of audio the page has not confirmed
BACKCHANNEL_DELTA = "response.backchannel.audio.delta"  # Inworld's back-channel audio
PROBE = bytes([0x52, 0x54, 0x00, 0xFF])  # the transport probe: survives intact or not at all
MIN_PTT_BYTES = 4_800  # 100 ms of PCM16 24 kHz: a shorter press is a tap, not a turn
LOCAL_NOTICE = ("No INWORLD_API_KEY or OPENAI_API_KEY in the environment: talking to the "
                "embedded local server.")


def backchannel_pcm(event: dict[str, Any]) -> bytes:
    """The PCM16 audio of a ``response.backchannel.audio.delta``, or ``b""`` if it has none or
    it is not valid audio (logged; the session goes on)."""
    try:
        return decode_audio(event.get("delta"))
    except AudioFormatError as exc:
        log.warning("ignored back-channel audio: %s", exc)
        return b""


def audio_payload(content: dict[str, Any], buffers: list[memoryview]) -> bytes:
    """The PCM16 bytes of an audio message: its first binary buffer, or its ``b64`` field where
    the front end cannot carry buffers. Raises ``AudioFormatError`` (a ``ValueError``) on a
    ``b64`` that is not PCM16 in base64."""
    if buffers:
        return bytes(buffers[0])
    encoded = content.get("b64")
    return decode_audio(encoded) if isinstance(encoded, str) else b""


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

    def __init__(self, session: RealtimeSession, *, connect: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stats = {"frames_in": 0, "bytes_in": 0, "bad_frames": 0, "audio_out": 0,
                      "audio_dropped": 0, "truncations": 0, "backchannel_out": 0}
        self._audio_sent = self._audio_acked = 0
        self._front_ready = threading.Event()
        self._dirty: set[str] = set()
        self._flush_pending = False
        self._layout_key: tuple[int, int] | None = None
        self._layout_cache: tuple[dict[str, int], dict[str, Any]] = ({}, {})
        self._mic_on = False
        self._b64_down = False  # send audio to the page as base64 (its buffers do not arrive)
        self._ptt_bytes: int | None = None  # mic bytes since push-to-talk was pressed
        self._vad_before: dict[str, Any] | None = None  # turn detection push-to-talk turned off
        self._voices: dict[str, Any] | None = None
        self._first_audio_sent: dict[str, float] = {}
        self._latency: dict[str, deque[float]] = {
            "frame_ms": deque(maxlen=2000), "playback_start_ms": deque(maxlen=200),
            "device_out_ms": deque(maxlen=200)}
        self._offs: list[Any] = []
        self.probe: dict[str, Any] = {}
        self._probe_done = threading.Event()
        self.on_msg(self._on_msg)
        self._bind(session)
        if connect:
            self._connect()

    # --- the session ---------------------------------------------------------------------------

    def _bind(self, session: RealtimeSession) -> None:
        for off in self._offs:
            off()
        self.session = session
        self._offs = [session.on("*", self._on_event), session.on_audio(self._on_audio),
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
                threading.Thread(target=self._load_voices, daemon=True).start()
                if self.notice == LOCAL_NOTICE:
                    from .server import shared_local_server

                    self.notice = f"{LOCAL_NOTICE} ({shared_local_server().description})"
                self._schedule_rows(reset=True)

        future.add_done_callback(done)

    def _load_voices(self) -> None:
        """Fill the voice picker (the session caches the list); a failure only logs."""
        try:
            names = [str(n) for n in self.session.voices()["name"]]
        except Exception as exc:
            log.info("no voice list for the picker: %s", exc)
            return
        current = (self.session.config.get("audio", {}).get("output", {}).get("voice")
                   or self.session.conversation.session.get("audio", {}).get("output", {})
                   .get("voice") or "")

        current = str(current)
        if current and current not in names:  # the picker shows the voice in use, always
            names.insert(0, current)
        self._voices = {"type": "voices", "names": names, "current": current}
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
        try:
            if kind == "audio":
                self._on_mic_frame(content, buffers)
            elif kind == "ready":  # a new page (or a reload): its audio count starts at 0
                self._audio_sent = self._audio_acked = 0
                if "probe" in content:
                    self._negotiate(buffers)
                self._front_ready.set()
                self._schedule_rows(reset=True)
                self._call_on_loop(self._send_voices)
            elif kind == "text":
                text = str(content.get("text", "")).strip()
                if text:
                    self.session.say(text)
            elif kind == "played":
                self._on_played(str(content.get("item_id", "")), content.get("audio_end_ms"))
            elif kind == "interrupt":
                self._cancel_in_progress()
            elif kind == "transport":
                self._b64_down = content.get("down") is not True
                self._call_on_loop(self._show_transport, content.get("up") is True)
            elif kind == "ptt":
                self._push_to_talk(bool(content.get("on")))
            elif kind == "mic":
                self._mic_on = bool(content.get("on"))
                if self._mic_on and not content.get("ptt"):
                    self._restore_vad()
                self._call_on_loop(self._set_phase, "listening" if self._mic_on else "idle")
            elif kind == "disconnect":
                threading.Thread(target=self._disconnect, daemon=True).start()
            elif kind == "connect":
                threading.Thread(target=self._reconnect, daemon=True).start()
            elif kind == "client_error":
                log.warning("widget: %s", content.get("message"))
            elif kind == "voice":
                name = str(content.get("voice", ""))
                if name:
                    self.session.update(voice=name)
            elif kind == "audio_ack":
                if isinstance(content.get("bytes"), int):
                    self._audio_acked = max(self._audio_acked, content["bytes"])
            elif kind == "probe_result":
                self._on_probe(content)
            elif kind == "playback_started":
                self._on_playback_started(str(content.get("item_id")), content.get("t"),
                                          content.get("device_ms"))
            else:
                log.warning("widget: ignored a message of unknown type %r", kind)
        except Exception as exc:
            log.exception("widget: failed on a %r message", kind)
            self._call_on_loop(self._set_error, f"{type(exc).__name__}: {exc}")

    def _negotiate(self, buffers: list[memoryview]) -> None:
        """A new page sent the probe with its ``ready``: tell it whether the probe arrived (so
        it knows how to send mic frames) and send one back for it to check. Until it answers,
        audio goes to it as base64, which every front end carries."""
        up = bool(buffers) and bytes(buffers[0]) == PROBE
        self._b64_down = True
        self._call_on_loop(setattr, self, "transport", "")
        self.send({"type": "transport", "up": up, "probe": list(PROBE)}, buffers=[PROBE])

    def _show_transport(self, up: bool) -> None:
        binary = up and not self._b64_down
        self.transport = "binary" if binary else "base64"
        log.info("widget transport: mic frames %s, audio to the page %s",
                 "binary" if up else "base64", "base64" if self._b64_down else "binary")

    def _push_to_talk(self, on: bool) -> None:
        """Push-to-talk pressed (the agent stops; the user's turn starts, with server VAD off)
        or released (the turn is committed and answered)."""
        if on:
            self._turn_vad_off()
            self._cancel_in_progress()
            self.session.send(events.input_audio_clear())
            self._ptt_bytes = 0
            self._call_on_loop(self._set_phase, "hearing you")
            return
        heard, self._ptt_bytes = self._ptt_bytes, None
        if heard is None:
            return
        if heard < MIN_PTT_BYTES:  # a tap: nothing to answer
            self.session.send(events.input_audio_clear())
            self._call_on_loop(self._set_phase, "idle")
            return
        self.session.send(events.input_audio_commit())
        self.session.send(events.response_create())
        self._call_on_loop(self._set_phase, "thinking")

    def _turn_vad_off(self) -> None:
        audio_in = self.session.conversation.session.get("audio", {}).get("input", {})
        vad = audio_in.get("turn_detection")
        if vad or (vad is None and "turn_detection" not in audio_in):
            self._vad_before = dict(vad) if isinstance(vad, dict) else {"type": "server_vad"}
            self.session.update(turn_detection=None)

    def _restore_vad(self) -> None:
        """Hands-free mic again: the server's turn detection comes back as it was."""
        vad, self._vad_before = self._vad_before, None
        if vad is not None:
            threading.Thread(target=self.session.update, kwargs={"turn_detection": vad},
                             daemon=True).start()

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
            self._latency["frame_ms"].append(time.time() * 1000 - sent_at)
        if self.session.connected:
            self.session.send_audio(pcm)
            if self._ptt_bytes is not None:
                self._ptt_bytes += len(pcm)
        seq = content.get("seq")
        if isinstance(seq, int) and seq % ACK_EVERY == 0:
            self.send({"type": "ack", "seq": seq})

    def _on_playback_started(self, item_id: str, at_ms: Any, device_ms: Any) -> None:
        """The browser played the first sample of ``item_id`` at ``at_ms`` (its wall clock)."""
        if not isinstance(at_ms, (int, float)):
            return
        if isinstance(device_ms, (int, float)) and 0 <= device_ms < 10_000:
            self._latency["device_out_ms"].append(float(device_ms))
        sent = self._first_audio_sent.get(item_id)
        if sent is not None:
            self._latency["playback_start_ms"].append(at_ms - sent * 1000)
        self.session.note("rtwidget.playback_started", item_id=item_id, at=at_ms / 1000)

    def _on_probe(self, content: dict[str, Any]) -> None:
        fields = ("heard", "roundtrip_ms", "output_ms", "input_ms", "rate", "score", "error")
        self.probe = {k: content.get(k) for k in fields if content.get(k) is not None}
        self._probe_done.set()
        self.session.note("rtwidget.latency_probe", **self.probe)

    def _on_played(self, item_id: str, audio_end_ms: Any) -> None:
        """The browser stopped playing ``item_id`` after ``audio_end_ms``: cut the rest."""
        item = self.session.conversation.get(item_id)
        if item is None or not isinstance(audio_end_ms, (int, float)):
            return
        received_ms = item.audio_out_bytes // 48
        end_ms = int(max(0, min(audio_end_ms, received_ms)))
        self._cancel_in_progress()
        if end_ms < received_ms or item.status == "in_progress":
            self.stats["truncations"] += 1
            self.session.send(events.item_truncate(item_id, end_ms))

    def _cancel_in_progress(self) -> None:
        response = self.session.conversation.last_response()
        if response is not None and response.status == "in_progress":
            self.session.send(events.response_cancel(response.id))

    def _disconnect(self) -> None:
        self.session.close()
        self._call_on_loop_or_now(lambda: setattr(self, "status", "closed"))

    def _reconnect(self) -> None:
        old = self.session
        fresh = RealtimeSession(endpoint=old.endpoint, connect=False, reconnect=old.aio.reconnect,
                                conversation=old.conversation, tools=old.aio.toolset)
        fresh.aio.config = dict(old.aio.config)
        self._bind(fresh)
        self._connect()

    # --- events from the session (its loop thread) ----------------------------------------------

    def _call_on_loop(self, fn: Any, *args: Any) -> None:
        loop = self.session._loop
        if not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _call_on_loop_or_now(self, fn: Any) -> None:
        if self.session._loop.is_closed():
            fn()
        else:
            self._call_on_loop(fn)

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
            self.stats["audio_out"] += 1
            if item_id not in self._first_audio_sent:
                self._first_audio_sent[item_id] = time.time()
                if len(self._first_audio_sent) > 500:
                    self._first_audio_sent.pop(next(iter(self._first_audio_sent)))
            self._send_audio({"type": "audio", "item_id": item_id}, pcm)

    def _on_backchannel(self, event: dict[str, Any]) -> None:
        """Inworld's back-channel audio ("uh-huh" while the user speaks) goes to the page to be
        played beside the reply, not as one: it is no item, has no latency and is never cut."""
        pcm = backchannel_pcm(event)
        if pcm and self._front_ready.is_set():
            self.stats["backchannel_out"] += 1
            self._send_audio({"type": "backchannel", "id": event.get("backchannel_id")}, pcm)

    def _send_audio(self, content: dict[str, Any], pcm: bytes) -> None:
        """Audio to the page, as a binary buffer or, where buffers do not arrive, base64."""
        if self._b64_down:
            self.send({**content, "b64": encode_audio(pcm)})
        else:
            self.send(content, buffers=[pcm])

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type", "")
        if kind == "input_audio_buffer.speech_started":
            self._set_phase("hearing you")
            if self._front_ready.is_set():
                self.send({"type": "flush", "reason": "speech"})
        elif kind in ("input_audio_buffer.speech_stopped", "response.created"):
            self._set_phase("thinking")
        elif kind in ("response.output_audio.delta", "response.audio.delta",
                      "response.output_text.delta", "response.text.delta"):
            self._set_phase("speaking")
        elif kind in ("response.output_audio.done", "response.audio.done"):
            if self._front_ready.is_set():
                self.send({"type": "audio_done", "item_id": event.get("item_id")})
        elif kind == "response.done":
            self._set_phase("listening" if self._mic_on else "idle")
            self._end_audio(event)
        elif kind == "session.created" or kind == "session.updated":
            self._show_provider()
        elif kind == "rtwidget.reconnecting":
            self.status = "reconnecting"
        elif kind == "rtwidget.reconnected":
            self.status = "connected"
        elif kind == "rtwidget.closed":
            self.status = "closed"
            self.error = str(event.get("reason", ""))
        elif kind == "error":
            info = self.session.conversation.errors[-1] if self.session.conversation.errors \
                else None
            self.error = str(info) if info else "the server reported an error"
        self._mark(event)

    def _end_audio(self, event: dict[str, Any]) -> None:
        """A response is over: none of its items will get more audio. Providers do not all send
        ``response.output_audio.done`` for a cancelled reply, and the page keeps the mic closed
        while it still expects audio."""
        if not self._front_ready.is_set():
            return
        response = event.get("response")
        rid = response.get("id") if isinstance(response, dict) else None
        known = self.session.conversation.responses.get(str(rid))
        for item_id in known.item_ids if known is not None else []:
            item = self.session.conversation.get(item_id)
            if item is not None and item.audio_out_bytes:
                self.send({"type": "audio_done", "item_id": item_id})

    def _mark(self, event: dict[str, Any]) -> None:
        ids: list[str] = []
        if isinstance(event.get("item_id"), str):
            ids.append(event["item_id"])
        item = event.get("item")
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            ids.append(item["id"])
        response = event.get("response")
        if isinstance(response, dict) and event.get("type") == "response.done":
            known = self.session.conversation.responses.get(str(response.get("id")))
            if known is not None:
                ids.extend(known.item_ids)
        if ids:
            self._dirty.update(ids)
            self._schedule_rows()

    def _schedule_rows(self, reset: bool = False) -> None:
        if reset:
            self._call_on_loop_or_now(lambda: self._flush_rows(reset=True))
            return
        if self._flush_pending:
            return
        self._flush_pending = True
        self.session._loop.call_later(ROW_INTERVAL, self._flush_rows)

    def _flush_rows(self, reset: bool = False) -> None:
        self._flush_pending = False
        if not self._front_ready.is_set():
            return
        conv = self.session.conversation
        if reset:
            items = list(conv)
            removed: list[str] = []
        else:
            dirty, self._dirty = self._dirty, set()
            found = [conv.get(i) for i in dirty]
            items = [i for i in found if i is not None and not i.deleted]
            removed = [i.id for i in found if i is not None and i.deleted]
        positions, turn_of = self._layout(reset or bool(removed))
        rows = [self._row(item, positions.get(item.id, 0), turn_of.get(item.id))
                for item in items]
        if rows or removed or reset:
            self.send({"type": "rows", "rows": rows, "removed": removed, "reset": reset})

    def _layout(self, fresh: bool) -> tuple[dict[str, int], dict[str, Any]]:
        """Each item's position, and the user message its turn began with; worked out again
        only when items came or went, so a streaming reply costs the same in a long talk."""
        conv = self.session.conversation
        key = (id(conv), len(conv._order))
        if fresh or self._layout_key != key:
            positions: dict[str, int] = {}
            turn_of: dict[str, Any] = {}
            user = None
            for pos, each in enumerate(conv):
                positions[each.id] = pos
                if each.role == "user" and each.type == "message":
                    user = each
                elif user is not None:
                    turn_of[each.id] = user
            self._layout_cache, self._layout_key = (positions, turn_of), key
        return self._layout_cache

    def _row(self, item: Any, pos: int, turn_of: Any = None) -> dict[str, Any]:
        name = item.name
        if item.type == "function_call_output" and item.call_id:
            call = self.session.conversation.by_call_id(item.call_id)
            name = call.name if call is not None else None
            error = call.error if call is not None else None
        else:
            error = item.error
        return {"id": item.id, "role": item.role or ("tool" if item.type ==
                "function_call_output" else "assistant"), "kind": item.type,
                "text": item.display_text, "status": item.status, "name": name,
                "arguments": item.arguments, "output": item.output, "error": error,
                "pos": pos, "seconds": self._seconds(item), "pending": self._pending(item),
                "cut": item.truncated_ms is not None,
                "latency": self._latency_of(item, turn_of)}

    @staticmethod
    def _latency_of(item: Any, user: Any) -> float | None:
        """Seconds from the end of the user's turn to this reply being heard (or, until it
        plays, arriving): the figure shown on the reply."""
        if user is None or item.role != "assistant" or item.type != "message":
            return None
        reached = item.played_at or item.first_audio_at or item.first_text_at
        return max(0.0, reached - user.turn_ended_at) if reached is not None else None

    def _pending(self, item: Any) -> bool:
        """A spoken turn whose words are still on their way (transcription is on and has
        neither answered nor failed)."""
        if item.role != "user" or item.display_text or item.error or not item.audio_in_seconds:
            return False
        audio_in = self.session.conversation.session.get("audio", {}).get("input", {})
        return bool(audio_in.get("transcription"))

    @staticmethod
    def _seconds(item: Any) -> float:
        return float(item.audio_in_seconds or item.audio_out_seconds)

    # --- the API users touch ------------------------------------------------------------------

    def latency(self) -> dict[str, float]:
        """Medians, in ms, of the browser path, measured with the browser's and the kernel's
        wall clocks (same machine, or synchronised clocks): ``frame_ms`` from a mic frame
        leaving the browser to the kernel taking it, ``playback_start_ms`` from the kernel
        sending an item's first audio to the browser playing its first sample (an item waits
        while earlier audio still plays, so ``first_playback_start_ms``, with an idle player,
        is the path itself); ``device_out_ms``, the output latency the browser reports; and
        ``device_roundtrip_ms`` from :meth:`probe_latency`."""
        out = {name: float(statistics.median(values)) if values else float("nan")
               for name, values in self._latency.items()}
        starts = self._latency["playback_start_ms"]
        out["first_playback_start_ms"] = float(starts[0]) if starts else float("nan")
        out["device_roundtrip_ms"] = float(self.probe.get("roundtrip_ms", float("nan")))
        return out

    def probe_latency(self, timeout: float = 15.0) -> dict[str, Any]:
        """Measure the browser's own audio round trip (the Latency test button does the same):
        the page plays a short chirp and listens for it on the mic. Returns ``heard``, and when
        heard ``roundtrip_ms`` (output + input latency of this device), plus what the browser
        reports (``output_ms``, ``input_ms``) or an ``error``. Needs speakers the mic can
        hear."""
        if not self._front_ready.is_set():
            raise RuntimeError("the widget is not on screen yet: display it first")
        self._probe_done.clear()
        self.send({"type": "probe"})
        if not self._probe_done.wait(timeout):
            raise TimeoutError(f"the browser sent no probe result within {timeout:g} s "
                               "(press Latency test; the result lands in chat.probe)")
        return dict(self.probe)

    @property
    def df(self) -> pd.DataFrame:
        """The conversation as a DataFrame (see ``rtwidget.COLUMNS``)."""
        return self.session.df

    @property
    def events(self) -> pd.DataFrame:
        """The raw event log as a DataFrame."""
        return self.session.events

    def say(self, text: str, *, respond: bool = True) -> str:
        """A typed turn from code; returns the new item's id."""
        return self.session.say(text, respond=respond)

    def ask(self, text: str, timeout: float = 60.0) -> str:
        """A typed turn that waits for the reply's text."""
        return self.session.ask(text, timeout)

    def live(self, rows: int = 20, max_rate: float = 4.0) -> LiveView:
        """A DataFrame view that redraws in place as the talk goes on."""
        return self.session.live(rows, max_rate)

    def close(self) -> None:
        """End the session and the widget."""
        for off in self._offs:
            off()
        self._offs = []
        self.session.close()
        super().close()

    def __repr__(self) -> str:
        return f"<VoiceChat {self.session!r}>"


def chat(
    provider: str | None = None,
    *,
    url: str | None = None,
    api_key: str | None = None,
    headers: dict[str, str] | None = None,
    tools: Any = None,
    endpoint: Endpoint | None = None,
    transcription: str | dict[str, Any] | None = "default",
    **config: Any,
) -> VoiceChat:
    """Show a voice chat bound to a new session; returns the widget.

    ``config`` keywords are those of :class:`RealtimeSession` (``model``, ``instructions``,
    ``voice``, ``tts_model``, ``output_modalities``, ``turn_detection``, ``tool_choice``...).
    The user's speech is transcribed so their words show as they speak: ``transcription`` is
    the provider's documented speech-to-text model by default, another model name (or a full
    transcription object), or ``None`` for none. ``endpoint`` (from :func:`rtwidget.resolve`)
    replaces ``provider``/``url``/``api_key``/``headers``. With no API key in the environment
    it talks to the embedded local server.
    """
    if endpoint is None:
        endpoint = resolve(provider, url=url, api_key=api_key, headers=headers,
                           model=config.get("model"))
    if transcription == "default":
        transcription = transcription_model(endpoint)
    session = RealtimeSession(endpoint=endpoint, tools=tools, connect=False,
                              transcription=transcription, **config)
    return VoiceChat(session)
