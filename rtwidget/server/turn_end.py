"""When a spoken turn ends, for the local server's ``semantic_vad``: from the words heard so far
(the live transcript) and the session's ``eagerness``, how much silence to wait for before the
turn is over. A turn that reads as a finished sentence or question ends after a short silence;
one that stops on a word that needs more ("set a timer for", "I would like to order") waits
longer, so a speaker who is only pausing is not cut off.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import numpy as np

from ..protocol.audio import BYTES_PER_MS, SAMPLE_RATE
from ..protocol.errors import EngineUnavailable

log = logging.getLogger("rtwidget.server")

Completeness = Literal["complete", "incomplete", "unknown"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# words after which an English sentence cannot end (not "so", "then", "on", "more", "much",
# "no": "I think so", "turn it on", "tell me more", "thank you very much", "no")
_OPEN_ENDINGS = _words("""
a an the and or but nor because since although though if unless whether than when
while where until to of in at for from with without by about into onto over under after
before between through during against towards toward via per
my your his her its our their this these those some any every each
i we they he she i'm we're they're you're he's she's it's there's that's what's
be been being having get got
um uh er erm hmm
what which who whom whose why how
very really quite most less least many
""")

# verbs that take an object: the end of a statement only if the turn is a question
_WANTS_OBJECT = _words("""
order buy get make need want find tell give put set bring take send book show play pay
visit reach use try open close check meet call ask cook watch read write
""")

# auxiliaries: they end a question ("how many legs does a spider have"), not a statement
_AUXILIARIES = _words("""is are was were am do does did don't doesn't can can't could would
should shall will won't may might must have has had""")

_QUESTION_WORDS = _words("""what which who whom whose why how where when can could would
will should shall do does did is are was were may might have has""")

_WHOLE_REPLIES = _words("""yes no yeah yep nope okay ok sure thanks hello hi hey bye goodbye
stop please right great fine""")

# silence in ms before the turn ends: (complete, unknown, incomplete), by eagerness
SILENCE_MS: dict[str, tuple[int, int, int]] = {
    "high": (150, 400, 1000),
    "medium": (250, 600, 2000),
    "auto": (250, 600, 2000),
    "low": (500, 1200, 4000),
}


def completeness(words: str) -> Completeness:
    """Whether the words heard so far read as a finished turn."""
    heard = [w.strip(".,!?;:") for w in words.lower().split()]
    heard = [w for w in heard if w]
    if not heard:
        return "unknown"
    last = heard[-1]
    if last in _OPEN_ENDINGS:
        return "incomplete"
    question = heard[0] in _QUESTION_WORDS
    if last in _WANTS_OBJECT and not question:
        return "incomplete"
    if last in _AUXILIARIES and not (question and len(heard) >= 4):
        return "incomplete"
    if len(heard) == 1 and last not in _WHOLE_REPLIES:
        return "unknown"
    return "complete"


def silence_needed_ms(words: str, eagerness: str = "auto") -> int:
    """Milliseconds of silence that end the turn, given the words heard so far."""
    complete, unknown, incomplete = SILENCE_MS.get(eagerness, SILENCE_MS["auto"])
    return {"complete": complete, "unknown": unknown, "incomplete": incomplete}[
        completeness(words)]


_BACKGROUND: set[asyncio.Task[None]] = set()  # streams being released

GUESS_AFTER_MS = 60
"""Silence (as the VAD counts it) after which the ear decodes the turn so far: soon enough that
its words are ready when the shortest end-of-turn silence (150-250 ms) has passed."""


