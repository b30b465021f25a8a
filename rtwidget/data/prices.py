"""The price table: US dollars per million tokens, per provider, model and kind of token.

Every figure below was read on :data:`READ_ON` from the page named beside it (OpenAI's model
pages, one per model, section "Pricing"). Models or providers whose prices were not found in
those pages are left out rather than guessed: the default ``gpt-realtime`` and
``gpt-realtime-mini`` have no page of their own there, and Inworld's pricing page
(inworld.ai/pricing) was not available to read, so an Inworld session's cost is NA until you
add its prices with :meth:`Prices.update`. The embedded local server costs nothing.

>>> import rtwidget as rt
>>> rt.prices.get("openai", "gpt-realtime-2")["audio_out"]
64.0
>>> rt.prices.update("openai", "gpt-realtime", text_in=4, text_cached_in=0.4, text_out=16,
...                  audio_in=32, audio_cached_in=0.4, audio_out=64)   # doctest: +SKIP
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..protocol.errors import InvalidInput

READ_ON = "2026-12-07"
"""When the prices below were read."""

KINDS: tuple[str, ...] = ("text_in", "text_cached_in", "text_out", "audio_in",
                          "audio_cached_in", "audio_out", "image_in", "image_cached_in")
"""The kinds of token a price is given for (US dollars per million tokens)."""

FREE_PROVIDERS: dict[str, str] = {
    "local": "the embedded local server runs on this machine: no charge",
}
"""Providers that cost nothing, and why."""

_OPENAI_PAGE = "https://developers.openai.com/api/docs/models/{}"

# (text in, cached, out), (audio in, cached, out), (image in, cached): $ per 1M tokens
_OPENAI: dict[str, tuple[tuple[float, float, float], tuple[float, float, float],
                         tuple[float, float] | None]] = {
    "gpt-realtime-2.1": ((4.0, 0.4, 24.0), (32.0, 0.4, 64.0), (5.0, 0.5)),
    "gpt-realtime-2": ((4.0, 0.4, 24.0), (32.0, 0.4, 64.0), (5.0, 0.5)),
    "gpt-realtime-1.5": ((4.0, 0.4, 16.0), (32.0, 0.4, 64.0), (5.0, 0.5)),
    "gpt-realtime-2.1-mini": ((0.6, 0.06, 2.4), (10.0, 0.3, 20.0), (0.8, 0.08)),
    "gpt-4o-mini-realtime-preview": ((0.6, 0.3, 2.4), (10.0, 0.3, 20.0), None),
}


def _openai_entry(model: str) -> dict[str, Any]:
    text, audio, image = _OPENAI[model]
    entry: dict[str, Any] = dict(zip(KINDS[:6], (*text, *audio), strict=True))
    if image is not None:
        entry["image_in"], entry["image_cached_in"] = image
    entry["source"] = _OPENAI_PAGE.format(model)
    entry["read_on"] = READ_ON
    return entry


DEFAULT_PRICES: dict[str, dict[str, dict[str, Any]]] = {
    "openai": {model: _openai_entry(model) for model in _OPENAI},
}
"""The shipped table: provider → model → kind → $ per 1M tokens (plus ``source`` and
``read_on``)."""

_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def model_name(model: str | None) -> str | None:
    """``model`` as the table names it: without a ``provider/`` prefix."""
    if not model:
        return None
    return model.split("/", 1)[1] if "/" in model and model.split("/", 1)[0] in (
        "openai", "azure") else model


class Prices:
    """The price table in use (``rt.prices``): read it with :meth:`get` or :attr:`table`,
    change it with :meth:`update`, go back to the shipped figures with :meth:`reset`.
    ``version`` grows with each change, so cached DataFrames are re-priced."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.version = 0
        self._table: dict[str, dict[str, dict[str, Any]]] = {}
        self.reset()

    def reset(self) -> None:
        """Back to the shipped table (:data:`DEFAULT_PRICES`)."""
        with self._lock:
            self._table = {p: {m: dict(e) for m, e in models.items()}
                           for p, models in DEFAULT_PRICES.items()}
            self.version += 1

    def update(self, provider: str, model: str, *, source: str = "set by the user",
               read_on: str | None = None, **per_million: float) -> None:
        """Set (or change) the prices of ``provider``'s ``model``, in US dollars per million
        tokens, by kind (:data:`KINDS`: ``text_in``, ``text_cached_in``, ``text_out``,
        ``audio_in``, ``audio_cached_in``, ``audio_out``, ``image_in``, ``image_cached_in``);
        kinds not given keep their price. ``source`` says where the figures come from and
        ``read_on`` when they were read."""
        unknown = sorted(set(per_million) - set(KINDS))
        if unknown:
            raise InvalidInput(f"no such kind of token: {', '.join(unknown)}; "
                               f"the kinds are {', '.join(KINDS)}")
        for kind, value in per_million.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not value >= 0 or value == float("inf"):
                raise InvalidInput(f"{kind} must be a price in US dollars per million tokens "
                                   f"(a number ≥ 0), not {value!r}")
        name = model_name(model) or ""
        if not provider or not name:
            raise InvalidInput("a price needs a provider and a model")
        with self._lock:
            entry = self._table.setdefault(provider, {}).setdefault(name, {})
            entry.update({k: float(v) for k, v in per_million.items()})
            entry["source"], entry["read_on"] = source, read_on
            self.version += 1

    def get(self, provider: str | None, model: str | None) -> dict[str, Any] | None:
        """The prices of ``provider``'s ``model`` (a snapshot name such as
        ``gpt-realtime-2-2026-01-01`` falls back to ``gpt-realtime-2``), or ``None``."""
        name = model_name(model)
        if provider is None or name is None:
            return None
        with self._lock:
            models = self._table.get(provider, {})
            entry = models.get(name) or models.get(_SNAPSHOT.sub("", name))
            return dict(entry) if entry is not None else None

    @property
    def table(self) -> pd.DataFrame:
        """The table as a DataFrame: one row per provider and model, a column per kind (US
        dollars per million tokens), ``source`` and ``read_on``."""
        with self._lock:
            rows = [{"provider": p, "model": m, **e}
                    for p, models in self._table.items() for m, e in models.items()]
        return pd.DataFrame(rows, columns=["provider", "model", *KINDS, "source", "read_on"])

    def __repr__(self) -> str:
        with self._lock:
            count = sum(len(m) for m in self._table.values())
        return f"<rtwidget prices: {count} models, read on {READ_ON}>"

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 2 and self.get(*key) is not None


prices = Prices()
"""The table in use: ``rt.prices``."""


def as_mapping(value: Mapping[str, Any]) -> dict[str, float]:
    """The kinds of a price entry that have a price."""
    return {k: float(value[k]) for k in KINDS if isinstance(value.get(k), (int, float))}
