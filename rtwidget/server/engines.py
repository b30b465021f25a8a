"""The local server's engines behind small interfaces: replies, speech synthesis, transcription.

This module holds the interfaces and the engines that need no extra package:

- :class:`ScriptedReplyEngine` answers from a script of rules (regex → text or tool calls). It is
  deterministic, for tests and demos that need exact outcomes; its name says what it is.
- :class:`ToneSynthesizer` turns text into tones, one per word. It is not speech; it gives real
  PCM16 24 kHz audio of a length that follows the text, so the audio path can be exercised
  without a speech engine.

:func:`require` imports the package an optional engine needs, or says what to install.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..protocol.audio import SAMPLE_RATE
from ..protocol.errors import EngineUnavailable


def require(module: str, package: str) -> Any:
    """Import ``module`` or raise :class:`EngineUnavailable` naming the package."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EngineUnavailable(
            f"{module} is not available ({exc}); install it with "
            f"pip install '{package}' or pip install 'rtwidget[local]'",
            needs=package, install=f"pip install '{package}'",
        ) from None


@dataclass(frozen=True)
class TextDelta:
    """A piece of the reply's text; ``whole`` when it ends on a sentence boundary, so what it
    completes can be spoken at once rather than when the next piece confirms the boundary."""

    text: str
    whole: bool = False


@dataclass(frozen=True)
class ToolCall:
    """A call to one of the session's tools, arguments as a JSON string."""

    name: str
    arguments: str


@dataclass(frozen=True)
class DropConnection:
    """Fault injection for tests: the server cuts the connection at this point of the reply."""


ReplyChunk = TextDelta | ToolCall | DropConnection


@dataclass(frozen=True)
class HistoryTurn:
    """One item of the conversation as the reply engine sees it."""

    role: str
    type: str
    text: str = ""
    audio_ms: float = 0.0
    name: str | None = None
    arguments: str | None = None
    output: str | None = None
    call_id: str | None = None


@dataclass(frozen=True)
class ReplyContext:
    """Everything a reply engine may use for one response."""

    instructions: str
    history: Sequence[HistoryTurn]
    tools: Sequence[dict[str, Any]]
    tool_choice: Any
    max_output_tokens: int | None
    temperature: float = 0.8
    model: str = ""

    @property
    def last(self) -> HistoryTurn | None:
        """The newest turn, or ``None`` in an empty conversation."""
        return self.history[-1] if self.history else None

    def last_user(self) -> HistoryTurn | None:
        """The newest user message."""
        for turn in reversed(self.history):
            if turn.role == "user" and turn.type == "message":
                return turn
        return None

    def tool_names(self) -> list[str]:
        """Names of the tools this response may call, after ``tool_choice``."""
        names = [str(t.get("name")) for t in self.tools if isinstance(t, dict) and t.get("name")]
        if self.tool_choice == "none":
            return []
        if isinstance(self.tool_choice, dict):
            return [n for n in names if n == self.tool_choice.get("name")]
        return names


class ReplyEngine(Protocol):
    """Produces the chunks of one response; cancelled by the server on ``response.cancel``."""

    def reply(self, context: ReplyContext) -> AsyncIterator[ReplyChunk]:
        """Stream the response."""
        ...


class Synthesizer(Protocol):
    """Turns a sentence into PCM16 24 kHz mono audio."""

    def synthesize(self, text: str, voice: str | None, speed: float) -> bytes:
        """Audio for ``text``."""
        ...

    def voices(self) -> list[dict[str, Any]]:
        """The voices it offers: name, language, description, tags."""
        ...


class Transcriber(Protocol):
    """Turns a user's PCM16 24 kHz utterance into text."""

    def transcribe(self, pcm: bytes) -> str:
        """The words heard."""
        ...


