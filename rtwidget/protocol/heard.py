"""What a listener heard of a reply that was cut off (barge-in): the transcript up to the
position where playback stopped.

Both ends of a truncation use it: the client, to show and keep only the words the user heard,
and the local server, so that its reply engine sees what the user heard, as a hosted model does.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

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