def loudness(pcm: bytes) -> float:
    """The loudest 20 ms of PCM16 24 kHz audio (RMS of its samples; 0 for none)."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float32)
    frame = SAMPLE_RATE // 50
    if len(samples) < frame:
        return float(np.sqrt(np.mean(samples ** 2))) if len(samples) else 0.0
    usable = samples[: len(samples) - len(samples) % frame].reshape(-1, frame)
    return float(np.sqrt((usable ** 2).mean(axis=1)).max())


class LiveTranscript:
    """A transcriber's live stream, fed from the event loop without blocking it: audio is
    queued and decoded on a worker thread about every ``chunk_ms``, one call in flight at a
    time. After each decode, ``on_words(partial, settled)`` gets the partial transcript and the
    words that have just settled (the same in two partials in a row), to send as a delta.
    With an ``ear`` (a transcriber whose words are better than the stream's: Whisper), the
    turn's audio is kept and the ear decodes it once per silence (:meth:`speculate`), apart
    from the stream and without waiting for it: its words become the partial transcript
    ``semantic_vad`` judges and, when nothing louder than a tenth of the turn's speech came
    after them, the final transcript; ``on_guess`` gets them at once (to start on the reply).
    """

    def __init__(self, open_stream: Callable[[], Any],
                 on_words: Callable[[str, str], Awaitable[None]], chunk_ms: int = 100,
                 ear: Any = None, on_guess: Callable[[str], None] | None = None) -> None:
        self._open = open_stream
        self._on_guess = on_guess  # gets the ear's words for the turn so far, when they stand
        self._stream: Any = None
        self._on_words = on_words
        self._chunk_bytes = chunk_ms * BYTES_PER_MS
        self._pending = bytearray()
        self._queued = 0  # bytes fed
        self._decoded = 0  # bytes the decoder has been through
        self._task: asyncio.Task[None] | None = None
        self._previous: list[str] = []
        self.said: list[str] = []  # words already sent as deltas
        self.partial = ""
        self.failed = False
        self._lock = threading.Lock()  # one call into the stream at a time
        self._ear = ear
        self._audio = bytearray()  # the turn so far, for the ear
        self._peak = 0.0  # the loudest 20 ms of it
        self._guess: asyncio.Task[None] | None = None
        self._guessed = False  # in this silence
        self._handed = ""  # the stream's words last given to on_guess, in this silence
        self._spoken = 0  # frames of speech fed (to tell whether the speaker went on)
        self._words: tuple[int, str] | None = None  # the ear's guess: bytes heard, words

    def feed(self, pcm: bytes) -> None:
        """Queue audio; decoding starts once a chunk's worth is waiting."""
        if self.failed:
            return
        if self._ear is not None:
            self._audio += pcm
            loud = loudness(pcm)
            if self._words is not None and loud > 0.1 * self._peak:
                self._words = None  # the speaker went on: the guess is stale
            self._peak = max(self._peak, loud)
        self._pending += pcm
        self._queued += len(pcm)
        if self._task is None and len(self._pending) >= self._chunk_bytes:
            self._task = asyncio.create_task(self._pump())

    def _decode(self, pcm: bytes) -> str:
        with self._lock:
            if self._stream is None:
                self._stream = self._open()
            return str(self._stream.feed(pcm))

    def speculate(self, quiet_ms: int, after_ms: int = GUESS_AFTER_MS) -> None:
        """The speaker has been silent ``quiet_ms``: once it reaches ``after_ms``, let the ear
        decode the turn so far (once per silence); with no ear, the stream's words go to
        ``on_guess`` once it has decoded the speech (again if a later decode changes them)."""
        if quiet_ms <= 0:
            self._guessed = False
            self._handed = ""
            self._spoken += 1
        elif quiet_ms < after_ms or self.failed:
            return
        elif self._ear is not None:
            if not self._guessed and self._guess is None:
                self._guessed = True
                self._guess = asyncio.create_task(self._speculate())
        elif self._on_guess is not None and self.partial != self._handed \
                and self.backlog_ms < self._chunk_bytes // BYTES_PER_MS \
                and self._guess is None:
            self._handed = self.partial  # the stream has caught up with the speech
            if completeness(self.partial) == "complete" and hasattr(self._stream, "settle"):
                self._guess = asyncio.create_task(self._make_final())
            else:
                self._on_guess(self.partial)

    async def _speculate(self) -> None:
        try:
            size = len(self._audio)
            words = await asyncio.to_thread(self._ear.transcribe, bytes(self._audio[:size]))
            if loudness(bytes(self._audio[size:])) > 0.1 * self._peak:
                return  # the speaker went on while it decoded
            self._words = (size, words)
            if words and self._on_guess is not None and not self.failed:
                self._on_guess(words)
            if words and not self.failed:  # even the same words: they now reach the silence
                self.partial = words
                await self._on_words(words, "")
        except Exception as exc:  # the turn is still transcribed when it ends
            log.warning("speculative transcription failed (%s)", exc,
                        exc_info=not isinstance(exc, EngineUnavailable))
        finally:
            self._guess = None

    async def _make_final(self) -> None:
        """The stream's words so far made final (its ``settle()``): when the speaker says no
        more, they are the turn's final words, ready before the turn ends."""
        def settle() -> str:
            with self._lock:
                return str(self._stream.settle()) if self._stream is not None else ""

        spoken = self._spoken
        try:
            words = await asyncio.to_thread(settle)
            if not self.failed and self._spoken == spoken and self._on_guess is not None:
                self.partial = self._handed = words
                self._on_guess(words)
        except Exception as exc:  # the stream ends the turn as it would have
            log.warning("settling the words so far failed (%s)", exc,
                        exc_info=not isinstance(exc, EngineUnavailable))
        finally:
            self._guess = None

    async def _pump(self) -> None:
        try:
            while len(self._pending) >= self._chunk_bytes and not self.failed:
                chunk = bytes(self._pending)
                self._pending.clear()
                partial = await asyncio.to_thread(self._decode, chunk)
                self._decoded += len(chunk)
                if partial != self.partial and self._words is None:
                    self.partial = partial
                    await self._on_words(partial, self._settle(partial))
        except Exception as exc:
            self.failed = True
            log.warning("live transcription stopped (%s); the turn is transcribed when it ends",
                        exc, exc_info=not isinstance(exc, EngineUnavailable))
        finally:
            self._task = None

    @property
    def guessed(self) -> bool:
        """Whether the ear's words for the turn so far stand (nothing was said after them)."""
        return self._words is not None

    @property
    def backlog_ms(self) -> int:
        """Audio fed but not decoded yet: how far the partial transcript lags behind."""
        if self._words is not None:
            return 0  # the ear's words cover the turn so far
        return (self._queued - self._decoded) // BYTES_PER_MS

    def _settle(self, partial: str) -> str:
        words = partial.split()
        stable = []
        for a, b in zip(words, self._previous, strict=False):
            if a != b:
                break
            stable.append(a)
        self._previous = words
        if len(stable) <= len(self.said) or stable[: len(self.said)] != self.said:
            return ""
        new = stable[len(self.said):]
        delta = (" " if self.said else "") + " ".join(new)
        self.said = stable
        return delta

    async def finish(self) -> str | None:
        """Decode what is queued and end the utterance: the final transcript, or ``None`` if
        live decoding failed (the caller transcribes the audio itself)."""
        if self._ear is not None:
            return await self._finish_with_ear()
        if self._task is not None or self._guess is not None:
            await asyncio.gather(*(t for t in (self._task, self._guess) if t is not None),
                                 return_exceptions=True)
        if self.failed:
            await self.cancel()
            return None
        rest = bytes(self._pending)
        self._pending.clear()

        def end() -> str:
            if rest or self._stream is None:
                self._decode(rest)
            with self._lock:
                return str(self._stream.finish())

        try:
            self.partial = await asyncio.to_thread(end)
        except Exception:
            log.exception("live transcription failed; the turn is transcribed when it ends")
            self.failed = True
            return None
        return self.partial

    async def _finish_with_ear(self) -> str | None:
        """The ear's words: its guess from the silence, else the whole turn decoded now; the
        stream's backlog is not waited for (it is released in the background)."""
        if self._guess is not None:
            await asyncio.gather(self._guess, return_exceptions=True)
        release = asyncio.create_task(self.cancel())
        _BACKGROUND.add(release)
        release.add_done_callback(_BACKGROUND.discard)
        if self._words is not None:
            self._ear.speculative_hits = getattr(self._ear, "speculative_hits", 0) + 1
            self.partial = self._words[1]
            return self.partial
        try:
            self.partial = await asyncio.to_thread(self._ear.transcribe, bytes(self._audio))
        except Exception:
            log.exception("transcription failed; the turn is transcribed again")
            return None
        return self.partial

    def remainder(self, final: str) -> str:
        """The delta that completes the words already sent, if ``final`` extends them."""
        words = final.split()
        if len(words) <= len(self.said) or words[: len(self.said)] != self.said:
            return ""
        return (" " if self.said else "") + " ".join(words[len(self.said):])

    async def cancel(self) -> None:
        """Stop decoding and release the stream."""
        self.failed = True
        for task in (self._task, self._guess):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        stream, self._stream = self._stream, None
        if stream is not None:
            await asyncio.to_thread(stream.cancel)