# --- the scripted engine -----------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """When the newest user text matches ``pattern``: say ``say`` (a template that may use the
    regex groups as ``{0}``, ``{1}``... and named groups), and/or call ``calls`` — a list of
    ``(tool name, arguments)`` whose argument values are templates too; arguments given as a
    string are sent as they are (malformed JSON included). Calls go only to tools the response
    may use, unless ``unchecked`` (to test clients against a model inventing a tool). ``drop``
    cuts the connection after the first words (fault injection). ``on="instructions"``
    matches the response's instructions instead, for a response with no conversation (an
    out-of-band one, like a filler said while a tool runs)."""

    pattern: str
    say: str | None = None
    calls: Sequence[tuple[str, dict[str, Any] | str]] = ()
    drop: bool = False
    unchecked: bool = False
    on: str = "user"


@dataclass
class ScriptedReplyEngine:
    """A deterministic reply engine for tests and demos: replies come from rules, not a model.

    - After tool outputs, it says ``after_tool`` with ``{output}`` (the outputs joined);
      after a system message (a background tool's result), ``after_note`` with ``{text}``.
    - ``tool_choice="required"`` (or a named function) with no matching rule calls the first
      allowed tool with ``{}``.
    - Otherwise it echoes: ``fallback`` with ``{text}`` (the user's words); speech it has no
      words for (no speech-to-text engine) gets ``unheard``.

    Words are streamed one delta at a time; ``max_output_tokens`` cuts the reply.
    ``calls_seen`` keeps the newest 50 contexts it answered, for tests to inspect.
    """

    rules: Sequence[Rule] = ()
    fallback: str = "You said: {text}"
    unheard: str = "I heard you speak, but I could not make out the words."
    after_tool: str = "The tool returned {output}."
    after_note: str = "An update: {text}"
    calls_seen: deque[ReplyContext] = field(default_factory=lambda: deque(maxlen=50))

    def _render(self, template: str, match: re.Match[str] | None, **extra: str) -> str:
        groups: Sequence[str] = match.groups(default="") if match else ()
        named = match.groupdict(default="") if match else {}
        return template.format(*groups, **{**named, **extra})

    def plan(self, context: ReplyContext) -> list[ReplyChunk]:
        """The whole reply, worked out before streaming (it is scripted, after all)."""
        self.calls_seen.append(context)
        last = context.last
        answers = ("function_call_output", "mcp_call", "mcp_approval_response")
        if last is not None and last.type in answers:
            outputs = []
            for turn in reversed(context.history):
                if turn.type not in answers:
                    break
                if turn.type == "mcp_approval_response" and turn.output == APPROVED:
                    continue  # the call it approved follows, with the result
                outputs.append(turn.output or "")
            return _words(self._render(self.after_tool, None, output="; ".join(reversed(outputs))))
        if last is not None and last.role == "system" and last.type == "message":
            return _words(self._render(self.after_note, None, text=last.text))
        user = context.last_user()
        text = user.text if user else ""
        allowed = context.tool_names()
        for rule in self.rules:
            subject = context.instructions if rule.on == "instructions" else text
            if rule.on == "instructions" and context.history:
                continue
            match = re.search(rule.pattern, subject, flags=re.IGNORECASE) if subject else None
            if match is None:
                continue
            chunks: list[ReplyChunk] = []
            if rule.say:
                chunks += _words(self._render(rule.say, match, text=text))
            if rule.drop:
                chunks.insert(min(2, len(chunks)), DropConnection())
            for name, args in rule.calls:
                if name not in allowed and not rule.unchecked:
                    continue
                if isinstance(args, str):
                    chunks.append(ToolCall(name, args))
                    continue
                rendered = {
                    k: self._render(v, match) if isinstance(v, str) else v
                    for k, v in args.items()
                }
                chunks.append(ToolCall(name, json.dumps(rendered)))
            if chunks:
                return chunks
        forced = context.tool_choice == "required" or isinstance(context.tool_choice, dict)
        if forced and allowed:
            return [ToolCall(allowed[0], "{}")]
        if user is not None and not text:
            return _words(self.unheard)
        return _words(self._render(self.fallback, None, text=text or "nothing"))

    async def reply(self, context: ReplyContext) -> AsyncIterator[ReplyChunk]:
        for chunk in self.plan(context):
            yield chunk


APPROVED = "the user approved the call"


def _words(text: str) -> list[ReplyChunk]:
    return [TextDelta(w) for w in re.findall(r"\S+\s*", text)]


# --- the tone synthesizer ----------------------------------------------------------------------


class ToneSynthesizer:
    """Text → one short tone per word (pitch from the word, length from its letters).

    Real PCM16 24 kHz audio whose duration follows the text; not speech. ``speed`` scales the
    durations as a speech engine's rate would.
    """

    ms_per_letter = 55.0
    gap_ms = 40.0

    def synthesize(self, text: str, voice: str | None, speed: float) -> bytes:
        speed = min(max(speed, 0.25), 4.0)
        pieces = []
        for word in re.findall(r"\w+", text):
            digest = hashlib.blake2s(word.lower().encode(), digest_size=2).digest()
            freq = 180.0 + int.from_bytes(digest, "big") % 220
            dur = min(0.08 + len(word) * self.ms_per_letter / 1000.0, 0.6) / speed
            t = np.arange(int(dur * SAMPLE_RATE)) / SAMPLE_RATE
            env = np.minimum(1.0, np.minimum(t, dur - t) / 0.01)
            pieces.append(0.25 * env * np.sin(2 * np.pi * freq * t))
            pieces.append(np.zeros(int(self.gap_ms / 1000.0 / speed * SAMPLE_RATE)))
        if not pieces:
            return b""
        audio = np.concatenate(pieces)
        return (audio * 32767.0).astype("<i2").tobytes()

    def voices(self) -> list[dict[str, Any]]:
        return [{"name": "tone", "language": "none",
                 "description": "tones in place of words, no speech engine needed",
                 "tags": ["test"]}]


def split_sentences(pending: str, final: bool) -> tuple[list[str], str]:
    """Cut complete sentences off ``pending``; the rest waits for more text unless ``final``."""
    sentences = []
    while True:
        match = re.search(r"[.!?;:\n](\s|$)", pending)
        if match is None or (match.end() == len(pending) and not final
                             and not pending.endswith((" ", "\n"))):
            break
        sentences.append(pending[: match.end()].strip())
        pending = pending[match.end():]
    if final and pending.strip():
        sentences.append(pending.strip())
        pending = ""
    return [s for s in sentences if s], pending


def first_clause(pending: str, min_words: int = 3) -> tuple[list[str], str]:
    """The first clause of ``pending`` (up to a comma, after ``min_words`` words at least) cut
    off to be spoken at once, for a voice that is slow to start on a long sentence."""
    for match in re.finditer(r",\s", pending):
        if len(pending[: match.start()].split()) >= min_words:
            return [pending[: match.end()].strip()], pending[match.end():]
    return [], pending


TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """A plain token estimate (words and punctuation), used for usage and max_output_tokens."""
    return len(TOKEN_RE.findall(text))


def iter_chunks(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` in pieces of ``size`` bytes (the last may be shorter)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]

