"""Speech to text for the local server: PocketSphinx with the US English model its wheel
ships, on whole utterances or live while one is spoken. Optional: without the ``pocketsphinx``
and ``soxr`` packages it raises :class:`~rtwidget.EngineUnavailable` naming what to install.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..protocol.audio import SAMPLE_RATE, resample
from ..protocol.errors import EngineUnavailable
from .engines import require


class PocketsphinxTranscriber:
    """Speech to text with PocketSphinx's bundled US English model. Audio is resampled from
    24 kHz to the model's 16 kHz with soxr first. :meth:`transcribe` takes a whole utterance;
    :meth:`stream` follows one as it is spoken, up to ``max_streams`` at once (each has a
    decoder of its own; a turn beyond that is transcribed when it ends)."""

    def __init__(self, max_streams: int = 4) -> None:
        self._ps = require("pocketsphinx", "pocketsphinx")
        self._decoder = self._new_decoder()
        self._lock = threading.Lock()
        self.max_streams = max_streams
        self._spare: list[Any] = [self._new_decoder()]  # decoders for live streams, reused
        self._streams = 0
        self._spare_lock = threading.Lock()

    def _new_decoder(self) -> Any:
        return self._ps.Decoder(samprate=16000, loglevel="FATAL")

    def transcribe(self, pcm: bytes) -> str:
        """The words heard in PCM16 24 kHz mono audio ("" for none)."""
        if pcm:
            require("soxr", "soxr")  # band-limited, as for the live stream
        audio = resample(pcm, SAMPLE_RATE, 16000)
        with self._lock:
            self._decoder.start_utt()
            self._decoder.process_raw(audio, full_utt=True)
            self._decoder.end_utt()
            hyp = self._decoder.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""

    def stream(self) -> PocketsphinxStream:
        """A live transcription of one utterance: feed it audio as it arrives, read partial
        words at any time, finish it when the turn ends (see :class:`PocketsphinxStream`)."""
        with self._spare_lock:
            if self._streams >= self.max_streams:
                raise EngineUnavailable(f"{self.max_streams} live transcriptions are running")
            self._streams += 1
            decoder = self._spare.pop() if self._spare else None
        try:
            return PocketsphinxStream(self, decoder or self._new_decoder())
        except BaseException:
            with self._spare_lock:
                self._streams -= 1
            raise

    def _give_back(self, decoder: Any) -> None:
        with self._spare_lock:
            self._streams -= 1
            self._spare.append(decoder)


class PocketsphinxStream:
    """One utterance decoded while it is spoken, with its own decoder (live cepstral mean
    normalisation, so the words are there when the speaker stops). Not thread-safe: one call
    at a time."""

    def __init__(self, owner: PocketsphinxTranscriber, decoder: Any) -> None:
        soxr = require("soxr", "soxr")
        self._owner = owner
        self._decoder: Any = decoder
        self._resampler = soxr.ResampleStream(SAMPLE_RATE, 16000, 1, dtype="int16")
        self.partial = ""
        self._settled = ""  # the final words of the parts ended by settle()
        decoder.start_utt()

    def _words(self, hyp: Any) -> str:
        return f"{self._settled} {hyp.hypstr.strip() if hyp is not None else ''}".strip()

    def settle(self) -> str:
        """End the part of the utterance heard so far (PocketSphinx's last pass gives its final
        words) and go on listening in a new part: when the speaker was only pausing, what
        they say next is added to these words. Returns the words so far."""
        if self._decoder is None:
            return self.partial
        self._decoder.end_utt()
        self._settled = self._words(self._decoder.hyp())
        self._decoder.start_utt()
        self.partial = self._settled
        return self.partial

    def _process(self, audio: np.ndarray[Any, Any]) -> None:
        if len(audio) and self._decoder is not None:
            self._decoder.process_raw(np.asarray(audio, dtype="<i2").tobytes(), False, False)

    def feed(self, pcm: bytes) -> str:
        """Decode more PCM16 24 kHz audio; returns the words heard so far (a partial result:
        later audio can still change them)."""
        self._process(self._resampler.resample_chunk(np.frombuffer(pcm, dtype="<i2")))
        if self._decoder is not None:
            self.partial = self._words(self._decoder.hyp())
        return self.partial

    def finish(self) -> str:
        """End the utterance and return its final words; the stream is done."""
        if self._decoder is None:
            return self.partial
        self._process(self._resampler.resample_chunk(np.zeros(0, dtype=np.int16), last=True))
        decoder, self._decoder = self._decoder, None
        try:
            decoder.end_utt()
            self.partial = self._words(decoder.hyp())
        finally:
            self._owner._give_back(decoder)
        return self.partial

    def cancel(self) -> None:
        """Drop the utterance (its decoder goes back for the next one)."""
        if self._decoder is not None:
            self.finish()
