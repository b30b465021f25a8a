"""What a listener heard of a reply that was cut off (barge-in): the transcript up to the
position where playback stopped.

Both ends of a truncation use it: the client, to show and keep only the words the user heard,
and the local server, so that its reply engine sees what the user heard, as a hosted model does.

Where the reply's words are timed (:data:`WordTiming`, from a ``timestampInfo`` object as
Inworld's TTS API documents it: :func:`word_timings`), the words heard are those said before
the cut (:func:`heard_from_timings`) rather than a share of the text in proportion to the audio.
Inworld's Realtime API does not document how such timings arrive on its WebSocket, so nothing
reads them from the wire: they are set on an item (``Item.word_timings``) by whoever has them.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_PARTIAL_WORD = re.compile(r"\S+$")

Mark = tuple[int, int]
"""``(text offset, audio offset in bytes)``: where a piece of the transcript begins in the audio."""


def heard_text(text: str, marks: Sequence[Mark], audio_bytes: int, end_bytes: int) -> str:
    """The part of ``text`` spoken in the first ``end_bytes`` of a reply's ``audio_bytes``.

    ``marks`` say where pieces of the text begin in the audio (a transcript delta and the audio
    that followed it); within a piece, and with no marks at all, the text is taken in proportion
    to the audio. A word cut in the middle was not heard, so the result ends on a whole word.
    """
    if end_bytes >= audio_bytes or not text:
        return text
    if end_bytes <= 0:
        return ""
    points = [(0, 0)]
    for t, a in sorted(marks, key=lambda m: (m[1], m[0])):
        if points[-1][0] <= t <= len(text) and a >= 0:
            points.append((t, a))
    points.append((len(text), max(audio_bytes, points[-1][1])))
    cut = 0
    for (t0, a0), (t1, a1) in itertools.pairwise(points):
        if a1 <= end_bytes:
            cut = t1
        elif a0 <= end_bytes:
            cut = t0 + (t1 - t0) * (end_bytes - a0) // (a1 - a0)
            break
    head = text[:cut]
    if cut < len(text) and not text[cut].isspace():
        head = _PARTIAL_WORD.sub("", head)  # a word cut in two was not heard
    return head.rstrip()


WordTiming = tuple[str, float, float]
"""``(token, start, end)``: a token of a reply's text (a word, with or without its punctuation,
or a character) and the seconds from the start of the reply's audio where it is said."""

_ALIGNMENTS = (("wordAlignment", "words", "wordStartTimeSeconds", "wordEndTimeSeconds"),
               ("characterAlignment", "characters", "characterStartTimeSeconds",
                "characterEndTimeSeconds"))


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def word_timings(timestamp_info: Any, offset: float = 0.0) -> list[WordTiming]:
    """The timed tokens of a ``timestampInfo`` object as Inworld's TTS API documents it
    (docs.inworld.ai/tts/capabilities/timestamps): ``wordAlignment`` (``words``,
    ``wordStartTimeSeconds``, ``wordEndTimeSeconds``) or ``characterAlignment``
    (``characters``, ``characterStartTimeSeconds``, ``characterEndTimeSeconds``), with
    ``offset`` seconds added (where a streamed chunk begins in the reply). Entries that are not
    a string with two times are left out; anything else gives ``[]``.

    >>> word_timings({"wordAlignment": {"words": ["Hi,", "you"],
    ...     "wordStartTimeSeconds": [0, 0.3], "wordEndTimeSeconds": [0.25, 0.6]}}, offset=1)
    [('Hi,', 1.0, 1.25), ('you', 1.3, 1.6)]
    """
    if not isinstance(timestamp_info, Mapping):
        return []
    out: list[WordTiming] = []
    for branch, tokens, starts, ends in _ALIGNMENTS:
        alignment = timestamp_info.get(branch)
        if not isinstance(alignment, Mapping):
            continue
        columns = [alignment.get(k) for k in (tokens, starts, ends)]
        if not all(isinstance(c, list) for c in columns):
            continue
        for token, start, end in zip(*columns, strict=False):
            start_s, end_s = _seconds(start), _seconds(end)
            if isinstance(token, str) and start_s is not None and end_s is not None:
                out.append((token, start_s + offset, max(start_s, end_s) + offset))
        if out:
            break
    return out


def heard_from_timings(text: str, timings: Sequence[WordTiming], end_seconds: float
                       ) -> str | None:
    """The part of ``text`` whose timed tokens were all said in the first ``end_seconds`` of
    the reply: up to the last token that ends by then. Tokens are found in ``text`` in order
    (whitespace tokens and tokens the text does not have are passed over); ``None`` when none
    is found, so the caller can fall back to :func:`heard_text`. A word cut in the middle
    (character timings) was not heard, so the result ends on a whole word."""
    pos, cut, found = 0, 0, False
    for token, _start, end in timings:
        token = token.strip()
        at = text.find(token, pos) if token else -1
        if at < 0:
            continue
        found = True
        if end > end_seconds:
            break  # this token and those after it were not (all) said
        pos = cut = at + len(token)
    if not found:
        return None
    head = text[:cut]
    if cut < len(text) and text[cut].isalnum() and cut and text[cut - 1].isalnum():
        head = _PARTIAL_WORD.sub("", head)  # a word cut in two was not heard
    return head.rstrip()
