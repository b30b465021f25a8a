"""The input audio buffer of one local-server connection, and turn-taking on it.

Audio the client appends is kept (a little of it while nobody speaks, for the prefix padding)
and fed to the voice activity detector. With turn detection on, speech that starts interrupts
the response in progress and speech that stops becomes a user item, then a response;
``idle_timeout_ms`` answers a silence. With it off, the client commits or clears the buffer.
While a turn is spoken, a streaming transcriber hears its words, which for ``semantic_vad``
decide how long a silence ends the turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..protocol.audio import BYTES_PER_MS
from .item_store import ItemStore, ServerItem
from .responses import Responses
from .server_session import ServerSession, new_id
from .turn_end import LiveTranscript, completeness, silence_needed_ms
from .vad import Vad, VadSettings
from .validation import Problem, decode_base64_audio

_MIN_COMMIT_MS = 100


class InputBuffer:
    """The input audio buffer, its voice activity detector and the turn being spoken."""

    def __init__(self, session: ServerSession, items: ItemStore, responses: Responses) -> None:
        self._session = session
        self._items = items
        self._responses = responses
        self.pcm = bytearray()
        self._start_ms = 0  # the input-audio clock at the buffer's first byte
        self.appended_ms = 0  # the input-audio clock: all audio appended so far
        self._vad: Vad | None = None
        self._vad_factory: Callable[[VadSettings], Vad] | None = None
        self._vad_origin_ms = 0
        self._speech: tuple[str, int] | None = None  # item id, start ms of the turn spoken
        self._live: LiveTranscript | None = None
        self._words_judged = 0
        self._idle_from_ms: int | None = None  # input-audio clock; armed after each reply
        self.configure_vad()

    # --- settings ----------------------------------------------------------------------------

    def configure_vad(self) -> None:
        """Follow the session's ``turn_detection`` (a new detector if its engine changed)."""
        td = self._session.turn_detection()
        if td is None:
            self._vad = None
            self._speech = None
            return
        silence = int(td.get("silence_duration_ms", 500))
        if td.get("type") == "semantic_vad":
            silence = self._semantic_silence(td)
        settings = VadSettings(
            threshold=float(td.get("threshold", 0.5)),
            prefix_padding_ms=int(td.get("prefix_padding_ms", 300)),
            silence_duration_ms=silence,
        )
        options = self._session.options
        factory = options.vads.get(str(td.get("engine")), options.vad_factory)
        if self._vad is None or factory is not self._vad_factory:
            self._vad = factory(settings)
            self._vad_factory = factory
            self._vad_origin_ms = self.appended_ms
        else:
            self._vad.settings = settings

    def _semantic_silence(self, td: dict[str, Any]) -> int:
        """``semantic_vad``: the silence that ends the turn, from the words heard so far. Words
        that do not reach the silence yet (audio sent faster than it is decoded) do not count.
        Once the speaker is silent, a revised last word ("for" heard again as "floor") cannot
        shorten the wait; a new word (the decoder catching up) can, and so can the ear's words
        for the whole turn (Whisper's, decoded in the silence: what the turn ends with)."""
        live, vad = self._live, self._vad
        eagerness = str(td.get("eagerness") or "auto")
        quiet = getattr(vad, "silence_ms", 0) if vad is not None else 0
        if live is None or (quiet > 0 and live.backlog_ms > quiet):
            return silence_needed_ms("", eagerness)
        needed = silence_needed_ms(live.partial, eagerness)
        count = len(live.partial.split())
        if vad is not None and quiet > 0 and count <= self._words_judged \
                and needed < vad.settings.silence_duration_ms and not live.guessed:
            return vad.settings.silence_duration_ms
        self._words_judged = count
        return needed

    async def settings_changed(self) -> None:
        """The session was updated: follow its turn detection."""
        self.configure_vad()
        if self._vad is None:
            await self.drop_live()

    # --- the reply's clock, for idle_timeout_ms ----------------------------------------------

    def response_started(self) -> None:
        """A response of the conversation started: no idle timeout while it runs."""
        self._idle_from_ms = None

    def response_ended(self, played_ms: int) -> None:
        """A response of the conversation ended: the idle clock starts once its audio has
        played."""
        self._idle_from_ms = self.appended_ms + played_ms

    # --- client events -----------------------------------------------------------------------

    async def append(self, event: dict[str, Any]) -> Problem | None:
        """``input_audio_buffer.append``."""
        pcm = decode_base64_audio(event["audio"], "audio")
        if isinstance(pcm, Problem):
            return pcm
        self.pcm += pcm
        self.appended_ms += len(pcm) // BYTES_PER_MS
        live = self._live
        if live is not None:
            self.configure_vad()  # semantic_vad: whether the words still reach the silence
        if self._vad is not None:
            for vad_event in self._vad.feed(pcm):
                ms = self._vad_origin_ms + vad_event.ms
                if vad_event.kind == "start":
                    await self._speech_started(ms)
                elif self._speech is not None:
                    await self._speech_stopped(ms)
        if live is not None and live is self._live:
            live.feed(pcm)
            quiet_ms = getattr(self._vad, "silence_ms", 0)
            live.speculate(quiet_ms)
            if quiet_ms <= 0 and self._responses.has_early:
                await self._responses.cancel_early()  # the speaker went on: other words
        await self._check_idle()
        self._trim()
        return None

    async def commit(self, event: dict[str, Any]) -> Problem | None:
        """``input_audio_buffer.commit``: the buffer becomes a user item."""
        ms = len(self.pcm) // BYTES_PER_MS
        if ms < _MIN_COMMIT_MS:
            return Problem("input_audio_buffer_commit_empty", f"Error committing input audio "
                           f"buffer: buffer too small. Expected at least {_MIN_COMMIT_MS}ms of "
                           f"audio, but buffer only has {ms}ms of audio.")
        pcm = bytes(self.pcm)
        item_id = self._speech[0] if self._speech else new_id("item")
        await self._restart()
        await self._commit(pcm, item_id)
        return None

    async def clear(self, event: dict[str, Any]) -> Problem | None:
        """``input_audio_buffer.clear``."""
        await self._restart()
        await self._session.emit({"type": "input_audio_buffer.cleared"})
        return None

    async def _restart(self) -> None:
        """Empty the buffer and forget the turn in progress, with a fresh detector."""
        await self.drop_live()
        self.pcm.clear()
        self._start_ms = self.appended_ms
        self._speech = None
        if self._vad is not None:
            factory = self._vad_factory or self._session.options.vad_factory
            self._vad = factory(self._vad.settings)
            self._vad_origin_ms = self.appended_ms

    # --- turn-taking -------------------------------------------------------------------------

    async def _check_idle(self) -> None:
        """``turn_detection.idle_timeout_ms`` (server VAD): once that much input audio has
        come in without speech since the last reply finished playing, say so with
        ``input_audio_buffer.timeout_triggered``, commit the quiet audio and respond."""
        td = self._session.turn_detection() or {}
        timeout = td.get("idle_timeout_ms")
        start = self._idle_from_ms
        if (not isinstance(timeout, int) or timeout <= 0 or start is None or self._vad is None
                or td.get("type", "server_vad") != "server_vad" or self._speech is not None
                or self._responses.active is not None or self.appended_ms - start < timeout):
            return
        self._idle_from_ms = None
        item_id = new_id("item")
        await self._session.emit({"type": "input_audio_buffer.timeout_triggered",
                                  "audio_start_ms": start, "audio_end_ms": self.appended_ms,
                                  "item_id": item_id})
        pcm = bytes(self.pcm)
        self.pcm.clear()
        self._start_ms = self.appended_ms
        if await self._commit(pcm, item_id) and self._responses.active is None:
            self._responses.start({}, None)

    def _trim(self) -> None:
        keep_ms = self._session.options.max_buffer_ms
        if self._vad is not None and self._speech is None:
            keep_ms = self._vad.settings.prefix_padding_ms + 100
        excess = len(self.pcm) - keep_ms * BYTES_PER_MS
        if excess > 0:
            excess -= excess % 2
            del self.pcm[:excess]
            self._start_ms += excess // BYTES_PER_MS

    def _slice(self, start_ms: int, end_ms: int) -> bytes:
        lo = max(0, (start_ms - self._start_ms) * BYTES_PER_MS)
        hi = max(lo, (end_ms - self._start_ms) * BYTES_PER_MS)
        return bytes(self.pcm[lo:hi])

    def _drop_until(self, end_ms: int) -> None:
        cut = max(0, (end_ms - self._start_ms) * BYTES_PER_MS)
        del self.pcm[:cut]
        self._start_ms += cut // BYTES_PER_MS

    async def _speech_started(self, ms: int) -> None:
        item_id = new_id("item")
        self._speech = (item_id, ms)
        self._idle_from_ms = None
        await self._session.emit({"type": "input_audio_buffer.speech_started",
                                  "audio_start_ms": ms, "item_id": item_id})
        self._listen(item_id, ms)
        td = self._session.turn_detection() or {}
        active = self._responses.active
        if td.get("interrupt_response", True) and active is not None:
            await self._responses.stop(active, "turn_detected")

    def _listen(self, item_id: str, start_ms: int) -> None:
        """Transcribe the turn while it is spoken (when the transcriber can stream): partial
        words go out as transcription deltas and, for ``semantic_vad``, decide how long a
        silence ends the turn."""
        stream = getattr(self._session.options.transcriber, "stream", None)
        if stream is None or self._vad is None:
            return

        async def heard(partial: str, settled: str) -> None:
            if self._live is not live:
                return
            self.configure_vad()  # semantic_vad: the words set the silence that ends the turn
            if settled and self._session.transcribing:
                await self._session.emit({
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item_id, "content_index": 0, "delta": settled})

        transcriber = self._session.options.transcriber
        def guessed(words: str) -> None:
            if self._live is not live:
                return
            td = self._session.turn_detection() or {}
            # the reply is begun (or its prompt read) while the silence lasts, unless the
            # words need more (the turn most likely goes on)
            if not (td.get("create_response", True) and completeness(words) != "incomplete"
                    and self._responses.start_early(words)):
                self._responses.prepare_next(words)

        live = LiveTranscript(stream, heard, ear=transcriber if getattr(
            transcriber, "speculates", False) else None, on_guess=guessed)
        self._live = live
        self.configure_vad()
        live.feed(self._slice(start_ms - self._vad.settings.prefix_padding_ms,
                              self.appended_ms))

    async def drop_live(self) -> None:
        """Stop transcribing the turn in progress, if a transcriber is listening."""
        live, self._live = self._live, None
        if live is not None:
            await live.cancel()

    async def _speech_stopped(self, ms: int) -> None:
        assert self._speech is not None and self._vad is not None
        item_id, start_ms = self._speech
        self._speech = None
        live, self._live = self._live, None
        await self._session.emit({"type": "input_audio_buffer.speech_stopped",
                                  "audio_end_ms": ms, "item_id": item_id})
        pcm = self._slice(start_ms - self._vad.settings.prefix_padding_ms, ms)
        self._drop_until(ms)
        heard = await live.finish() if live is not None else None
        self.configure_vad()
        committed = await self._commit(pcm, item_id, heard, live)
        td = self._session.turn_detection() or {}
        if committed and td.get("create_response", True) and self._responses.active is None:
            self._responses.start({}, None)

    async def _commit(self, pcm: bytes, item_id: str, heard: str | None = None,
                      live: LiveTranscript | None = None) -> bool:
        """Make the audio a user item, with its words if they were ``heard`` while it was
        spoken (else transcribed now); ``False`` if the session's budget refused it."""
        problem = self._items.admit(len(pcm))
        if problem is not None:
            await self._session.error(problem, None)
            return False
        items = self._items.items
        await self._session.emit({"type": "input_audio_buffer.committed",
                                  "previous_item_id": items[-1].id if items else None,
                                  "item_id": item_id})
        item = ServerItem({"id": item_id, "object": "realtime.item", "type": "message",
                           "role": "user", "status": "completed",
                           "content": [{"type": "input_audio", "transcript": None}]},
                          bytearray(pcm))
        await self._items.add(item)
        await self._items.transcribe(item, heard, live)
        return True
