"""The user's side of the talk as the server reports it: the buffer committed, speech started
and stopped (VAD), the transcript of the user's audio as it comes, its diarised segments, and a
transcription that failed. A part of :class:`~rtwidget.protocol.conversation.Conversation`."""

from __future__ import annotations

from typing import Any

from .items import EarlyFacts, Item, Segment, Update, dict_of, int_or_none, str_or_none
from .sent import SentEvents


class UserSpeech:
    """The handlers of the user-speech events; the conversation they write to mixes them in."""

    now: float
    sent: SentEvents
    _items: dict[str, Item]
    _early: EarlyFacts

    def _on_committed(self, event: dict[str, Any], kind: str) -> Update:
        """A committed buffer: one the client committed by hand holds the audio it sent since
        the buffer was last empty, and its turn ended when the commit was sent."""
        item_id = str_or_none(event.get("item_id"))
        commit = self.sent.committed(item_id)
        if commit is None or not item_id:
            return Update(type=kind)
        audio, sent_at = commit
        item = self._items.get(item_id)
        if item is None:
            self.sent.remember_item(item_id, audio, sent_at)
        else:
            item.audio_in_bytes = item.audio_in_bytes or audio
            item.sent_at = item.sent_at or sent_at
        return Update(type=kind, item=item)

    def _on_speech_started(self, event: dict[str, Any], kind: str) -> Update:
        item = self._speech_fact(event, speech_started_ms=int_or_none(event.get("audio_start_ms")))
        return Update(type=kind, item=item)

    def _on_speech_stopped(self, event: dict[str, Any], kind: str) -> Update:
        end = int_or_none(event.get("audio_end_ms"))
        item = self._speech_fact(event, speech_stopped_ms=end, speech_stopped_at=self.now,
                                 speech_end_at=self.sent.mic_sent_at(end))
        return Update(type=kind, item=item)

    def _speech_fact(self, event: dict[str, Any], **facts: Any) -> Item | None:
        """VAD facts about an item, kept until the item itself arrives if it has not yet;
        returns the item if it is here."""
        item_id = str_or_none(event.get("item_id"))
        if not item_id:
            return None
        item = self._items.get(item_id)
        if item is None:
            self._early.put(item_id, facts)
        else:
            item.set(facts)
        return item

    def _on_input_transcript(self, event: dict[str, Any], kind: str, item: Item) -> Update:
        _heard_from_user(item)
        if kind.endswith(".delta"):
            item.transcript += str_or_none(event.get("delta")) or ""
        else:
            item.transcript = str_or_none(event.get("transcript")) or item.transcript
            item.transcript_done_at = self.now
        return Update(type=kind, item=item)

    def _on_input_failed(self, event: dict[str, Any], kind: str, item: Item) -> Update:
        _heard_from_user(item)
        error = dict_of(event.get("error"))
        item.error = "transcription failed: " + str(error.get("message") or "no reason given")
        return Update(type=kind, item=item)

    def _on_segment(self, event: dict[str, Any], kind: str, item: Item) -> Update:
        """One diarised piece of the user's audio (who spoke, when, what): kept in time order,
        a segment sent again under the same id replacing the first."""
        _heard_from_user(item)
        segment = Segment.from_event(event)
        if segment is not None:
            item.segments = [s for s in item.segments if s.id != segment.id] + [segment]
            item.segments.sort(key=lambda s: (s.content_index, s.start_ms, s.end_ms))
        return Update(type=kind, item=item)


def _heard_from_user(item: Item) -> None:
    """An item the server transcribes input audio of is the user's, also while its own
    description has not come yet (live words come while the user speaks, the item after)."""
    if not item.role:
        item.role = "user"
