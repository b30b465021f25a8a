"""A response's token usage, split the way providers report it: input tokens by kind (text,
audio, image) with the cached part of each, output tokens by kind (text, audio).

The shape is OpenAI's GA ``response.done`` ``usage`` (``input_token_details`` with
``cached_tokens_details``, ``output_token_details``); Inworld speaks the same protocol and may
send only the totals, or no usage at all. A field the provider did not send stays ``None`` (NA
in the DataFrame): nothing is inferred from the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..protocol.items import dict_of, int_or_none

USAGE_COLUMNS: dict[str, tuple[str, str]] = {
    "input_text_tokens": ("Int64", "the response's input text tokens (cached ones included)"),
    "input_audio_tokens": ("Int64", "the response's input audio tokens (cached ones included)"),
    "input_image_tokens": ("Int64", "the response's input image tokens (cached ones included)"),
    "input_cached_tokens": ("Int64", "the response's input tokens read from the cache"),
    "input_cached_text_tokens": ("Int64", "of those, text"),
    "input_cached_audio_tokens": ("Int64", "of those, audio"),
    "input_cached_image_tokens": ("Int64", "of those, image"),
    "output_text_tokens": ("Int64", "the response's output text tokens"),
    "output_audio_tokens": ("Int64", "the response's output audio tokens"),
}
"""The split usage columns (on a response's first row only, like ``input_tokens``)."""

_PATHS: dict[str, tuple[str, ...]] = {
    "input_text_tokens": ("input_token_details", "text_tokens"),
    "input_audio_tokens": ("input_token_details", "audio_tokens"),
    "input_image_tokens": ("input_token_details", "image_tokens"),
    "input_cached_tokens": ("input_token_details", "cached_tokens"),
    "input_cached_text_tokens": ("input_token_details", "cached_tokens_details", "text_tokens"),
    "input_cached_audio_tokens": ("input_token_details", "cached_tokens_details",
                                  "audio_tokens"),
    "input_cached_image_tokens": ("input_token_details", "cached_tokens_details",
                                  "image_tokens"),
    "output_text_tokens": ("output_token_details", "text_tokens"),
    "output_audio_tokens": ("output_token_details", "audio_tokens"),
}


def _at(usage: Mapping[str, Any], path: tuple[str, ...]) -> int | None:
    value: Any = usage
    for key in path[:-1]:
        value = dict_of(value.get(key))
    count = int_or_none(value.get(path[-1]))
    return count if count is None or count >= 0 else None


def split_usage(usage: Mapping[str, Any] | None) -> dict[str, int | None]:
    """The :data:`USAGE_COLUMNS` of one ``usage`` object, ``None`` where it has no such field
    (a negative or non-integer count counts as absent)."""
    source = usage if isinstance(usage, Mapping) else {}
    return {name: _at(source, path) for name, path in _PATHS.items()}
