"""The voice chat widget: the browser's mic and speaker, bound to a :class:`RealtimeSession`.

:class:`VoiceChat` holds what the page shows (its traits), the session's life (connect,
Disconnect → Connect, close) and the API users touch; its link to the page (the messages both
ways, the transport, audio backpressure) is :class:`~rtwidget.notebook.page_link.PageLink`.
Every trait it changes after start-up is changed from the session's loop thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import pandas as pd
import traitlets

from ..client.local_process import local_server
from ..client.recorder import next_free_folder
from ..client.sync import RealtimeSession
from ..data.cost import Cost, CostTally
from ..data.frame import LiveView
from ..protocol.items import Update
from .notices import Notices
from .page_link import PageLink

STATIC = Path(__file__).parent / "static"
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
    #: what the session has cost so far, as the page shows it ("" while its prices are unknown)
    cost_text = traitlets.Unicode("").tag(sync=True)

    def __init__(self, session: RealtimeSession, *, connect: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._notices = Notices(self)
        self._costs = CostTally()
        self._lifecycle, self._closed = threading.Lock(), False  # Connect, Disconnect, close
        self._offs: list[Any] = []
        self._link = PageLink(self, connect=self._reconnect, disconnect=self._disconnect)
        self._updates: dict[str, Callable[[Update, dict[str, Any]], None]] = {
            "input_audio_buffer.speech_started": lambda *_: self._set_phase("hearing you"),
            "input_audio_buffer.speech_stopped": self._thinking,
            "response.created": self._thinking,
            "response.output_audio.delta": self._speaking,
            "response.output_text.delta": self._speaking,
            "response.done": self._on_response_done,
            "session.created": lambda *_: self._show_provider(),
            "session.updated": lambda *_: self._show_provider(),
            "rtwidget.reconnecting": lambda *_: setattr(self, "status", "reconnecting"),
            "rtwidget.reconnected": self._notices.server_news,
            "rtwidget.server_crashed": self._notices.server_news,
            "rtwidget.closed": self._on_closed,
            "error": self._on_error,
            "rtwidget.message": self._notices.message,  # never printed into a cell
        }
        self.on_msg(self._link.on_msg)
        self._bind(session)
        if connect:
            self._connect()

    # --- the session ---------------------------------------------------------------------------

    def _bind(self, session: RealtimeSession) -> None:
        for off in self._offs:
            off()
        self.session = session
        # the widget's traits first, then what goes to the page
        self._offs = [session.on_update(self._on_update), *self._link.attach(session)]
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
                threading.Thread(target=self._link.load_voices, name="rtwidget-voices",
                                 daemon=True).start()
                if self.notice == LOCAL_NOTICE:
                    self.notice = f"{LOCAL_NOTICE} ({local_server().description})"
                self._link.schedule_rows(reset=True)

        future.add_done_callback(done)

    def _show_provider(self) -> None:
        model = self.session.conversation.session.get("model") or self.session.config.get("model")
        described = self.session.endpoint.describe()
        self.provider = f"{described} · {model}" if model else described

    def _disconnect(self) -> None:
        with self._lifecycle:
            self.session.close()
        if not self.session.call_soon(setattr, self, "status", "closed"):
            self.status = "closed"

    def _reconnect(self) -> None:
        """A new session where the old one was: same endpoint, conversation and options (tools,
        whether to run them, recording, keepalive, the configuration as last confirmed). Only
        when the old one has ended: a second Connect (a double click, a stale page) while it
        is connected or connecting changes nothing."""
        with self._lifecycle:
            old = self.session
            if not old.closed or self._closed:
                return
            options = old.options
            if isinstance(options.record, (str, Path)):  # that folder holds the last session
                options = options.replace(record=next_free_folder(Path(options.record)))
            fresh = RealtimeSession(endpoint=old.endpoint, options=options,
                                    conversation=old.conversation, connect=False)
            self._bind(fresh)
            self._connect()

    # --- events from the session (its loop thread) ----------------------------------------------

    def _set_phase(self, phase: str) -> None:
        if self.phase != phase:
            self.phase = phase

    def _on_update(self, event: dict[str, Any], update: Update) -> None:
        handler = self._updates.get(update.type)
        if handler is not None:
            handler(update, event)

    def _thinking(self, update: Update, event: dict[str, Any]) -> None:
        self._set_phase("thinking")

    def _speaking(self, update: Update, event: dict[str, Any]) -> None:
        self._set_phase("speaking")

    def _on_response_done(self, update: Update, event: dict[str, Any]) -> None:
        self._set_phase("listening" if self._link.mic_on else "idle")
        # the label alone, not session.cost: that builds the whole DataFrame, every response
        self.cost_text = self._costs.label(self.session.conversation,
                                           self.session.endpoint.provider)

    def _on_closed(self, update: Update, event: dict[str, Any]) -> None:
        self.status = "closed"
        self.error = str(event.get("reason", ""))

    def _on_error(self, update: Update, event: dict[str, Any]) -> None:
        if self._link.interrupts.shown(event):  # (not a cancel that raced the reply's end)
            self.error = str(update.error) if update.error else "the server reported an error"

    # --- the API users touch ------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """Counts of what crossed between page and kernel: mic frames and bytes in, bad
        frames, reply audio chunks out and dropped (for a page that stopped taking them),
        back-channel chunks, truncations."""
        return self._link.stats

    def latency(self) -> dict[str, float]:
        """Medians, in ms, of the browser path, measured with the browser's and the kernel's
        wall clocks (same machine, or synchronised clocks): ``frame_ms`` from a mic frame
        leaving the browser to the kernel taking it, ``playback_start_ms`` from the kernel
        sending an item's first audio to the browser playing its first sample (an item waits
        while earlier audio still plays, so ``first_playback_start_ms``, with an idle player,
        is the path itself); ``device_out_ms``, the output latency the browser reports; and
        ``device_roundtrip_ms`` from :meth:`probe_latency`."""
        return self._link.timings.medians(self.probe.get("roundtrip_ms", float("nan")))

    def probe_latency(self, timeout: float = 15.0) -> dict[str, Any]:
        """Measure the browser's own audio round trip (the Latency test button does the same):
        the page plays a short chirp and listens for it on the mic. Returns ``heard``, and when
        heard ``roundtrip_ms`` (output + input latency of this device), plus what the browser
        reports (``output_ms``, ``input_ms``) or an ``error``. Needs speakers the mic can
        hear."""
        return self._link.probe.run(timeout)

    @property
    def probe(self) -> dict[str, Any]:
        """The last latency test's result (see :meth:`probe_latency`)."""
        return self._link.probe.result

    @property
    def df(self) -> pd.DataFrame:
        """The conversation as a DataFrame (see ``rtwidget.COLUMNS``)."""
        return self.session.df

    @property
    def cost(self) -> Cost:
        """What the chat has cost so far (see ``RealtimeSession.cost``)."""
        return self.session.cost

    @property
    def events(self) -> pd.DataFrame:
        """The raw event log as a DataFrame."""
        return self.session.events

    @property
    def segments(self) -> pd.DataFrame:
        """The diarised transcript, one row per segment (who spoke, when, what)."""
        return self.session.segments

    def say(self, text: str, *, respond: bool = True, interrupt: bool = True) -> str:
        """A typed turn from code, as from the text box (see :meth:`RealtimeSession.say`)."""
        return self.session.say(text, respond=respond, interrupt=interrupt)

    def send_image(self, image: Any, text: str | None = None, *, detail: str | None = None,
                   respond: bool = True, interrupt: bool = False,
                   format: str | None = None) -> str:
        """Send a figure, PIL image, numpy array, path or bytes to the agent, with ``text``
        after it; the transcript shows its thumbnail (see :meth:`RealtimeSession.send_image`)."""
        return self.session.send_image(image, text, detail=detail, respond=respond,
                                       interrupt=interrupt, format=format)

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
        self._link.flush_rows()  # the last rows, from here: the session's loop has stopped
        self.phase, self.status, self.ended = "idle", "closed", True

    def __repr__(self) -> str:
        return f"<VoiceChat {self.session!r}>"
