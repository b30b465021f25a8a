"""What a conversation cost: each response priced from its split usage and the price table,
summed per turn and per session, and a recorded conversation re-priced at another model.

A response is priced only from what its provider reported: uncached input tokens of each kind
at that kind's input price, cached ones at its cached price, output tokens of each kind at its
output price. When the usage lacks a split the price depends on (no text/audio split, cached
tokens not split by kind where the kinds' cached prices differ) or the model has no price, the
cost is NA and ``price_basis`` says why; the local server's replies cost 0.0 and say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..protocol.conversation import Conversation
from ..protocol.errors import InvalidInput
from .prices import FREE_PROVIDERS, Prices, model_name
from .prices import prices as default_prices
from .usage import USAGE_COLUMNS, split_usage

PER = 1_000_000.0


@dataclass(frozen=True)
class Basis:
    """What a conversation is priced with: the provider, the model, its prices (``None``
    when unknown or free) and, in words, where they come from or why there are none."""

    provider: str | None
    model: str | None
    entry: Mapping[str, Any] | None
    free: bool
    note: str


def basis(provider: str | None, model: str | None, table: Prices | None = None) -> Basis:
    """The :class:`Basis` for ``provider``'s ``model`` in ``table`` (``rt.prices``)."""
    table = table or default_prices
    name = model_name(model)
    if provider in FREE_PROVIDERS:
        return Basis(provider, name, None, True, FREE_PROVIDERS[provider])
    entry = table.get(provider, name)
    if entry is None:
        what = f"{provider or 'an unknown provider'}/{name or 'an unknown model'}"
        return Basis(provider, name, None, False,
                     f"no price for {what} (add one with rt.prices.update)")
    read = f", read {entry['read_on']}" if entry.get("read_on") else ""
    return Basis(provider, name, entry, False, f"{provider}/{name}: {entry['source']}{read}")


def _count(split: Mapping[str, Any], name: str) -> int | None:
    value = split.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return int(value)


def price_usage(split: Mapping[str, Any], base: Basis) -> tuple[float | None, str]:
    """The cost in US dollars of one response's split usage (:data:`USAGE_COLUMNS`), or
    ``None`` with the reason it cannot be known."""
    if base.free:
        return 0.0, base.note
    if base.entry is None:
        return None, base.note
    entry = base.entry
    total = 0.0
    cached_split = [_count(split, f"input_cached_{k}_tokens") for k in ("text", "audio", "image")]
    if (_count(split, "input_cached_tokens") or 0) and all(c is None for c in cached_split):
        return None, "the usage does not split its cached tokens by kind"
    for kind, cached in zip(("text", "audio", "image"), cached_split, strict=True):
        tokens = _count(split, f"input_{kind}_tokens")
        if tokens is None:
            if kind == "image":
                continue  # no image field: no images sent
            return None, "the usage does not split input tokens into text and audio"
        cached = min(cached or 0, tokens)
        if (tokens - cached and f"{kind}_in" not in entry) or \
                (cached and f"{kind}_cached_in" not in entry):
            return None, f"no price for {kind} input tokens of {base.model}"
        total += (tokens - cached) * entry.get(f"{kind}_in", 0.0) / PER
        total += cached * entry.get(f"{kind}_cached_in", 0.0) / PER
    for kind in ("text", "audio"):
        tokens = _count(split, f"output_{kind}_tokens")
        if tokens is None:
            return None, "the usage does not split output tokens into text and audio"
        if tokens and f"{kind}_out" not in entry:
            return None, f"no price for {kind} output tokens of {base.model}"
        total += tokens * entry.get(f"{kind}_out", 0.0) / PER
    return total, base.note


COST_COLUMNS: dict[str, tuple[str, str]] = {
    "cost_usd": ("float64", "the response's cost in US dollars (first item only; 0.0 for the "
                 "local server; NA when its usage or price is not known)"),
    "turn_cost_usd": ("float64", "user rows: the cost of every response of the turn (NA if "
                      "any is not known)"),
    "price_basis": ("string", "what the cost was worked out from (or why it is not known)"),
}


