"""Usage split by kind from the providers' documented events, the price table, and what a
conversation cost: per response, per turn, per session, and re-priced at another model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import rtwidget as rt
from rtwidget.data.frame import conversation_frame
from rtwidget.data.usage import USAGE_COLUMNS
from rtwidget.protocol import Conversation
from rtwidget.server import LocalServer

FIXTURES = Path(__file__).parents[1] / "fixtures"
DOCUMENTED = json.loads((FIXTURES / "usage_documented.json").read_text())


@pytest.fixture(autouse=True)
def _shipped_prices() -> Iterator[None]:
    rt.prices.reset()
    yield
    rt.prices.reset()


def one_turn(done: dict[str, Any], model: str = "gpt-realtime-2") -> Conversation:
    """A typed turn answered by one response that ends with ``done`` (a response.done)."""
    rid = done["response"]["id"]
    conv = Conversation()
    for event in [
        {"type": "session.created", "session": {"id": "sess_1", "model": model}},
        {"type": "conversation.item.added", "previous_item_id": None,
         "item": {"id": "item_u", "type": "message", "role": "user",
                  "content": [{"type": "input_text", "text": "Hi"}]}},
        {"type": "response.created", "response": {"id": rid, "status": "in_progress"}},
        {"type": "response.output_item.added", "response_id": rid, "output_index": 0,
         "item": {"id": "item_a", "type": "message", "role": "assistant",
                  "status": "in_progress", "content": []}},
        done,
    ]:
        conv.apply(event)
    assert not conv.problems
    return conv


def test_openai_ga_usage_is_split_as_documented() -> None:
    df = conversation_frame(one_turn(DOCUMENTED["openai_ga"]["message"]), provider="openai")
    reply = df.iloc[1]
    assert {c: reply[c] for c in USAGE_COLUMNS} == {
        "input_text_tokens": 119, "input_audio_tokens": 13, "input_image_tokens": 0,
        "input_cached_tokens": 64, "input_cached_text_tokens": 64,
        "input_cached_audio_tokens": 0, "input_cached_image_tokens": 0,
        "output_text_tokens": 30, "output_audio_tokens": 91}
    assert (reply["input_tokens"], reply["output_tokens"], reply["total_tokens"]) == \
        (132, 121, 253)
    assert all(str(df[c].dtype) == "Int64" for c in USAGE_COLUMNS)
    assert df.iloc[0][list(USAGE_COLUMNS)].isna().all()  # the user's row has no usage


def test_the_cost_equals_a_bill_worked_out_by_hand() -> None:
    df = conversation_frame(one_turn(DOCUMENTED["openai_ga"]["message"]), provider="openai")
    # gpt-realtime-2 per 1M tokens (developers.openai.com/api/docs/models/gpt-realtime-2):
    # text in 4, cached 0.40, out 24; audio in 32, cached 0.40, out 64
    bill = ((119 - 64) * 4 + 64 * 0.40 + 13 * 32 + 30 * 24 + 91 * 64) / 1e6
    assert df.iloc[1]["cost_usd"] == pytest.approx(bill, rel=0.01)
    assert df.iloc[0]["turn_cost_usd"] == pytest.approx(bill, rel=0.01)
    assert "developers.openai.com/api/docs/models/gpt-realtime-2" in df.iloc[1]["price_basis"]
    total = rt.cost(df)
    assert total.usd == pytest.approx(bill, rel=0.01) and total.known
    assert round(total.usd, 2) == round(bill, 2)
    # the same usage from an endpoint with no prices, re-priced at a model one provider prices
    elsewhere = conversation_frame(one_turn(DOCUMENTED["openai_ga"]["message"]),
                                   provider="url")
    assert pd.isna(elsewhere.iloc[1]["cost_usd"])
    again = rt.cost(elsewhere, model="gpt-realtime-2")
    assert again.provider == "openai" and again.usd == pytest.approx(bill, rel=0.01)


def test_absent_usage_fields_stay_empty_and_the_cost_says_why() -> None:
    inworld = conversation_frame(one_turn(DOCUMENTED["inworld"]["message"]),
                                 provider="inworld")
    assert inworld.iloc[1][["input_tokens", *USAGE_COLUMNS]].isna().all()
    assert pd.isna(inworld.iloc[1]["cost_usd"])
    assert "no price for inworld" in inworld.iloc[1]["price_basis"]
    totals = conversation_frame(one_turn(DOCUMENTED["openai_ga_totals_only"]["message"]),
                                provider="openai")
    reply = totals.iloc[1]
    assert reply["input_tokens"] == 132 and reply[list(USAGE_COLUMNS)].isna().all()
    assert pd.isna(reply["cost_usd"]) and pd.isna(totals.iloc[0]["turn_cost_usd"])
    assert "does not split" in reply["price_basis"]


def test_an_inworld_recorded_turn_keeps_its_totals_only() -> None:
    conv = Conversation()
    for line in (FIXTURES / "inworld_text_turn.jsonl").read_text().splitlines():
        conv.apply(json.loads(line))
    rt.prices.update("inworld", "google-ai-studio/gemini-2.5-flash", text_in=1, text_out=1,
                     audio_in=1, audio_out=1)
    df = conversation_frame(conv, provider="inworld")
    reply = df[df["input_tokens"].notna()].iloc[0]
    assert (reply["input_tokens"], reply["output_tokens"]) == (12, 19)
    assert reply[list(USAGE_COLUMNS)].isna().all()
    assert pd.isna(reply["cost_usd"])  # a price, but no text/audio split to apply it to


def test_prices_can_be_overridden_and_reset() -> None:
    conv = one_turn(DOCUMENTED["openai_ga"]["message"], model="my-deployment")
    assert pd.isna(conversation_frame(conv, provider="openai").iloc[1]["cost_usd"])
    rt.prices.update("openai", "my-deployment", text_in=1, text_cached_in=1, text_out=1,
                     audio_in=1, audio_cached_in=1, audio_out=1, source="our contract")
    df = conversation_frame(conv, provider="openai")
    assert df.iloc[1]["cost_usd"] == pytest.approx(253 / 1e6)
    assert "our contract" in df.iloc[1]["price_basis"]
    assert ("openai", "my-deployment") in rt.prices
    rt.prices.reset()
    assert ("openai", "my-deployment") not in rt.prices
    with pytest.raises(rt.InvalidInput, match="no such kind"):
        rt.prices.update("openai", "x", video_in=1)
    with pytest.raises(rt.InvalidInput, match="a number"):
        rt.prices.update("openai", "x", text_in=-1)
    table = rt.prices.table
    assert set(table["read_on"]) == {"2026-12-07"}
    assert table["source"].str.startswith("https://developers.openai.com/").all()


def test_the_local_server_costs_nothing_and_says_so(session: rt.RealtimeSession) -> None:
    session.ask("Hello!")
    session.ask("Again")
    df = session.df
    replies = df[df["price_basis"].notna()]
    assert len(replies) == 2 and (replies["cost_usd"] == 0.0).all()
    assert replies["price_basis"].str.contains("local server").all()
    assert (df[df["role"] == "user"]["turn_cost_usd"] == 0.0).all()
    cost = session.cost
    assert cost.usd == 0.0 and cost.known and "local server" in cost.basis
    assert (replies["input_text_tokens"] > 0).all() and (replies["output_text_tokens"] > 0).all()
    # the server reports usage in the GA shape, every field there (nothing cached, no images)
    assert replies[list(USAGE_COLUMNS)].notna().all().all()
    assert (replies[["input_cached_tokens", "input_image_tokens"]] == 0).all().all()


def test_a_recording_is_repriced_at_another_model(server: LocalServer, tmp_path: Path) -> None:
    with rt.RealtimeSession("local", url=server.url, record=tmp_path / "talk",
                            output_modalities=["text"]) as s:
        s.ask("Hello there!")
        s.ask("And once more")
    recording = rt.load_recording(tmp_path / "talk")
    assert rt.cost(recording).usd == 0.0
    df = recording.df
    replies = df[df["price_basis"].notna()]
    text_in = int(replies["input_text_tokens"].sum())
    text_out = int(replies["output_text_tokens"].sum())
    assert text_in > 0 and text_out > 0
    big = rt.cost(recording, model="gpt-realtime-2")
    assert big.provider == "openai" and big.known
    assert big.usd == pytest.approx((text_in * 4 + text_out * 24) / 1e6, rel=0.01)
    mini = rt.cost(recording, model="gpt-realtime-2.1-mini", provider="openai")
    assert mini.usd == pytest.approx((text_in * 0.6 + text_out * 2.4) / 1e6, rel=0.01)
    assert list(big.turns["turn_cost_usd"]) == pytest.approx(
        list(big.responses["cost_usd"]), rel=1e-9)
    unknown = rt.cost(recording, model="no-such-model", provider="openai")
    assert unknown.unpriced == 2 and "no price" in unknown.basis
    with pytest.raises(rt.InvalidInput, match="not a conversation"):
        rt.cost(pd.DataFrame({"a": [1]}))


def test_turn_costs_take_rows_without_a_role() -> None:
    """Rows whose role or type is missing (NA in the string columns) start no turn and do not
    stop the sum (a conversation with such rows once made ``chat.df`` raise)."""
    from rtwidget.data.cost import turn_costs

    df = pd.DataFrame({
        "role": pd.array(["user", pd.NA, "user", "user"], dtype="string"),
        "type": pd.array(["message", "message", pd.NA, "message"], dtype="string"),
        "price_basis": pd.array([pd.NA, "x", "x", pd.NA], dtype="string"),
        "cost_usd": [float("nan"), 0.5, 0.25, float("nan")],
    })
    assert turn_costs(df).tolist()[0] == 0.75


def _label(conv: Conversation, provider: str | None) -> str:
    from rtwidget.data.cost import cost_label, summarise

    return cost_label(summarise(conversation_frame(conv, provider=provider)))


def test_the_widgets_running_label_says_what_the_dataframe_says() -> None:
    from rtwidget.data.cost import CostTally

    tally = CostTally()
    done = DOCUMENTED["openai_ga"]["message"]
    conv = one_turn(done)
    cases: list[tuple[str, str, str | None]] = []

    def check(what: str, provider: str | None) -> None:
        cases.append((what, tally.label(conv, provider), provider))
        assert tally.label(conv, provider) == _label(conv, provider), what

    for provider in ("openai", "url", "local", None, "openai"):
        check(f"one priced response for {provider}", provider)
    assert cases[0][1].startswith("cost: $") and cases[1][1] == "" and \
        cases[2][1] == "cost: free (local)"
    # a second response with usage that has no text/audio split: the total is not known
    rid = "resp_totals"
    conv.apply({"type": "response.created", "response": {"id": rid}})
    check("a response with no item yet is not counted", "openai")
    conv.apply({"type": "response.output_item.added", "response_id": rid, "output_index": 0,
                "item": {"id": "item_b", "type": "message", "role": "assistant",
                         "content": []}})
    conv.apply({**DOCUMENTED["openai_ga_totals_only"]["message"],
                "response": {**DOCUMENTED["openai_ga_totals_only"]["message"]["response"],
                             "id": rid, "output": []}})
    check("one response not priced", "openai")
    assert cases[-1][1] == ""
    conv.apply({"type": "conversation.item.deleted", "item_id": "item_b"})
    check("its only item deleted, it no longer counts", "openai")
    assert cases[-1][1].startswith("cost: $")
    conv.apply({"type": "session.updated", "session": {"model": "my-deployment"}})
    check("another model, not in the table", "openai")
    rt.prices.update("openai", "my-deployment", text_in=1, text_cached_in=0.1, text_out=2,
                     audio_in=3, audio_cached_in=0.3, audio_out=4)
    check("priced once the table has it", "openai")
    rt.prices.update("openai", "my-deployment", audio_out=400)
    check("re-priced when the table changes", "openai")
    assert cases[-1][1] != cases[-2][1]
    conv.apply({"type": "conversation.item.deleted", "item_id": "item_a"})
    check("no response left", "openai")
    assert cases[-1][1] == ""
    assert _label(Conversation(), "local") == CostTally().label(Conversation(), "local") == ""
