"""What the client sent, remembered so that server events can be explained and timed: which
event ids were sent (errors name them), the audio and send time of items the client created,
and when each byte of mic audio was sent (the end of the user's speech, by the client's clock).
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from typing import Any

from .audio import BYTES_PER_MS
from .image_parts import ImageInfo, info_of_part
from .items import b64_bytes, dict_of, list_of, str_or_none

_MAX_TIMELINE = 3_000  # mic chunks remembered: a minute or more; speech ends are looked up
# within a second of being sent
_MAX_SENT_IDS = 2_000  # client event ids remembered to explain the errors that name them
_MAX_ITEMS = 1_000


def _bounded_put(table: dict[str, Any], key: str, value: Any) -> None:
    table[key] = value
    if len(table) > _MAX_ITEMS:
        table.pop(next(iter(table)))


class SentEvents:
    """The client's side of one session, bounded in memory (see the module docstring)."""

    def __init__(self) -> None:
        self._kinds: OrderedDict[str, str] = OrderedDict()
        self._audio: dict[str, int] = {}  # item id -> bytes of audio it was created with
        self._at: dict[str, float] = {}  # item id -> when it was sent
        self._images: dict[str, list[ImageInfo]] = {}  # item id -> the images it was sent with
        self._mic_bytes = 0
        self._buffer_from = 0  # mic bytes sent before the input buffer last started empty
        self._manual_commit: tuple[int, float] | None = None  # (bytes, when) of a commit sent
        self._timeline: list[tuple[int, float]] = []
        self._floor = 0

    def record(self, event: dict[str, Any], kind: str, now: float) -> None:
        """A client event of type ``kind`` was sent at ``now``."""
        if kind == "input_audio_buffer.append" and isinstance(event.get("audio"), str):
            self._mic_bytes += b64_bytes(event["audio"])
            self._timeline.append((self._mic_bytes, now))
            if len(self._timeline) > _MAX_TIMELINE:
                self._floor = self._timeline[_MAX_TIMELINE // 2 - 1][0]
                del self._timeline[:_MAX_TIMELINE // 2]
        elif kind == "input_audio_buffer.commit":  # a turn ended by hand (push-to-talk)
            self._manual_commit = (self._mic_bytes - self._buffer_from, now)
            self._buffer_from = self._mic_bytes
        elif kind == "input_audio_buffer.clear":
            self._buffer_from = self._mic_bytes
        event_id = event.get("event_id")
        if isinstance(event_id, str):
            self._kinds[event_id] = kind
            if len(self._kinds) > _MAX_SENT_IDS:
                self._kinds.popitem(last=False)
        if kind == "conversation.item.create":
            item = dict_of(event.get("item"))
            audio = sum(b64_bytes(a) for a in (dict_of(p).get("audio")
                        for p in list_of(item.get("content"))) if isinstance(a, str))
            item_id = str_or_none(item.get("id"))
            if audio and item_id:
                _bounded_put(self._audio, item_id, audio)
            if item_id:
                _bounded_put(self._at, item_id, now)
                images = [i for i in map(info_of_part, list_of(item.get("content")))
                          if i is not None]
                if images:
                    _bounded_put(self._images, item_id, images)

    def kind_of(self, event_id: str | None) -> str | None:
        """The type of the client event sent with ``event_id``, if still remembered."""
        return self._kinds.get(event_id) if event_id else None

    def item_facts(self, item_id: str) -> tuple[int, float | None]:
        """The audio bytes and send time of an item the client created (taken, once)."""
        return self._audio.pop(item_id, 0), self._at.pop(item_id, None)

    def images_of(self, item_id: str) -> list[ImageInfo]:
        """The images an item the client created was sent with (taken, once)."""
        return self._images.pop(item_id, [])

    def committed(self, item_id: str | None) -> tuple[int, float] | None:
        """The server committed the input buffer into ``item_id``: if the client committed it
        by hand, the audio it held and when the commit was sent (the end of that turn)."""
        commit, self._manual_commit = self._manual_commit, None
        if commit is None or not item_id:
            self._buffer_from = self._mic_bytes
            return None
        return commit

    def remember_item(self, item_id: str, audio: int, sent_at: float) -> None:
        """Facts about an item that has not arrived yet, for :meth:`item_facts`."""
        self._audio[item_id], self._at[item_id] = audio, sent_at

    def new_connection(self) -> None:
        """A new connection: its input buffer starts empty."""
        self._mic_bytes = self._floor = 0
        self._timeline.clear()

    def mic_sent_at(self, audio_ms: int | None) -> float | None:
        """When the client sent the mic audio reaching ``audio_ms`` into this connection's
        buffer: the end of the user's speech by the client's clock, before any VAD delay."""
        if audio_ms is None or not self._timeline:
            return None
        target = audio_ms * BYTES_PER_MS
        index = bisect.bisect_left(self._timeline, (target, -math.inf))
        if index >= len(self._timeline) or target <= self._floor:
            return None
        return self._timeline[index][1]