@dataclass(frozen=True)
class Cost:
    """What a conversation cost (:func:`cost`, ``session.cost``, ``chat.cost``): ``usd`` is the
    sum over the responses priced; ``unpriced`` counts those that could not be (see
    ``basis``); ``responses`` and ``turns`` are the per-response and per-turn tables."""

    usd: float
    unpriced: int
    provider: str | None
    model: str | None
    basis: str
    responses: pd.DataFrame
    turns: pd.DataFrame

    @property
    def known(self) -> bool:
        """Whether every response was priced."""
        return self.unpriced == 0

    def __float__(self) -> float:
        return self.usd

    def __str__(self) -> str:
        more = f" ({self.unpriced} responses not priced)" if self.unpriced else ""
        return f"${self.usd:.4f}{more}"

    def __repr__(self) -> str:
        return (f"<Cost {self} over {len(self.responses)} responses; {self.basis}>")


def cost_label(cost: Cost) -> str:
    """The session's cost as the widget shows it: ``"$0.0123"``, ``"free (local)"`` for the
    local server, or ``""`` while any response's price is unknown."""
    return _label(cost.usd if cost.known else None, len(cost.responses), cost.provider)


def _label(usd: float | None, priced: int, provider: str | None) -> str:
    """:func:`cost_label` of ``usd`` over ``priced`` responses (``None``: one is not known)."""
    if usd is None or not priced:
        return ""
    if usd == 0.0 and provider in FREE_PROVIDERS:
        return "cost: free (local)"
    return f"cost: ${usd:.4f}"


class CostTally:
    """:func:`cost_label` of a live conversation without building its DataFrame, for the widget
    to redraw after every response: the same responses priced by the same rules
    (:func:`rtwidget.data.frame.conversation_frame`, :func:`summarise`), each response's price
    kept until its usage, the provider, the model or ``prices`` change.

    Which responses count is read from the items each time: a response is priced when one
    of the conversation's items (deleted ones left out) names it, and any event may add,
    delete or re-assign an item. That walk costs a dict insertion per item (about 0.1 µs),
    where building the DataFrame cost several µs per row and some ms besides."""

    def __init__(self, prices: Prices | None = None) -> None:
        self._prices = prices or default_prices
        self._basis_key: tuple[Any, ...] | None = None
        self._basis: Basis | None = None
        self._priced: dict[str, tuple[dict[str, Any], float | None]] = {}

    def label(self, conversation: Conversation, provider: str | None) -> str:
        """What :func:`cost_label` says of the conversation's cost priced for ``provider``
        (and the model the server named)."""
        model = str(conversation.session.get("model") or "") or None
        key = (provider, model, self._prices.version)
        if key != self._basis_key or self._basis is None:
            self._basis_key, self._basis = key, basis(provider, model, self._prices)
            self._priced.clear()
        on = self._basis
        # in conversation order, as the DataFrame sums them
        named = dict.fromkeys(item.response_id for item in conversation if item.response_id)
        total, priced = 0.0, 0
        for response_id in named:
            response = conversation.responses.get(response_id)
            if response is None:
                continue
            priced += 1
            value = self._price(response_id, response.usage, on)
            if value is None:
                return _label(None, priced, provider)  # one unknown: so is the total
            total += value
        return _label(total, priced, provider)

    def _price(self, response_id: str, usage: dict[str, Any], on: Basis) -> float | None:
        kept = self._priced.get(response_id)
        if kept is not None and kept[0] is usage:
            return kept[1]
        value = price_usage(split_usage(usage), on)[0]
        self._priced[response_id] = (usage, value)
        return value


def reprice(df: pd.DataFrame, provider: str | None, model: str | None,
            table: Prices | None = None) -> pd.DataFrame:
    """A copy of conversation DataFrame ``df`` with its cost columns worked out again for
    ``provider``'s ``model``."""
    base = basis(provider, model, table)
    out = df.copy()
    firsts = out["response_id"].notna() & ~out["response_id"].duplicated()
    costs: list[Any] = [pd.NA] * len(out)
    notes: list[Any] = [pd.NA] * len(out)
    for i in (firsts.to_numpy().nonzero()[0]):
        row = out.iloc[i]
        split = {c: row[c] for c in USAGE_COLUMNS}
        value, note = price_usage(split, base)
        costs[i] = value if value is not None else float("nan")
        notes[i] = note
    out["cost_usd"] = pd.array([float("nan") if c is pd.NA else c for c in costs],
                               dtype="float64")
    out["price_basis"] = pd.array(notes, dtype="string")
    out["turn_cost_usd"] = turn_costs(out)
    out.attrs.update(provider=provider, model=model_name(model))
    return out


