"""``rtwidget.chat()``: a voice chat widget bound to a new session, in one call."""

from __future__ import annotations

from typing import Any

from ..client.providers import Endpoint, resolve, transcription_model
from ..client.sync import RealtimeSession
from .widget import VoiceChat


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

