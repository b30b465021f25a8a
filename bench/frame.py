"""DataFrame cost: applying one event, and materialising the frame, at 100 / 1,000 / 10,000 items.

Applying an event must not depend on the conversation's length (the ratio column shows it);
materialising is linear and cached until the next change. Materialising with every response
priced (GA usage, a model of the price table) is measured against doing it for a provider with
no prices, in the same run.
"""

from __future__ import annotations

from typing import Any

from rtwidget.data.frame import conversation_frame
from rtwidget.protocol import Conversation

from ._util import median_time, table

SIZES = (100, 1_000, 10_000)


def _turn(n: int) -> list[dict[str, Any]]:
    """The events of one user message and one streamed assistant reply (2 items)."""
    user, bot, resp = f"u{n}", f"a{n}", f"r{n}"
    events: list[dict[str, Any]] = [
        {"type": "conversation.item.added", "item": {"id": user, "type": "message",
         "role": "user", "content": [{"type": "input_text", "text": f"question {n}"}]}},
        {"type": "response.created", "response": {"id": resp, "status": "in_progress"}},
        {"type": "response.output_item.added", "response_id": resp, "item": {
            "id": bot, "type": "message", "role": "assistant", "status": "in_progress"}},
    ]
    events += [{"type": "response.output_text.delta", "response_id": resp, "item_id": bot,
                "delta": f"word{i} "} for i in range(8)]
    events += [
        {"type": "response.output_item.done", "response_id": resp, "item": {
            "id": bot, "type": "message", "role": "assistant", "status": "completed"}},
        {"type": "response.done", "response": {"id": resp, "status": "completed", "usage": {
            "total_tokens": 20, "input_tokens": 12, "output_tokens": 8,
            "input_token_details": {"text_tokens": 10, "audio_tokens": 2, "cached_tokens": 4,
                                    "cached_tokens_details": {"text_tokens": 4,
                                                              "audio_tokens": 0}},
            "output_token_details": {"text_tokens": 8, "audio_tokens": 0}}}},
    ]
    return events


def conversation_of(items: int) -> Conversation:
    conv = Conversation(max_log=1000)
    for n in range(items // 2):
        for event in _turn(n):
            conv.apply(event)
    return conv


def run(quick: bool = False) -> dict[str, Any]:
    """Measure and return the figures."""
    results: dict[str, Any] = {}
    for size in SIZES:
        conv = conversation_of(size)
        batch = [e for n in range(size, size + 20) for e in _turn(n)]

        def apply_batch(conv: Conversation = conv, batch: list[dict[str, Any]] = batch) -> None:
            for event in batch:
                conv.apply(event)

        per_event = median_time(apply_batch, repeats=3) / len(batch)
        build = median_time(lambda conv=conv: conversation_frame(conv), 3 if quick else 5)
        priced = median_time(lambda conv=conv: conversation_frame(
            conv, provider="openai", model="gpt-realtime-2"), 3 if quick else 5)
        results[str(size)] = {"event_us": per_event * 1e6, "materialise_ms": build * 1e3,
                              "priced_ms": priced * 1e3, "priced_ratio": priced / build}
    base = results[str(SIZES[0])]["event_us"]
    for figures in results.values():
        figures["event_ratio_vs_100"] = figures["event_us"] / base
    return results


def report(results: dict[str, Any]) -> str:
    rows = [[f"{int(size):,}", r["event_us"], r["event_ratio_vs_100"], r["materialise_ms"],
             r.get("priced_ms", float("nan")), r.get("priced_ratio", float("nan"))]
            for size, r in results.items()]
    return table("DataFrame: one event, one materialisation (median)",
                 ["items", "µs/event", "x vs 100", "materialise ms", "priced ms",
                  "x priced"], rows)