def turn_costs(df: pd.DataFrame) -> pd.Series:
    """Per user row, the sum of ``cost_usd`` over its turn's rows (NA if one is NA)."""
    starts = ((df["role"] == "user") & (df["type"] == "message")).fillna(False).to_numpy(bool)
    result = [float("nan")] * len(df)
    turn: int | None = None
    total, unknown, seen = 0.0, False, False
    priced = df["price_basis"].notna().to_numpy()
    costs = df["cost_usd"].to_numpy()

    def close() -> None:
        if turn is not None and seen and not unknown:
            result[turn] = total

    for i in range(len(df)):
        if starts[i]:
            close()
            turn, total, unknown, seen = i, 0.0, False, False
        elif turn is not None and priced[i]:
            seen = True
            if math.isnan(costs[i]):
                unknown = True
            else:
                total += float(costs[i])
    close()
    return pd.Series(result, index=df.index, dtype="float64")


def summarise(df: pd.DataFrame) -> Cost:
    """The :class:`Cost` of a conversation DataFrame that has its cost columns."""
    responses = df[df["price_basis"].notna()][
        ["response_id", "position", "input_tokens", "output_tokens", *USAGE_COLUMNS,
         "cost_usd", "price_basis"]].reset_index(drop=True)
    turns = df[(df["role"] == "user") & (df["type"] == "message")][
        ["position", "text", "turn_cost_usd"]].reset_index(drop=True)
    known = responses["cost_usd"].dropna()
    provider, model = df.attrs.get("provider"), df.attrs.get("model")
    notes = responses["price_basis"].dropna().unique()
    note = str(notes[0]) if len(notes) == 1 else "; ".join(map(str, notes)) if len(notes) else \
        basis(provider, model).note
    return Cost(usd=float(known.sum()), unpriced=int(len(responses) - len(known)),
                provider=provider, model=model, basis=note, responses=responses, turns=turns)


def _frame_and_basis(source: Any) -> tuple[pd.DataFrame, str | None, str | None]:
    df = source if isinstance(source, pd.DataFrame) else source.df
    provider = df.attrs.get("provider")
    model = df.attrs.get("model")
    meta = getattr(source, "meta", None)
    if isinstance(meta, dict):
        endpoint = meta.get("endpoint")
        named = endpoint.get("provider") if isinstance(endpoint, dict) else None
        provider = provider or (named if isinstance(named, str) else None)
    return df, provider, model


def cost(source: Any, model: str | None = None, provider: str | None = None,
         prices: Prices | None = None) -> Cost:
    """What ``source`` cost, or would have cost at ``model`` (and ``provider``): a
    conversation DataFrame (``session.df``, ``rt.load_conversation(...)``), a recording, a
    session or the chat widget. Its usage is re-priced with the table (``rt.prices`` unless
    ``prices`` is given); give ``provider`` and ``model`` where the source does not say them
    (a ``model`` only one provider of the table prices needs no ``provider``).

    >>> rt.cost(rt.load_recording("talk"), model="gpt-realtime-2.1-mini")  # doctest: +SKIP
    """
    df, known_provider, known_model = _frame_and_basis(source)
    missing = [c for c in ("response_id", "role", "type", *USAGE_COLUMNS) if c not in df]
    if missing:
        raise InvalidInput(f"not a conversation DataFrame: no {', '.join(missing[:3])} column")
    if provider is None and model is not None:
        # another model: the provider that prices it, if one alone does
        table = (prices or default_prices).table
        owners = table[table["model"] == model_name(model)]["provider"].unique()
        provider = str(owners[0]) if len(owners) == 1 else \
            None if known_provider in FREE_PROVIDERS else known_provider
    provider = provider or known_provider
    return summarise(reprice(df, provider, model or known_model, prices))
