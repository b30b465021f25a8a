"""Audio between the page and the kernel: binary comm buffers where the front end carries them
intact, base64 in the message's JSON where it does not (the page and the kernel find out with
the :data:`PROBE` round trip when the page starts)."""

from __future__ import annotations

import logging
from typing import Any

from ..protocol.audio import AudioFormatError, decode_audio

log = logging.getLogger("rtwidget.widget")

PROBE = bytes([0x52, 0x54, 0x00, 0xFF])  # the transport probe: survives intact or not at all


def backchannel_pcm(event: dict[str, Any]) -> bytes:
    """The PCM16 audio of a ``response.backchannel.audio.delta``, or ``b""`` if it has none or
    it is not valid audio (logged; the session goes on)."""
    try:
        return decode_audio(event.get("delta"))
    except AudioFormatError as exc:
        log.warning("ignored back-channel audio: %s", exc)
        return b""


def audio_payload(content: dict[str, Any], buffers: list[memoryview]) -> bytes:
    """The PCM16 bytes of an audio message: its first binary buffer, or its ``b64`` field where
    the front end cannot carry buffers. Raises ``AudioFormatError`` (a ``ValueError``) on a
    ``b64`` that is not PCM16 in base64."""
    if buffers:
        return bytes(buffers[0])
    encoded = content.get("b64")
    return decode_audio(encoded) if isinstance(encoded, str) else b""
